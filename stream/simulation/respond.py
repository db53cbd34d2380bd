"""Simulated shoppers answering the recommendation lists they are pushed: the generator's
side of a closed loop, so an experiment's report can be checked against a planted effect.

A user who gets a list looks at its first ``looked`` items in rank order and acts on the
first one that tempts them: with chance ``uplift`` for an item in one of their planted top
categories (:meth:`TrafficGenerator.interested`), ``uplift * irrelevant`` for any other. To
act is to click the item with the list's ``recommendation_id`` some ``delay_s`` after the
list (event time), then buy one unit of it a minute later. A user acts on one item per list
at most. Users who are pushed nothing (a holdout without control) never act, so with
``uplift = 0`` the traffic is the generator's alone: that run is the counterfactual.

Every draw comes from a hash of the seed and the list's id, so the answer to a list does
not depend on when or how often it arrives: a redelivered list gets the same answer, with
the same event ids, which the pipeline deduplicates.

>>> from stream.simulation.generator import TrafficConfig, TrafficGenerator
>>> gen = TrafficGenerator(TrafficConfig(users=3, products=40, seed=1))
>>> user = gen.user_ids()[0]
>>> liked = [p["product_id"] for p in gen.catalog() if gen.interested(user, p["product_id"])]
>>> rec = {"event_id": f"{user}:3:recs", "user_id": user, "ts": 1_000_000,
...        "recommendation_id": f"{user}:3:recs",
...        "items": [{"product_id": liked[0], "rank": 1}]}
>>> click, buy = Responder(gen, ResponseConfig(uplift=1.0)).respond(rec)
>>> click["type"], click["recommendation_id"] == rec["event_id"], buy["type"]
('click', True, 'purchase')
>>> buy["items"][0]["product_id"] == liked[0], buy["ts"] - click["ts"]
(True, 60000)
>>> Responder(gen, ResponseConfig(uplift=0.0)).respond(rec)
[]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stream.simulation.generator import SCHEMA_VERSION, TrafficGenerator

#: From the click to the purchase of the item acted on.
BUY_AFTER_MS = 60_000


@dataclass(frozen=True, slots=True)
class ResponseConfig:
    uplift: float  # chance that a relevant listed item makes the user act
    irrelevant: float = 0.25  # relative chance for an item outside their planted interests
    looked: int = 3  # how many of the top items a user looks at
    delay_s: tuple[float, float] = (600.0, 6 * 3600.0)  # list -> click, uniform
    seed: int = 7

    def __post_init__(self) -> None:
        if not 0.0 <= self.uplift <= 1.0:
            raise ValueError(f"uplift must be in [0, 1], got {self.uplift}")
        if not 0.0 <= self.irrelevant <= 1.0:
            raise ValueError(f"irrelevant must be in [0, 1], got {self.irrelevant}")
        if self.looked < 1:
            raise ValueError("looked must be >= 1")
        low, high = self.delay_s
        if not 0.0 <= low <= high:
            raise ValueError(f"delay_s must be 0 <= low <= high, got {self.delay_s}")


class Responder:
    """The answers of the generator's users to pushed ``recommendation`` events."""

    def __init__(self, generator: TrafficGenerator, config: ResponseConfig) -> None:
        self.generator = generator
        self.config = config

    def respond(self, rec: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The click and purchase ``rec`` brings about (none: the user does not act)."""
        c = self.config
        if c.uplift == 0.0:
            return []
        user = str(rec["user_id"])
        rec_id = str(rec.get("recommendation_id") or rec["event_id"])
        draws = _uniforms(c.seed, rec_id, c.looked + 1)
        for n, item in enumerate(list(rec["items"])[: c.looked]):
            pid = str(item["product_id"])
            try:
                relevant = self.generator.interested(user, pid)
            except KeyError:  # not one of the generator's users or products
                return []
            if draws[n] < (c.uplift if relevant else c.uplift * c.irrelevant):
                low, high = c.delay_s
                at = int(rec["ts"]) + int(1000 * (low + (high - low) * draws[-1]))
                return self._act(user, rec_id, pid, at)
        return []

    def _act(self, user: str, rec_id: str, pid: str, at: int) -> list[dict[str, Any]]:
        line = self.generator.product_line(user, pid)
        base = {"schema_version": SCHEMA_VERSION, "user_id": user}
        click = {
            **base,
            "event_id": f"r-{rec_id}-click",
            "type": "click",
            "ts": at,
            "product_id": pid,
            "title": line["title"],
            "category": line["category"],
            "price": line["price"],
            "recommendation_id": rec_id,
        }
        buy = {
            **base,
            "event_id": f"r-{rec_id}-buy",
            "type": "purchase",
            "ts": at + BUY_AFTER_MS,
            "order_id": f"r-{rec_id}",
            "items": [line],
            "amount": line["price"],
            "currency": self.generator.currency(user),
        }
        return [click, buy]


def _uniforms(seed: int, key: str, n: int) -> list[float]:
    """``n`` numbers uniform in [0, 1) from a hash of the seed and ``key``."""
    out = []
    for i in range(n):
        digest = hashlib.blake2b(f"{seed}\x00{key}\x00{i}".encode(), digest_size=8).digest()
        out.append(int.from_bytes(digest, "big") / 2.0**64)
    return out
