"""RFM scores against population quantiles, with hysteresis, and the tier rule table.

Each customer gets three scores 1-5 (5 = best): **R** recency (days since the last purchase;
fewer is better), **F** frequency (orders), **M** monetary (total spend). The four cut points
of each are the population's tie-aware 20/40/60/80 % quantiles (:meth:`RfmCuts.estimate`),
re-estimated at every refit from the
churn model's customer sample (:mod:`profiles.value.population`).

A score moves only when the value crosses a cut by a margin (a fraction of the cut), so a
customer sitting on a boundary does not flap between two scores. The named tier is the first
row of :data:`TIERS` whose ranges hold the three scores; the table is data (also in the
README, "Customer value"), and covers every one of the 125 score triples.

>>> cuts = RfmCuts(recency=(7.0, 30.0, 90.0, 180.0), frequency=(1.0, 1.0, 2.0, 4.0),
...                monetary=(20.0, 50.0, 100.0, 250.0))
>>> s = cuts.scores(recency_days=3.0, orders=6, spend=400.0)
>>> s, tier_of(s)
((5, 5, 5), 'champions')
>>> tier_of(cuts.scores(recency_days=200.0, orders=1, spend=15.0))
'lost'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "QUANTILES",
    "TIERS",
    "RfmCuts",
    "Scores",
    "TierRule",
    "banded_score",
    "score",
    "tier_of",
]

#: The quantiles whose values cut each measure into five scores.
QUANTILES = (0.2, 0.4, 0.6, 0.8)

Scores = tuple[int, int, int]  # (R, F, M)


def score(value: float, cuts: Sequence[float]) -> int:
    """``1 + #{cuts below value}``: 1-5 for four cuts (higher value, higher score).

    >>> [score(v, (1.0, 1.0, 2.0, 4.0)) for v in (1, 2, 3, 4, 5)]
    [1, 3, 4, 4, 5]
    """
    return 1 + sum(1 for c in cuts if value > c)


def banded_score(value: float, cuts: Sequence[float], previous: int | None, margin: float) -> int:
    """The score of ``value`` with hysteresis around ``previous``.

    ``up`` counts the cuts ``value`` passed by more than ``margin·|cut|``, ``down`` those it
    passed at all less the margin: ``up <= score <= down``. The previous score is kept while
    it lies in ``[up, down]``; otherwise the nearest end of that band is taken.

    >>> cuts = (10.0, 20.0, 30.0, 40.0)
    >>> banded_score(20.5, cuts, None, 0.1), banded_score(20.5, cuts, 2, 0.1)  # inside the band
    (3, 2)
    >>> banded_score(22.5, cuts, 2, 0.1), banded_score(18.5, cuts, 3, 0.1)  # out; in the band
    (3, 3)
    >>> banded_score(17.5, cuts, 3, 0.1)
    2
    """
    if previous is None:
        return score(value, cuts)
    up = 1 + sum(1 for c in cuts if value > c + margin * abs(c))
    down = 1 + sum(1 for c in cuts if value > c - margin * abs(c))
    return min(max(previous, up), down)


@dataclass(frozen=True)
class RfmCuts:
    """The four cut points of each measure (recency in days, orders, spend in currency units)."""

    recency: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("recency", "frequency", "monetary"):
            values = getattr(self, name)
            if len(values) != len(QUANTILES) or list(values) != sorted(values):
                raise ValueError(f"{name} needs {len(QUANTILES)} non-decreasing cuts: {values}")

    @classmethod
    def estimate(
        cls, recency_days: Sequence[float], orders: Sequence[float], spend: Sequence[float]
    ) -> RfmCuts:
        """Tie-aware population quantiles of each measure: a tied block of values takes the
        score of its lowest rank (the ``min`` rank method), so each score holds the customers
        whose rank falls in its fifth of the population, and a heavily tied value (most
        customers ordered once) no longer swallows the next scores. Cut ``i`` is the largest
        value with fewer than ``QUANTILES[i]`` of the population below it.

        >>> cuts = RfmCuts.estimate([1, 2, 3, 4, 5], [1, 1, 1, 2, 9], [5, 10, 20, 40, 80])
        >>> cuts.frequency, [score(v, cuts.frequency) for v in (1, 2, 9)]
        ((1.0, 1.0, 1.0, 2.0), [1, 4, 5])
        >>> cuts.recency  # fewer days is better: ranked on the negated scale
        (2.0, 3.0, 4.0, 5.0)
        """

        def q(values: Sequence[float], sign: float = 1.0) -> tuple[float, ...]:
            if len(values) == 0:
                raise ValueError("cannot estimate quantiles without customers")
            ordered = np.sort(sign * np.asarray(values, dtype=np.float64))
            distinct, first = np.unique(ordered, return_index=True)
            below = first / len(ordered)  # share of the population below each distinct value
            at = np.searchsorted(below, QUANTILES, side="left") - 1
            return tuple(sorted(round(sign * float(distinct[i]), 6) for i in at))

        return cls(q(recency_days, -1.0), q(orders), q(spend))

    def scores(
        self,
        recency_days: float,
        orders: float,
        spend: float,
        previous: Scores | None = None,
        margin: float = 0.0,
    ) -> Scores:
        """``(R, F, M)``, each 1-5; with ``previous``, moved only beyond ``margin`` (hysteresis).
        Recency is negated (fewer days, higher score)."""
        pr, pf, pm = previous if previous is not None else (None, None, None)
        neg = [-c for c in reversed(self.recency)]
        return (
            banded_score(-recency_days, neg, pr, margin),
            banded_score(orders, self.frequency, pf, margin),
            banded_score(spend, self.monetary, pm, margin),
        )

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "recency": list(self.recency),
            "frequency": list(self.frequency),
            "monetary": list(self.monetary),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> RfmCuts:
        return cls(
            tuple(float(v) for v in state["recency"]),
            tuple(float(v) for v in state["frequency"]),
            tuple(float(v) for v in state["monetary"]),
        )


@dataclass(frozen=True)
class TierRule:
    """A tier and the inclusive score ranges ``(low, high)`` of R, F and M it takes."""

    tier: str
    r: tuple[int, int]
    f: tuple[int, int]
    m: tuple[int, int]

    def holds(self, scores: Scores) -> bool:
        r, f, m = scores
        return (
            self.r[0] <= r <= self.r[1]
            and self.f[0] <= f <= self.f[1]
            and self.m[0] <= m <= self.m[1]
        )


#: The tier rule table: the first row whose ranges hold a customer's (R, F, M) wins.
TIERS: tuple[TierRule, ...] = (
    TierRule("champions", r=(4, 5), f=(4, 5), m=(4, 5)),
    TierRule("loyal", r=(3, 5), f=(3, 5), m=(1, 5)),
    TierRule("new", r=(4, 5), f=(1, 1), m=(1, 5)),
    TierRule("promising", r=(3, 5), f=(1, 2), m=(1, 5)),
    TierRule("cannot_lose", r=(1, 2), f=(4, 5), m=(4, 5)),
    TierRule("at_risk", r=(1, 2), f=(3, 5), m=(1, 5)),
    TierRule("hibernating", r=(2, 3), f=(1, 5), m=(1, 5)),
    TierRule("lost", r=(1, 5), f=(1, 5), m=(1, 5)),
)

#: Every tier name, in table order.
TIER_NAMES: tuple[str, ...] = tuple(rule.tier for rule in TIERS)


def tier_of(scores: Scores, rules: Sequence[TierRule] = TIERS) -> str:
    """The first rule that holds ``scores``.

    >>> tier_of((5, 1, 3)), tier_of((4, 2, 1)), tier_of((1, 5, 5)), tier_of((2, 3, 1))
    ('new', 'promising', 'cannot_lose', 'at_risk')
    """
    for rule in rules:
        if rule.holds(scores):
            return rule.tier
    raise ValueError(f"no tier rule holds {scores}")
