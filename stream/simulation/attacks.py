"""Planted abuse for the risk evaluation: bots, card-testing bursts, review spam and account
takeovers at known times, mixed into a generated history (off unless asked for, so the
other evaluations see the plain traffic).

Each incident is recorded with its user and the event times of its first and last planted
event, which is what the evaluation measures flags against.

* ``bot``: a new account clicking every 0.3-1.5 s for 3-8 minutes.
* ``card_testing``: an existing user making 8-15 tiny purchases (0.9-5.9) 20-90 s apart.
* ``review_spam``: an existing user posting 8-12 five-star reviews 30-120 s apart.
* ``takeover``: an existing customer with a history suddenly browsing a top category they
  never touched, then buying there for 3-6x their own mean order.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stream.simulation.generator import DAY_MS, SCHEMA_VERSION

KINDS = ("bot", "card_testing", "review_spam", "takeover")
MIN_HISTORY = 40  # a takeover victim's events before the incident


@dataclass(frozen=True)
class AttackConfig:
    seed: int = 11
    per_kind: int = 20
    first_day: float = 3.0  # incidents start in [first_day, last_day) of the history
    last_day: float = 27.0


@dataclass(frozen=True)
class Incident:
    kind: str
    user_id: str
    start: int
    end: int


def plant(
    history: Sequence[dict[str, Any]],
    catalog: Sequence[dict[str, Any]],
    config: AttackConfig,
    start_ms: int,
) -> tuple[list[dict[str, Any]], list[Incident]]:
    """``history`` (in time order) with the incidents' events merged in, and the incidents."""
    rng = random.Random(config.seed)
    planter = _Planter(rng, history, [p for p in catalog if p.get("price")], config, start_ms)
    events: list[dict[str, Any]] = []
    incidents: list[Incident] = []
    for kind in KINDS:
        for k in range(config.per_kind):
            made = planter.make(kind, k)
            if made is not None:
                incident, planted = made
                incidents.append(incident)
                events += planted
    for n, event in enumerate(events):
        event["event_id"] = f"atk-{config.seed}-{n}"
    events.sort(key=lambda e: int(e["ts"]))
    times = [int(e["ts"]) for e in history]
    merged: list[dict[str, Any]] = []
    at = 0
    for event in events:  # after the history events of the same time: stable
        cut = bisect.bisect_right(times, int(event["ts"]), lo=at)
        merged += history[at:cut]
        merged.append(event)
        at = cut
    merged += history[at:]
    return merged, incidents


