"""Deterministic, realistic synthetic e-commerce traffic (pure: no I/O except the JSONL helpers).

The model, in brief:

* A catalogue of products in twelve top-level categories (see
  :mod:`stream.simulation.catalog_words`),
  listed in Chinese (~60%) or English (~40%); a listing's category path is in its title's
  language, as in a bilingual storefront. Prices are log-normal around each leaf's median,
  scaled by a per-brand premium. Popularity within a category is Zipf-like.
* Users with a language, a currency, 1-3 interest categories with Dirichlet weights, a
  heavy-tailed activity rate, a purchase cadence, a time zone and, for a share of them, a churn
  time after which they produce nothing (their activity fades in the week before).
* Sessions start as a diurnal Poisson process per user; a session is a burst of clicks in one
  focus category, some add-to-carts, sometimes a purchase, searches, and reviews that come due a
  few days after earlier purchases.
* A ``catalog-service`` actor emits occasional price changes and discontinuations.

Prices in ``click``/``add_to_cart``/``product`` events are catalogue (CNY) prices; ``purchase``
events are in the buyer's currency (USD buyers see prices converted at :data:`USD_PER_CNY`).
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from stream.simulation.catalog_words import (
    CATEGORIES,
    EDITION_EN,
    EDITION_ZH,
    ERASURE_REASONS,
    QUERY_EXTRAS_EN,
    QUERY_EXTRAS_ZH,
    REVIEW_EN,
    REVIEW_ZH,
    Leaf,
)

__all__ = [
    "CATALOG_USER_ID",
    "DAY_MS",
    "SCHEMA_VERSION",
    "USD_PER_CNY",
    "TrafficConfig",
    "TrafficGenerator",
    "read_jsonl",
    "to_jsonl",
]

SCHEMA_VERSION = 1
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
CATALOG_USER_ID = "catalog-service"
ERASURE_REQUESTER = "privacy-desk"
USD_PER_CNY = 1 / 7.2

ZH, EN = 0, 1
LANG_CODES = ("zh", "en")
ZH_LISTING_SHARE = 0.6
ZH_USER_SHARE = 0.62
USD_SHARE = (0.02, 0.35)  # by user language: a few Chinese-speaking, a third of English-speaking
SAME_LANGUAGE_LISTING_P = 0.85  # users mostly browse listings in their own language
EXPLORE_P = 0.08  # share of sessions outside the user's interests
FAVOURITE_LEAF_P = 0.6  # chance that an interest has a favourite leaf category
FAVOURITE_LEAF_FOCUS_P = 0.5  # chance a session in that interest goes to the favourite leaf
LEAF_STICKINESS = 0.6  # chance a click stays in the session's leaf (vs. the whole category)
ZIPF_S = 1.07
EDITION_P = 0.12  # share of titles with an edition word ("新款", "New"...)
DISCONTINUED_SHARE = 0.03
CATALOG_UPDATES_PER_PRODUCT_DAY = 0.02
CATALOG_DISCONTINUE_P = 0.1

# Measured mean events per session of this model (see tests); converts events/day to sessions.
MEAN_SESSION_EVENTS = 5.7
MEDIAN_EVENTS_PER_DAY = 8.0
MEDIAN_CADENCE_DAYS = 10.0
MAX_PURCHASE_P = 0.9
CHURN_DECAY_MS = 7 * DAY_MS
CHURN_DECAY_FLOOR = 0.25
REVIEW_P = 0.25  # per purchased item
SEARCH_P = (0.4, 0.5)  # session-opening search, by user language
RESEARCH_P = 0.07  # per click: a new search that moves the session's focus
CART_P_BUYING, CART_P_BROWSING = 0.3, 0.08

# Local-hour activity weights (max 1): quiet at night, peak in the evening.
# fmt: off
DIURNAL = (
    0.25, 0.15, 0.08, 0.05, 0.05, 0.08, 0.15, 0.30, 0.45, 0.55, 0.60, 0.65,
    0.75, 0.65, 0.60, 0.60, 0.65, 0.70, 0.80, 0.90, 1.00, 1.00, 0.85, 0.50,
)
# fmt: on
_DIURNAL_MEAN = sum(DIURNAL) / len(DIURNAL)


@dataclass(frozen=True)
class TrafficConfig:
    """Knobs of the traffic model; equal configs produce identical catalogue and history."""

    seed: int = 7
    users: int = 1000
    products: int = 2000
    churn_share: float = 0.2
    erasure_rate: float = 0.0  # share of events that are user_erasure
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00Z
    churn_window_days: float = 28.0  # churn times fall in (0.1, 1.0] x this after start_ms
    # Planted complements: each bought "device" (an item of a leaf at an even position in its
    # top category) brings its accessory (a fixed item of the next leaf) with this chance, in
    # a second order of the session. 0 leaves the traffic exactly as without the option.
    complement_p: float = 0.0
    # Corrections (README "Corrections"), from their own random stream so 0 leaves the traffic
    # exactly as without them: the share of orders refunded (half of them in part, a quarter
    # arriving up to a day after later events), and of cart adds removed again.
    refund_p: float = 0.0
    removal_p: float = 0.0


def _shelf_price(p: float) -> float:
    """Round a raw price to the kind of number a shop would print (9.9, 129, 1299...)."""
    if p < 100:
        return max(0.9, math.floor(p) + 0.9)
    if p < 1000:
        return float(round(p / 10) * 10 - 1)
    return float(round(p / 100) * 100 - 1)


class TrafficGenerator:
    """Builds the catalogue and user population once; replays traffic deterministically."""

    def __init__(self, config: TrafficConfig) -> None:
        if config.users < 1 or config.products < 1:
            raise ValueError("users and products must be >= 1")
        if not 0.0 <= config.churn_share <= 1.0:
            raise ValueError("churn_share must be in [0, 1]")
        if not 0.0 <= config.erasure_rate < 1.0:
            raise ValueError("erasure_rate must be in [0, 1)")
        if config.churn_window_days <= 0:
            raise ValueError("churn_window_days must be > 0")
        if not 0.0 <= config.complement_p <= 1.0:
            raise ValueError("complement_p must be in [0, 1]")
        if not (0.0 <= config.refund_p <= 1.0 and 0.0 <= config.removal_p <= 1.0):
            raise ValueError("refund_p and removal_p must be in [0, 1]")
        self.config = config
        # Independent streams: changing the user count leaves the catalogue unchanged.
        cat_ss, user_ss, sim_ss, live_ss = np.random.SeedSequence(config.seed).spawn(4)
        self._sim_seed = int(sim_ss.generate_state(1, np.uint64)[0])
        self._live_seed = int(live_ss.generate_state(1, np.uint64)[0])
        self._build_leaves()
        self._build_catalog(np.random.Generator(np.random.PCG64(cat_ss)))
        self._build_users(np.random.Generator(np.random.PCG64(user_ss)))
        self._p_rows = {pid: i for i, pid in enumerate(self._p_id)}

    # ----------------------------------------------------------------- construction

    def _build_leaves(self) -> None:
        self._leaf_spec: list[Leaf] = []
        self._leaf_top: list[int] = []
        self._leaf_path: list[tuple[list[str], list[str]]] = []
        self._top_leaves: list[list[int]] = []
        for ti, top in enumerate(CATEGORIES):
            ids = []
            for leaf in top.leaves:
                ids.append(len(self._leaf_spec))
                self._leaf_spec.append(leaf)
                self._leaf_top.append(ti)
                self._leaf_path.append(([top.zh, *leaf.path_zh], [top.en, *leaf.path_en]))
            self._top_leaves.append(ids)
        w = np.array([t.weight for t in CATEGORIES])
        self._top_p = w / w.sum()

    def _build_catalog(self, rng: np.random.Generator) -> None:
        n = self.config.products
        ntop = len(CATEGORIES)
        tops = rng.choice(ntop, size=n, p=self._top_p)
        u = rng.random((n, 7))
        z = rng.standard_normal(n)
        brand_mult = rng.lognormal(0.0, 0.25, size=(ntop, 8))
        self._p_quality: list[float] = rng.standard_normal(n).tolist()
        disc = rng.random(n) < DISCONTINUED_SHARE
        lang = np.where(rng.random(n) < ZH_LISTING_SHARE, ZH, EN)
        # Popularity: a random rank within the product's top category, Zipf weight by rank.
        weight = np.empty(n)
        for ti in range(ntop):
            in_top = np.flatnonzero(tops == ti)
            ranks = rng.permutation(len(in_top)) + 1
            weight[in_top] = ranks.astype(float) ** -ZIPF_S

        self._p_id: list[str] = []
        self._p_title: list[str] = []
        self._p_cat: list[list[str]] = []
        self._p_price: list[float] = []
        self._p_brand: list[str] = []
        self._p_top: list[int] = []
        self._p_leaf: list[int] = []
        self._p_lang: list[int] = []
        self._p_noun: list[int] = []
        self._p_disc: list[bool] = disc.tolist()
        self._p_weight: list[float] = weight.tolist()
        for i in range(n):
            ti = int(tops[i])
            top = CATEGORIES[ti]
            li = self._top_leaves[ti][int(u[i, 0] * len(self._top_leaves[ti]))]
            leaf = self._leaf_spec[li]
            lg = int(lang[i])
            bi = int(u[i, 1] * len(top.brands))
            nouns = leaf.nouns_zh if lg == ZH else leaf.nouns_en
            attrs = leaf.attrs_zh if lg == ZH else leaf.attrs_en
            variants = top.variants_zh if lg == ZH else top.variants_en
            editions = EDITION_ZH if lg == ZH else EDITION_EN
            ni = int(u[i, 2] * len(nouns))
            a1 = int(u[i, 3] * len(attrs))
            # A second, different attribute on about 60% of titles.
            a2 = (a1 + 1 + int(u[i, 4] * (len(attrs) - 1))) % len(attrs) if u[i, 4] < 0.6 else -1
            variant = variants[int(u[i, 5] * len(variants))]
            edition = (
                editions[int(u[i, 6] / EDITION_P * len(editions))] if u[i, 6] < EDITION_P else ""
            )
            brand = top.brands[bi][lg]
            if lg == ZH:
                body = (attrs[a2] if a2 >= 0 else "") + nouns[ni]
                parts = [brand, edition, attrs[a1], body, variant]
                title = " ".join(p for p in parts if p)
            else:
                parts = [brand, edition, attrs[a1], attrs[a2] if a2 >= 0 else "", nouns[ni]]
                title = " ".join(p for p in parts if p) + ", " + variant
            raw = (
                leaf.median_price_cny
                * float(brand_mult[ti, bi])
                * math.exp(top.price_sigma * float(z[i]))
            )
            self._p_id.append(f"p{i:06d}")
            self._p_title.append(title)
            self._p_cat.append(self._leaf_path[li][lg])
            self._p_price.append(_shelf_price(raw))
            self._p_brand.append(brand)
            self._p_top.append(ti)
            self._p_leaf.append(li)
            self._p_lang.append(lg)
            self._p_noun.append(ni)

        # Pick lists with cumulative popularity, per (top, language) and (leaf, language);
        # empty lists fall back so that a pick never fails, even for tiny catalogues.
        every = list(range(n))

        def picklist(members: list[int]) -> tuple[list[int], list[float]]:
            cum: list[float] = []
            acc = 0.0
            for m in members:
                acc += self._p_weight[m]
                cum.append(acc)
            return members, cum

        by_top: list[list[list[int]]] = [[[], []] for _ in range(ntop)]
        by_leaf: list[list[list[int]]] = [[[], []] for _ in self._leaf_spec]
        for i in range(n):
            by_top[self._p_top[i]][self._p_lang[i]].append(i)
            by_leaf[self._p_leaf[i]][self._p_lang[i]].append(i)
        self._pick_top: list[list[tuple[list[int], list[float]]]] = []
        for ti in range(ntop):
            row = []
            for lg in (ZH, EN):
                members = by_top[ti][lg] or by_top[ti][1 - lg] or every
                row.append(picklist(members))
            self._pick_top.append(row)
        self._pick_leaf: list[list[tuple[list[int], list[float]]]] = []
        for li in range(len(self._leaf_spec)):
            row = []
            for lg in (ZH, EN):
                members = by_leaf[li][lg] or by_leaf[li][1 - lg]
                row.append(picklist(members) if members else self._pick_top[self._leaf_top[li]][lg])
            self._pick_leaf.append(row)

        self._p_comp = self._complements(by_leaf)

    def _complements(self, by_leaf: list[list[list[int]]]) -> list[int]:
        """Each device's accessory (-1: none), a pure function of the catalogue: no draw."""
        out = [-1] * len(self._p_id)
        for leaves in self._top_leaves:
            for k in range(0, len(leaves) - 1, 2):
                device, accessory = leaves[k], leaves[k + 1]
                for lg in (ZH, EN):
                    # The accessory leaf's best sellers: popular cases go with many phones.
                    members = by_leaf[accessory][lg] or by_leaf[accessory][1 - lg]
                    pool = sorted(members, key=lambda m: (-self._p_weight[m], m))[:3]
                    for i in by_leaf[device][lg]:
                        if pool:
                            out[i] = pool[(i * 2_654_435_761) % len(pool)]
        return out

    def planted_complements(self) -> dict[str, str]:
        """Device product id -> its planted accessory (what ``complement_p`` plants)."""
        return {self._p_id[i]: self._p_id[c] for i, c in enumerate(self._p_comp) if c >= 0}

    def _build_users(self, rng: np.random.Generator) -> None:
        cfg = self.config
        n = cfg.users
        ntop = len(CATEGORIES)
        lang = np.where(rng.random(n) < ZH_USER_SHARE, ZH, EN)
        usd_p = np.where(lang == ZH, USD_SHARE[ZH], USD_SHARE[EN])
        usd = rng.random(n) < usd_p
        epd = np.clip(rng.lognormal(math.log(MEDIAN_EVENTS_PER_DAY), 1.0, n), 0.3, 300.0)
        spd = epd / MEAN_SESSION_EVENTS
        cadence = np.clip(rng.lognormal(math.log(MEDIAN_CADENCE_DAYS), 0.7, n), 1.5, 120.0)
        # A user cannot buy more often than their sessions allow; plant the achievable cadence.
        cadence = np.maximum(cadence, 1.0 / (MAX_PURCHASE_P * spd))
        churner = rng.random(n) < cfg.churn_share
        churn_frac = rng.uniform(0.1, 1.0, n)
        n_interests = rng.choice([1, 2, 3], size=n, p=[0.3, 0.45, 0.25])

        self._u_id = [f"u{i:06d}" for i in range(n)]
        self._u_lang: list[int] = lang.tolist()
        self._u_usd: list[bool] = usd.tolist()
        self._u_tz: list[float] = np.where(usd, -5.0, 8.0).tolist()
        self._u_epd: list[float] = epd.tolist()
        self._u_spd: list[float] = spd.tolist()
        self._u_cadence: list[float] = cadence.tolist()
        self._u_pbuy: list[float] = (1.0 / (cadence * spd)).tolist()
        self._u_churn: list[float] = [
            float(cfg.start_ms + int(f * cfg.churn_window_days * DAY_MS)) if c else math.inf
            for c, f in zip(churner.tolist(), churn_frac.tolist(), strict=True)
        ]
        self._u_tops: list[list[int]] = []
        self._u_weights: list[list[float]] = []
        self._u_cum: list[list[float]] = []
        self._u_fav: list[list[int]] = []
        for i in range(n):
            k = int(n_interests[i])
            tops = rng.choice(ntop, size=k, replace=False, p=self._top_p).tolist()
            w = rng.dirichlet([1.5] * k)
            order = np.argsort(-w)
            tops = [int(tops[j]) for j in order]
            weights = [float(w[j]) for j in order]
            favs = []
            for t in tops:
                leaves = self._top_leaves[t]
                if rng.random() < FAVOURITE_LEAF_P:
                    favs.append(leaves[int(rng.integers(len(leaves)))])
                else:
                    favs.append(-1)
            self._u_tops.append(tops)
            self._u_weights.append(weights)
            self._u_cum.append(np.cumsum(weights).tolist())
            self._u_fav.append(favs)

    # ----------------------------------------------------------------- public API

    def user_ids(self) -> list[str]:
        """All user ids, in index order."""
        return list(self._u_id)

    def catalog(self) -> list[dict[str, Any]]:
        """One ``product`` upsert per product, all at ``start_ms``."""
        seed, ts = self.config.seed, self.config.start_ms
        return [
            self._product_event(f"e-{seed}-c{i}", ts, i, self._p_price[i], self._p_disc[i])
            for i in range(len(self._p_id))
        ]

    def history(self, days: float) -> Iterator[dict[str, Any]]:
        """Simulated events over ``[start_ms, start_ms + days]`` in nondecreasing ``ts``.

        Except late refunds (``refund_p``): a quarter of them come after events up to a day
        newer than their own ``ts``.
        """
        seed = self.config.seed
        end = self.config.start_ms + days * DAY_MS
        sim = _Sim(self, self._sim_seed, str(seed))
        for n, ev in enumerate(sim.run(end, stop_when_idle=False)):
            ev["event_id"] = f"e-{seed}-{n}"
            yield ev

    def live(self, now_ms: Callable[[], int]) -> Iterator[dict[str, Any]]:
        """Endless traffic stamped with ``now_ms()`` at generation.

        The behavioural model runs in simulated time as fast as the caller pulls, so time is
        compressed by however fast the consumer paces it: about 1% of events are purchases
        (default population), so a demo pulling 20 events/s shows one every ~5 seconds, and
        one simulated day (~9k events for 1000 users) passes in ~18 s at 500 events/s.
        Ids carry the start time, so restarting never repeats an ``event_id``.
        """
        t0 = int(now_ms())
        seed = self.config.seed
        n = 0
        epoch = 0
        while True:
            prefix = f"{seed}-L{t0}-{epoch}"
            sim_seed = (self._live_seed ^ (t0 * 1_000_003) ^ epoch) & ((1 << 64) - 1)
            sim = _Sim(self, sim_seed, prefix)
            produced = 0
            # When every user has churned or been erased the epoch ends and a fresh one starts.
            for ev in sim.run(math.inf, stop_when_idle=True):
                ev["ts"] = int(now_ms())
                ev["event_id"] = f"e-{seed}-L{t0}-{n}"
                n += 1
                produced += 1
                yield ev
            if produced == 0:
                raise RuntimeError("live traffic epoch produced no events")
            epoch += 1

    def user_truth(self, user_id: str) -> dict[str, Any]:
        """Planted facts about one user, for evaluating profiles against ground truth."""
        i = self._user_index(user_id)
        lg = self._u_lang[i]
        interests = []
        for t, w, fav in zip(self._u_tops[i], self._u_weights[i], self._u_fav[i], strict=True):
            top = CATEGORIES[t]
            interests.append(
                {
                    "key": top.key,
                    "category": top.zh if lg == ZH else top.en,
                    "category_zh": top.zh,
                    "category_en": top.en,
                    "weight": w,
                    "favourite_leaf": list(self._leaf_path[fav][lg]) if fav >= 0 else None,
                }
            )
        churn = self._u_churn[i]
        return {
            "user_id": user_id,
            "language": LANG_CODES[lg],
            "currency": "USD" if self._u_usd[i] else "CNY",
            "utc_offset_h": self._u_tz[i],
            "interests": interests,
            "churn_ms": None if math.isinf(churn) else int(churn),
            "purchase_cadence_days": self._u_cadence[i],
            "events_per_day": self._u_epd[i],
            "sessions_per_day": self._u_spd[i],
        }

    def interested(self, user_id: str, product_id: str) -> bool:
        """Whether ``product_id`` lies in one of the user's planted top categories: what
        makes a recommended item relevant to them (:mod:`stream.simulation.respond`)."""
        p = self._product_index(product_id)
        return self._p_top[p] in self._u_tops[self._user_index(user_id)]

    def product_line(self, user_id: str, product_id: str) -> dict[str, Any]:
        """One unit of ``product_id`` as an order line at its catalogue price, in the user's
        currency, with the tracking fields the generator's own lines carry."""
        p = self._product_index(product_id)
        price = self._p_price[p]
        if self._u_usd[self._user_index(user_id)]:
            price = max(0.01, round(price * USD_PER_CNY, 2))
        return {
            "product_id": product_id,
            "quantity": 1,
            "price": price,
            "title": self._p_title[p],
            "category": list(self._p_cat[p]),
        }

    def currency(self, user_id: str) -> str:
        return "USD" if self._u_usd[self._user_index(user_id)] else "CNY"

    # ----------------------------------------------------------------- helpers

    def _product_index(self, product_id: str) -> int:
        return self._p_rows[product_id]

    def _user_index(self, user_id: str) -> int:
        if len(user_id) == 7 and user_id[0] == "u" and user_id[1:].isdigit():
            i = int(user_id[1:])
            if i < len(self._u_id):
                return i
        raise KeyError(user_id)

    def _product_event(
        self, event_id: str, ts: int, i: int, price: float, discontinued: bool
    ) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "event_id": event_id,
            "type": "product",
            "schema_version": SCHEMA_VERSION,
            "user_id": CATALOG_USER_ID,
            "ts": ts,
            "product_id": self._p_id[i],
            "title": self._p_title[i],
            "category": list(self._p_cat[i]),
            "price": price,
            "currency": "CNY",
            "brand": self._p_brand[i],
        }
        if discontinued:
            ev["discontinued"] = True
        return ev


