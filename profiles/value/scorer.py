"""Customer value of one profile: expected spend per order, purchases and value over horizons,
RFM scores and tier (with hysteresis), and the tier change to announce.

Scored at every write of a customer, as of their latest event, with the population fits the
last refit stored: the Gamma-Gamma (:mod:`profiles.value.gammagamma`) for spend per order, the
churn feature's BG/NBD (:mod:`profiles.churn.bgnbd`) for the number of purchases.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from profiles.churn.bgnbd import BGNBDParams, expected_purchases_one, p_dead_one
from profiles.churn.features import Behaviour, customer_summary
from profiles.core.profile import Profile
from profiles.value.gammagamma import expected_value_one
from profiles.value.population import ValueFit, measures, spend_of
from profiles.value.rfm import Scores, tier_of

__all__ = ["ValueChange", "ValueScorer", "next_check", "value_event"]

_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class ValueChange:
    profile: Profile
    previous: str | None
    state: dict[str, Any]


class ValueScorer:
    """Scores customers with the current fits; ``bgnbd`` reads the churn model's parameters."""

    def __init__(
        self,
        horizons_days: Sequence[float] = (90.0, 365.0),
        margin: float = 0.1,
        bgnbd: Callable[[], BGNBDParams | None] = lambda: None,
    ) -> None:
        self.horizons = tuple(sorted({float(h) for h in horizons_days}))
        self.margin = margin
        self.bgnbd = bgnbd
        self.fit: ValueFit | None = None

    def version(self) -> str:
        return "value1:" + (self.fit.version() if self.fit is not None else "none")

    def state(self, profile: Profile, as_of_ms: int) -> dict[str, Any] | None:
        """The value state of ``profile`` as of ``as_of_ms`` (None: not a customer)."""
        found = measures(profile, as_of_ms)
        if found is None:
            return None
        recency, orders, spend = found
        aov = spend / orders
        fit = self.fit
        gg = None if fit is None else fit.gg
        expected_aov = aov if gg is None else expected_value_one(gg, orders, aov)
        previous = profile.parts.get("value") or {}
        scores: Scores | None = None
        tier = None
        if fit is not None and fit.cuts is not None:
            prev = previous.get("scores")
            before: Scores | None = None if prev is None else (prev[0], prev[1], prev[2])
            scores = fit.cuts.scores(recency, orders, spend, before, self.margin)
            tier = tier_of(scores)
        expected: dict[str, dict[str, float]] = {}
        params = self.bgnbd()
        summary = customer_summary(Behaviour.read(profile), as_of_ms)
        if params is not None and summary is not None:
            x, t_x, T = summary
            for h in self.horizons:
                n = purchases(params, h, x, t_x, T)
                if math.isfinite(n):
                    expected[f"{h:g}"] = {
                        "purchases": round(n, 6),
                        "value": round(n * expected_aov, 2),
                    }
        return {
            "tier": tier,
            "scores": None if scores is None else list(scores),
            "next_check_ms": None
            if fit is None or fit.cuts is None
            else next_check(fit.cuts.recency, recency, as_of_ms, self.margin),
            "recency_days": round(recency, 3),
            "orders": orders,
            "spend": round(spend_of(profile), 2),
            "avg_order_value": round(aov, 2),
            "expected_order_value": round(expected_aov, 2),
            "expected": expected,
            "as_of": as_of_ms,
            "model_version": self.version(),
        }

    def update(self, profile: Profile, as_of_ms: int) -> ValueChange | None:
        """Re-score ``profile``; set its value state; the tier change to announce, if any.

        A customer's first tier is announced too (once per customer: the marketer's "new")."""
        previous = (profile.parts.get("value") or {}).get("tier")
        state = self.state(profile, as_of_ms)
        profile.parts["value"] = state
        if state is None or state["tier"] is None or state["tier"] == previous:
            return None
        return ValueChange(profile, previous, state)


def next_check(
    cuts: Sequence[float], recency_days: float, as_of_ms: int, margin: float
) -> int | None:
    """When the R score may next fall with time alone: recency passing the next cut beyond
    the hysteresis margin (None: already past the last one). Only R moves with time; F and M
    move with purchases, which write the profile anyway.

    >>> next_check((7.0, 30.0, 90.0, 180.0), 10.0, 0, 0.1) == int(23.0 * 86_400_000) + 1
    True
    >>> next_check((7.0, 30.0, 90.0, 180.0), 200.0, 0, 0.1) is None
    True
    """
    later = [c * (1.0 + margin) for c in cuts if c * (1.0 + margin) > recency_days]
    if not later:
        return None
    return as_of_ms + int((min(later) - recency_days) * _DAY_MS) + 1


def purchases(params: BGNBDParams, t: float, x: int, t_x: float, T: float) -> float:
    """BG/NBD expected purchases in ``(T, T + t]``; where scipy's ``2F1`` fails (NaN, e.g. for
    the huge ``r, alpha, a, b`` of a nearly homogeneous population) the same formula with
    mpmath's ``2F1`` when it is installed (about 1 ms), else NaN."""
    n = expected_purchases_one(params, t, x, t_x, T)
    if math.isfinite(n):
        return n
    try:
        import mpmath
    except ImportError:  # pragma: no cover - mpmath ships with sympy (torch's dependency)
        return n
    a = params.a if abs(params.a - 1.0) >= 1e-7 else 1.0 + 1e-7
    c = a + params.b + x - (1.0 if params.variant == "bgnbd" else 0.0)
    z = t / (params.alpha + T + t)
    kept = math.exp((a - 1.0) * math.log1p(-z)) * float(
        mpmath.hyp2f1(c - params.r - x, a - 1.0, c, z)
    )
    return c / (a - 1.0) * (1.0 - kept) * (1.0 - p_dead_one(params, x, t_x, T))


def value_event(change: ValueChange, now_ms: int) -> dict[str, Any]:
    """The ``value_changed`` event; its id repeats for a replay of the same change."""
    profile, state = change.profile, change.state
    r, f, m = state["scores"]
    return {
        "type": "value_changed",
        "schema_version": 1,
        "event_id": f"{profile.user_id}:{profile.version}:value:{state['tier']}",
        "user_id": profile.user_id,
        "tier": state["tier"],
        "previous_tier": change.previous,
        "scores": {"r": r, "f": f, "m": m},
        "expected_order_value": state["expected_order_value"],
        "expected": state["expected"],
        "orders": state["orders"],
        "spend": state["spend"],
        "as_of": state["as_of"],
        "model_version": state["model_version"],
        "processed_at": now_ms,
    }