class _Planter:
    def __init__(
        self,
        rng: random.Random,
        history: Sequence[dict[str, Any]],
        products: list[dict[str, Any]],
        config: AttackConfig,
        start_ms: int,
    ) -> None:
        self.rng = rng
        self.history = history
        self.products = products
        self.config = config
        self.start_ms = start_ms
        self.used: set[str] = set()
        self.users: list[str] = sorted(
            {str(e["user_id"]) for e in history if e["type"] != "product"}
        )

    def when(self) -> int:
        day = self.rng.uniform(self.config.first_day, self.config.last_day)
        return self.start_ms + int(day * DAY_MS)

    def make(self, kind: str, k: int) -> tuple[Incident, list[dict[str, Any]]] | None:
        t = self.when()
        if kind == "bot":
            return self._bot(f"bot-{self.config.seed}-{k}", t)
        if kind == "takeover":
            return self._takeover(t)
        user = self._pick_user()
        return self._card_testing(user, t) if kind == "card_testing" else self._reviews(user, t)

    def _pick_user(self) -> str:
        while True:
            user = self.rng.choice(self.users)
            if user not in self.used:
                self.used.add(user)
                return user

    def _series(
        self, user: str, t: int, n: int, gap: tuple[float, float], make: Any
    ) -> tuple[list[dict[str, Any]], int]:
        out = []
        for i in range(n):
            out.append(make(user, t, i))
            t += int(self.rng.uniform(*gap))
        return out, int(out[-1]["ts"])

    def _bot(self, user: str, t: int) -> tuple[Incident, list[dict[str, Any]]]:
        minutes = self.rng.uniform(3, 8)
        n = int(minutes * 60 / 0.9)
        events, end = self._series(user, t, n, (300, 1500), lambda u, ts, i: self._click(u, ts))
        return Incident("bot", user, t, end), events

    def _card_testing(self, user: str, t: int) -> tuple[Incident, list[dict[str, Any]]]:
        n = self.rng.randint(8, 15)

        def buy(u: str, ts: int, i: int) -> dict[str, Any]:
            amount = round(self.rng.uniform(0.9, 5.9), 1)
            return _purchase(u, ts, f"ct-{u}-{i}", [(self._product(), 1, amount)], "CNY")

        events, end = self._series(user, t, n, (20_000, 90_000), buy)
        return Incident("card_testing", user, t, end), events

    def _reviews(self, user: str, t: int) -> tuple[Incident, list[dict[str, Any]]]:
        n = self.rng.randint(8, 12)

        def review(u: str, ts: int, i: int) -> dict[str, Any]:
            p = self._product()
            return {
                **_base("review", u, ts),
                "product_id": p["product_id"],
                "rating": 5,
                "text": "Great product, highly recommended! Five stars.",
                "title": p["title"],
                "category": list(p["category"]),
            }

        events, end = self._series(user, t, n, (30_000, 120_000), review)
        return Incident("review_spam", user, t, end), events

    def _takeover(self, t: int) -> tuple[Incident, list[dict[str, Any]]] | None:
        victim = self._victim(t)
        if victim is None:
            return None
        user, mean, currency, tops = victim
        fresh = [p for p in self.products if p["category"][0] not in tops]
        if not fresh:
            return None
        top = self.rng.choice(fresh)["category"][0]
        pool = [p for p in fresh if p["category"][0] == top]
        events = []
        ts = t
        for _ in range(self.rng.randint(5, 10)):
            events.append(self._click(user, ts, self.rng.choice(pool)))
            ts += int(self.rng.uniform(8_000, 40_000))
        for i in range(self.rng.randint(1, 2)):
            p = self.rng.choice(pool)
            target = mean * self.rng.uniform(3.0, 6.0)
            price = float(p["price"]) if currency == "CNY" else round(float(p["price"]) / 7.2, 2)
            qty = max(1, round(target / max(price, 0.01)))
            line = (p, qty, price)
            events.append(_purchase(user, ts, f"to-{user}-{i}", [line], currency))
            ts += int(self.rng.uniform(30_000, 120_000))
        return Incident("takeover", user, t, int(events[-1]["ts"])), events

    def _victim(self, t: int) -> tuple[str, float, str, set[str]] | None:
        """A customer with a history before ``t``: (id, mean order, currency, top categories)."""
        counts: Counter[str] = Counter()
        spend: dict[str, list[float]] = defaultdict(list)
        currency: dict[str, str] = {}
        tops: dict[str, set[str]] = defaultdict(set)
        for e in self.history:
            if int(e["ts"]) >= t:
                break
            user = e.get("user_id")
            if user is None or user in self.used or e["type"] == "product":
                continue
            counts[user] += 1
            if e["type"] == "purchase":
                spend[user].append(float(e["amount"]))
                currency[user] = e["currency"]
            if e.get("category"):
                tops[user].add(e["category"][0])
        eligible = sorted(u for u, n in counts.items() if n >= MIN_HISTORY and spend.get(u))
        if not eligible:
            return None
        user = self.rng.choice(eligible)
        self.used.add(user)
        return user, sum(spend[user]) / len(spend[user]), currency[user], tops[user]

    def _product(self) -> dict[str, Any]:
        return self.rng.choice(self.products)

    def _click(self, user: str, ts: int, p: dict[str, Any] | None = None) -> dict[str, Any]:
        p = p or self._product()
        return {
            **_base("click", user, ts),
            "product_id": p["product_id"],
            "title": p["title"],
            "category": list(p["category"]),
            "price": p["price"],
        }


def _base(kind: str, user: str, ts: int) -> dict[str, Any]:
    return {
        "event_id": "",
        "type": kind,
        "schema_version": SCHEMA_VERSION,
        "user_id": user,
        "ts": ts,
        "session_id": f"atk-{user}-{ts}",
    }


def _purchase(
    user: str, ts: int, order: str, lines: list[tuple[dict[str, Any], int, float]], currency: str
) -> dict[str, Any]:
    items = [
        {
            "product_id": p["product_id"],
            "quantity": q,
            "price": price,
            "title": p["title"],
            "category": list(p["category"]),
        }
        for p, q, price in lines
    ]
    return {
        **_base("purchase", user, ts),
        "order_id": order,
        "items": items,
        "amount": round(sum(q * price for _, q, price in lines), 2),
        "currency": currency,
    }
