"""A user's review sentiment in event time, and a batch's per-product contributions.

The user's state is decayed sums anchored at their latest review (``t``): each review adds its
score ``s`` and weight 1, both scaled by ``2 ** (-(t - ts) / h)``, so the decayed mean
``sum / w`` does not depend on when it is read nor on the order reviews arrive in (a late
review is added already decayed). Counts are exact; disagreement counts reviews whose text
contradicts their stars (4-5 stars with a negative text, 1-2 stars with a positive one).

>>> st = SentimentState.empty()
>>> st.add(-0.8, rating=5, ts=0, half_life_ms=1000, polar=0.3)
>>> st.add(0.6, rating=4, ts=1000, half_life_ms=1000, polar=0.3)  # the older review halves
>>> round(st.mean(), 4), round(st.negative_share(), 4), st.high_stars_negative_text
(0.1333, 0.3333, 1)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SentimentState", "item_fields"]


@dataclass(slots=True)
class SentimentState:
    reviews: int
    negative: int
    positive: int
    high_stars_negative_text: int
    low_stars_positive_text: int
    sum: float  # decayed sum of scores at ``t``
    w: float  # decayed number of reviews at ``t``
    wneg: float  # decayed number of negative reviews at ``t``
    t: int | None  # latest review time (ms)
    last_score: float | None = None

    @classmethod
    def empty(cls) -> SentimentState:
        return cls(0, 0, 0, 0, 0, 0.0, 0.0, 0.0, None)

    @classmethod
    def from_dict(cls, raw: Any) -> SentimentState:
        """The stored state; anything malformed starts afresh (never crashes a batch)."""
        if not isinstance(raw, dict):
            return cls.empty()
        try:
            return cls(**raw)
        except TypeError:
            return cls.empty()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, score: float, rating: int, ts: int, half_life_ms: int, polar: float) -> None:
        if self.t is None or ts > self.t:
            if self.t is not None:
                shrink = math.pow(2.0, max(-(ts - self.t) / half_life_ms, -1074.0))
                self.sum, self.w, self.wneg = (
                    self.sum * shrink,
                    self.w * shrink,
                    self.wneg * shrink,
                )
            self.t = ts
            self.last_score = score
        weight = math.pow(2.0, max(-(self.t - ts) / half_life_ms, -1074.0))
        negative, positive = score <= -polar, score >= polar
        self.sum += score * weight
        self.w += weight
        self.wneg += weight if negative else 0.0
        self.reviews += 1
        self.negative += negative
        self.positive += positive
        self.high_stars_negative_text += negative and rating >= 4
        self.low_stars_positive_text += positive and rating <= 2

    def mean(self) -> float | None:
        return self.sum / self.w if self.w > 0 else None

    def negative_share(self) -> float | None:
        return self.wneg / self.w if self.w > 0 else None

    def summary(self) -> dict[str, Any]:
        """What the profile event and the API show."""
        mean, share = self.mean(), self.negative_share()
        return {
            "score": None if mean is None else round(mean, 4),
            "negative_share": None if share is None else round(share, 4),
            "reviews": self.reviews,
            "negative": self.negative,
            "positive": self.positive,
            "disagreement": {
                "high_stars_negative_text": self.high_stars_negative_text,
                "low_stars_positive_text": self.low_stars_positive_text,
            },
            "last_review_at": self.t,
        }


def item_fields(product_id: str, score: float, polar: float) -> list[tuple[str, float]]:
    """Counter fields one review adds to its product: score sum, reviews, negative reviews.

    >>> item_fields("tea", -0.5, 0.3)
    [('s:tea', -0.5), ('n:tea', 1.0), ('x:tea', 1.0)]
    >>> item_fields("tea", 0.1, 0.3)
    [('s:tea', 0.1), ('n:tea', 1.0)]
    """
    out = [(f"s:{product_id}", score), (f"n:{product_id}", 1.0)]
    if score <= -polar:
        out.append((f"x:{product_id}", 1.0))
    return out


def item_summary(counts: dict[str, float], product_id: str) -> dict[str, Any] | None:
    """A product's decayed sentiment from merged counter fields (None: no review yet).

    >>> item_summary({"s:tea": -1.0, "n:tea": 2.0, "x:tea": 1.0}, "tea")
    {'score': -0.5, 'reviews': 2.0, 'negative_share': 0.5}
    """
    n = counts.get(f"n:{product_id}", 0.0)
    if n <= 0:
        return None
    return {
        "score": round(counts.get(f"s:{product_id}", 0.0) / n, 4),
        "reviews": round(n, 4),
        "negative_share": round(counts.get(f"x:{product_id}", 0.0) / n, 4),
    }