class _Sim:
    """One run of the behavioural model: mutable state kept apart from the generator."""

    def __init__(self, gen: TrafficGenerator, seed: int, prefix: str) -> None:
        self.g = gen
        self.rng = random.Random(seed)
        # Erasures draw from their own stream so a zero rate leaves the traffic untouched.
        self.erase_rng = random.Random(seed ^ 0x5EED_E7A5)
        self.fix_rng = random.Random(seed ^ 0xC0_44EC7)  # corrections, likewise
        self.prefix = prefix
        self.prices = list(gen._p_price)
        self.discontinued = list(gen._p_disc)
        self.pending: dict[int, list[tuple[float, int]]] = {}
        self.session_n = [0] * len(gen._u_id)
        self.order_n = 0
        self.seq = 0
        self.out: list[tuple[int, int, dict[str, Any]]] = []
        self.schedule: list[tuple[float, int, int]] = []
        self.active = 0
        start = float(gen.config.start_ms)
        for u in range(len(gen._u_id)):
            t = self._next_start(u, start)
            if t < gen._u_churn[u]:
                self._schedule(t, u)
        n_products = len(gen._p_id)
        self.catalog_rate = n_products * CATALOG_UPDATES_PER_PRODUCT_DAY / DAY_MS
        self._schedule(start + self.rng.expovariate(self.catalog_rate), -1)

    def _schedule(self, t: float, u: int) -> None:
        self.seq += 1
        heapq.heappush(self.schedule, (t, self.seq, u))
        if u >= 0:
            self.active += 1

    def run(self, end: float, *, stop_when_idle: bool) -> Iterator[dict[str, Any]]:
        g = self.g
        out = self.out
        schedule = self.schedule
        rate = g.config.erasure_rate
        erase_draw = self.erase_rng.random
        erased: set[str] = set()
        pop = heapq.heappop
        while schedule[0][0] <= end:
            t, _, u = pop(schedule)
            # Every event at or before t is final: later sessions start at t or after.
            while out and out[0][0] <= t:
                ev = pop(out)[2]
                uid = ev["user_id"]
                if uid in erased:
                    continue
                if rate and uid != CATALOG_USER_ID and erase_draw() < rate:
                    erased.add(uid)
                    yield self._erasure(ev["ts"], uid)
                    continue
                yield ev
            if u < 0:
                self._catalog_update(t)
                self._schedule(t + self.rng.expovariate(self.catalog_rate), -1)
                continue
            self.active -= 1
            if g._u_id[u] not in erased:
                t_end = self._session(u, t)
                nxt = self._next_start(u, t_end + 60_000)
                if nxt < g._u_churn[u]:
                    self._schedule(nxt, u)
            if stop_when_idle and self.active == 0:
                break
        while out and out[0][0] <= end:
            ev = pop(out)[2]
            uid = ev["user_id"]
            if uid in erased:
                continue
            if rate and uid != CATALOG_USER_ID and erase_draw() < rate:
                erased.add(uid)
                yield self._erasure(ev["ts"], uid)
                continue
            yield ev

    # ----------------------------------------------------------------- timing

    def _next_start(self, u: int, t: float) -> float:
        """Next session start after ``t``: a diurnal, churn-fading Poisson process (thinning)."""
        g = self.g
        rng = self.rng
        lam = g._u_spd[u] / _DIURNAL_MEAN / DAY_MS
        tz = g._u_tz[u]
        churn = g._u_churn[u]
        fade_from = churn - CHURN_DECAY_MS
        while True:
            t += rng.expovariate(lam)
            if t >= churn:
                return t
            accept = DIURNAL[int(t / HOUR_MS + tz) % 24]
            if t > fade_from:
                accept *= max(CHURN_DECAY_FLOOR, (churn - t) / CHURN_DECAY_MS)
            if rng.random() < accept:
                return t

    # ----------------------------------------------------------------- sessions

    def _push(self, ts: int, ev: dict[str, Any]) -> None:
        self.seq += 1
        heapq.heappush(self.out, (ts, self.seq, ev))

    def _focus(self, u: int) -> tuple[int, int]:
        """The session's (top category, leaf) from the user's interests, or exploration."""
        g = self.g
        rng = self.rng
        if rng.random() < EXPLORE_P:
            top = int(rng.random() * len(CATEGORIES))
            fav = -1
        else:
            cum = g._u_cum[u]
            k = min(bisect.bisect(cum, rng.random() * cum[-1]), len(cum) - 1)
            top = g._u_tops[u][k]
            fav = g._u_fav[u][k]
        if fav >= 0 and rng.random() < FAVOURITE_LEAF_FOCUS_P:
            return top, fav
        leaves = g._top_leaves[top]
        return top, leaves[int(rng.random() * len(leaves))]

    def _pick(self, top: int, leaf: int, lang: int) -> int:
        rng = self.rng
        lg = lang if rng.random() < SAME_LANGUAGE_LISTING_P else 1 - lang
        if rng.random() < LEAF_STICKINESS:
            members, cum = self.g._pick_leaf[leaf][lg]
        else:
            members, cum = self.g._pick_top[top][lg]
        return members[min(bisect.bisect(cum, rng.random() * cum[-1]), len(members) - 1)]

    def _session(self, u: int, t0: float) -> float:
        """Generate one session's events into the output heap; return its end time."""
        g = self.g
        rng = self.rng
        rand = rng.random
        churn = g._u_churn[u]
        uid = g._u_id[u]
        lang = g._u_lang[u]
        k = self.session_n[u]
        self.session_n[u] = k + 1
        sid = f"s-{self.prefix}-{uid}-{k}"
        t = t0
        prices = self.prices
        disc = self.discontinued
        p_title, p_cat, p_id = g._p_title, g._p_cat, g._p_id
        push = self._push

        def emit(ev: dict[str, Any]) -> None:
            # Events after the churn time are never produced, even mid-session.
            if ev["ts"] < churn:
                push(ev["ts"], ev)

        pend = self.pending.get(u)
        if pend:
            later = []
            for due, p in pend:
                if due <= t:
                    emit(self._review(uid, sid, int(t), p, lang))
                    t += 20_000 + rng.expovariate(1 / 60_000)
                else:
                    later.append((due, p))
            self.pending[u] = later

        top, leaf = self._focus(u)
        if rand() < SEARCH_P[lang]:
            emit(self._search(uid, sid, int(t), leaf, lang))
            t += 3_000 + rng.expovariate(1 / 10_000)

        will_buy = rand() < g._u_pbuy[u]
        cart_p = CART_P_BUYING if will_buy else CART_P_BROWSING
        max_q = CATEGORIES[top].max_quantity
        n_clicks = 1 + int(rng.expovariate(1 / 4.0))
        carts: dict[int, int] = {}
        last = -1
        for i in range(n_clicks):
            if i and rand() < RESEARCH_P:
                top, leaf = self._focus(u)
                max_q = CATEGORIES[top].max_quantity
                emit(self._search(uid, sid, int(t), leaf, lang))
                t += 3_000 + rng.expovariate(1 / 10_000)
            p = self._pick(top, leaf, lang)
            emit(
                {
                    "event_id": "",
                    "type": "click",
                    "schema_version": SCHEMA_VERSION,
                    "user_id": uid,
                    "ts": int(t),
                    "session_id": sid,
                    "product_id": p_id[p],
                    "title": p_title[p],
                    "category": list(p_cat[p]),
                    "price": prices[p],
                }
            )
            t += 5_000 + rng.expovariate(1 / 35_000)
            last = p
            if not disc[p] and rand() < cart_p:
                q = 1 if max_q == 1 or rand() < 0.8 else rng.randint(2, max_q)
                emit(self._add_to_cart(uid, sid, int(t), p, q))
                carts[p] = carts.get(p, 0) + q
                t += 3_000 + rng.expovariate(1 / 15_000)
                if g.config.removal_p and self.fix_rng.random() < g.config.removal_p:
                    emit(self._removal(uid, sid, int(t), p, carts.pop(p)))
                    t += 2_000
        if will_buy:
            if not carts and not disc[last]:
                emit(self._add_to_cart(uid, sid, int(t), last, 1))
                carts[last] = 1
                t += 3_000 + rng.expovariate(1 / 15_000)
            if carts:
                t += 20_000 + rng.expovariate(1 / 90_000)
                order = self._purchase(u, uid, sid, int(t), carts)
                emit(order)
                if g.config.refund_p and self.fix_rng.random() < g.config.refund_p:
                    self._refund(order, churn)
                if g.config.complement_p > 0:
                    t = self._accessories(u, uid, sid, t, carts, emit)
        return t

    def _accessories(
        self,
        u: int,
        uid: str,
        sid: str,
        t: float,
        carts: dict[int, int],
        emit: Callable[[dict[str, Any]], None],
    ) -> float:
        """The planted complements of an order: viewed, then bought in a second order."""
        g, rng = self.g, self.rng
        extra = {}
        for p in carts:
            c = g._p_comp[p]
            live = c >= 0 and c not in carts and not self.discontinued[c]
            if live and rng.random() < g.config.complement_p:
                extra[c] = 1
        if not extra:
            return t
        for c in extra:
            t += 10_000 + rng.expovariate(1 / 30_000)
            emit(self._click(uid, sid, int(t), c))
        t += 20_000 + rng.expovariate(1 / 60_000)
        emit(self._purchase(u, uid, sid, int(t), extra))
        return t

    def _click(self, uid: str, sid: str, ts: int, p: int) -> dict[str, Any]:
        g = self.g
        return {
            "event_id": "",
            "type": "click",
            "schema_version": SCHEMA_VERSION,
            "user_id": uid,
            "ts": ts,
            "session_id": sid,
            "product_id": g._p_id[p],
            "title": g._p_title[p],
            "category": list(g._p_cat[p]),
            "price": self.prices[p],
        }

    def _add_to_cart(self, uid: str, sid: str, ts: int, p: int, q: int) -> dict[str, Any]:
        g = self.g
        return {
            "event_id": "",
            "type": "add_to_cart",
            "schema_version": SCHEMA_VERSION,
            "user_id": uid,
            "ts": ts,
            "session_id": sid,
            "product_id": g._p_id[p],
            "quantity": q,
            "price": self.prices[p],
            "title": g._p_title[p],
            "category": list(g._p_cat[p]),
        }

    def _purchase(
        self, u: int, uid: str, sid: str, ts: int, carts: dict[int, int]
    ) -> dict[str, Any]:
        g = self.g
        usd = g._u_usd[u]
        items = []
        total = 0.0
        for p, q in carts.items():
            price = self.prices[p]
            if usd:
                price = max(0.01, round(price * USD_PER_CNY, 2))
            total += q * price
            items.append(
                {
                    "product_id": g._p_id[p],
                    "quantity": q,
                    "price": price,
                    "title": g._p_title[p],
                    "category": list(g._p_cat[p]),
                }
            )
            if self.rng.random() < REVIEW_P:
                due = ts + DAY_MS * self.rng.uniform(1.0, 6.0)
                self.pending.setdefault(u, []).append((due, p))
        self.order_n += 1
        return {
            "event_id": "",
            "type": "purchase",
            "schema_version": SCHEMA_VERSION,
            "user_id": uid,
            "ts": ts,
            "session_id": sid,
            "order_id": f"o-{self.prefix}-{self.order_n}",
            "items": items,
            "amount": round(total, 2),
            "currency": "USD" if usd else "CNY",
        }

    def _removal(self, uid: str, sid: str, ts: int, p: int, q: int) -> dict[str, Any]:
        return {
            "event_id": "",
            "type": "remove_from_cart",
            "schema_version": SCHEMA_VERSION,
            "user_id": uid,
            "ts": ts,
            "session_id": sid,
            "product_id": self.g._p_id[p],
            "quantity": q,
        }

    def _refund(self, order: dict[str, Any], churn: float) -> None:
        """A refund of ``order`` a few days on: whole, or one unit of its first line."""
        draw = self.fix_rng
        ts = int(order["ts"] + DAY_MS * draw.uniform(0.5, 5.0))
        if ts >= churn:
            return
        ev: dict[str, Any] = {
            "event_id": "",
            "type": "refund",
            "schema_version": SCHEMA_VERSION,
            "user_id": order["user_id"],
            "ts": ts,
            "order_id": order["order_id"],
        }
        if draw.random() < 0.5:
            ev["items"] = [{"product_id": order["items"][0]["product_id"], "quantity": 1}]
        else:
            ev["cancelled"] = draw.random() < 0.3
        # Some arrive late: after events up to a day newer (well inside the lateness bound).
        lag = int(draw.uniform(0, DAY_MS)) if draw.random() < 0.25 else 0
        self._push(ts + lag, ev)

    def _review(self, uid: str, sid: str, ts: int, p: int, lang: int) -> dict[str, Any]:
        g = self.g
        rng = self.rng
        rating = round(4.0 + 0.7 * g._p_quality[p] + rng.gauss(0.0, 0.9))
        rating = min(5, max(1, rating))
        leaf = g._leaf_spec[g._p_leaf[p]]
        nouns = leaf.nouns_zh if lang == ZH else leaf.nouns_en
        noun = nouns[g._p_noun[p] % len(nouns)]
        if lang == EN:
            noun = noun.lower()
        pool = REVIEW_ZH if lang == ZH else REVIEW_EN
        mood = "pos" if rating >= 4 else ("mid" if rating == 3 else "neg")
        extra = pool[mood]
        sentences = [rng.choice(pool[mood + "_lead"]).format(noun=noun)]
        sentences += rng.sample(extra, 1 + int(rng.random() < 0.5))
        text = ("" if lang == ZH else " ").join(sentences)
        return {
            "event_id": "",
            "type": "review",
            "schema_version": SCHEMA_VERSION,
            "user_id": uid,
            "ts": ts,
            "session_id": sid,
            "product_id": g._p_id[p],
            "rating": rating,
            "text": text,
            "title": g._p_title[p],
            "category": list(g._p_cat[p]),
        }

    def _search(self, uid: str, sid: str, ts: int, leaf: int, lang: int) -> dict[str, Any]:
        return {
            "event_id": "",
            "type": "search",
            "schema_version": SCHEMA_VERSION,
            "user_id": uid,
            "ts": ts,
            "session_id": sid,
            "query": self._query(leaf, lang),
        }

    def _query(self, leaf: int, lang: int) -> str:
        g = self.g
        rng = self.rng
        spec = g._leaf_spec[leaf]
        top = CATEGORIES[g._leaf_top[leaf]]
        r = rng.random()
        if lang == ZH:
            noun, attr = rng.choice(spec.nouns_zh), rng.choice(spec.attrs_zh)
            if r < 0.4:
                return f"{attr} {noun}"
            if r < 0.6:
                return f"{rng.choice(top.brands)[ZH]} {noun}"
            if r < 0.8:
                return f"{noun} {rng.choice(QUERY_EXTRAS_ZH)}"
            return f"{attr}{noun} {rng.choice(top.variants_zh)}"
        noun, attr = rng.choice(spec.nouns_en), rng.choice(spec.attrs_en)
        if r < 0.4:
            q = f"{attr} {noun}"
        elif r < 0.6:
            q = f"{rng.choice(top.brands)[EN]} {noun}"
        elif r < 0.8:
            q = f"{rng.choice(QUERY_EXTRAS_EN)} {noun}"
        else:
            q = f"{noun} {rng.choice(top.variants_en)}"
        return q.lower()

    def _erasure(self, ts: int, uid: str) -> dict[str, Any]:
        return {
            "event_id": "",
            "type": "user_erasure",
            "schema_version": SCHEMA_VERSION,
            "user_id": uid,
            "ts": ts,
            "requested_by": ERASURE_REQUESTER,
            "reason": self.erase_rng.choice(ERASURE_REASONS),
        }

    def _catalog_update(self, t: float) -> None:
        """A price change (or, rarely, a discontinuation) of a random live product."""
        rng = self.rng
        g = self.g
        p = int(rng.random() * len(g._p_id))
        if self.discontinued[p]:
            return
        if rng.random() < CATALOG_DISCONTINUE_P:
            self.discontinued[p] = True
        else:
            self.prices[p] = _shelf_price(self.prices[p] * rng.uniform(0.75, 1.15))
        self._push(int(t), g._product_event("", int(t), p, self.prices[p], self.discontinued[p]))


def to_jsonl(events: Iterable[dict[str, Any]], path: Path) -> int:
    """Write events one JSON object per line; return how many were written."""
    n = 0
    with path.open("wb") as f:
        for ev in events:
            f.write(orjson.dumps(ev, option=orjson.OPT_APPEND_NEWLINE))
            n += 1
    return n


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Read events written by :func:`to_jsonl` (blank lines are skipped)."""
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                obj: dict[str, Any] = orjson.loads(line)
                yield obj
