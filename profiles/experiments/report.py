"""The experiment report: conversion per arm, the lift of each arm over the control with a
confidence interval, a two-proportion z-test, and the sample size the observed effect needs.

Conversion is per user (intention to treat): users of an arm who converted at least once,
over the users assigned to it. The relative lift's interval is the delta method on the log
of the rate ratio; the sample size is per arm for a two-sided test at ``alpha`` with ``power``.

>>> arms = {"treatment": ArmCounts(9000, 990, 1100, 0), "holdout": ArmCounts(1000, 90, 95, 0)}
>>> r = compare(arms["treatment"], arms["holdout"])
>>> round(r.lift, 3), round(r.low, 3) < r.lift < round(r.high, 3), r.needed_per_arm
(0.222, True, 3531)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from profiles.experiments.feature import COUNTS, count_field


@dataclass(frozen=True, slots=True)
class ArmCounts:
    users: int
    converted: int
    conversions: int
    clicks: int

    @property
    def rate(self) -> float:
        return self.converted / self.users if self.users else 0.0


@dataclass(frozen=True, slots=True)
class Comparison:
    lift: float  # relative: rate / control rate - 1 (nan without control conversions)
    low: float
    high: float
    difference: float  # absolute, rate points
    z: float
    p_value: float
    needed_per_arm: int | None  # None: no observed effect to detect


def arm_counts(
    totals: Mapping[str, float], experiment: str, arms: list[str]
) -> dict[str, ArmCounts]:
    """Each arm's counts from the merged shared counters (rounded: they do not decay)."""

    def get(arm: str, what: str) -> int:
        return round(totals.get(count_field(experiment, arm, what), 0.0))

    return {arm: ArmCounts(*(get(arm, what) for what in COUNTS)) for arm in arms}


def needed(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Users per arm for a two-sided two-proportion test to detect ``p1`` vs ``p2``.

    >>> needed(0.10, 0.12)
    3841
    """
    if p1 == p2 or not (0 < p1 < 1 and 0 < p2 < 1):
        return None
    z = NormalDist()
    za, zb = z.inv_cdf(1 - alpha / 2), z.inv_cdf(power)
    bar = (p1 + p2) / 2
    top = za * math.sqrt(2 * bar * (1 - bar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(top**2 / (p1 - p2) ** 2)


def compare(arm: ArmCounts, control: ArmCounts, alpha: float = 0.05) -> Comparison:
    """``arm`` against ``control``: relative lift with its (1 - alpha) interval, z-test."""
    p1, p0 = arm.rate, control.rate
    q = NormalDist().inv_cdf(1 - alpha / 2)
    nan = float("nan")
    if arm.converted and control.converted:
        ratio = p1 / p0
        se = math.sqrt((1 - p1) / arm.converted + (1 - p0) / control.converted)
        lift, low, high = ratio - 1, ratio * math.exp(-q * se) - 1, ratio * math.exp(q * se) - 1
    else:
        lift = low = high = nan
    z = p_value = nan
    if arm.users and control.users:
        pooled = (arm.converted + control.converted) / (arm.users + control.users)
        se0 = math.sqrt(pooled * (1 - pooled) * (1 / arm.users + 1 / control.users))
        if se0 > 0:
            z = (p1 - p0) / se0
            p_value = 2 * (1 - NormalDist().cdf(abs(z)))
    return Comparison(lift, low, high, p1 - p0, z, p_value, needed(p1, p0, alpha))


def report(counts: Mapping[str, ArmCounts], control: str, alpha: float = 0.05) -> dict[str, Any]:
    """The report as JSON: every arm's counts and rate, each other arm against ``control``."""
    out: dict[str, Any] = {"control": control, "alpha": alpha, "arms": {}}
    for name, c in counts.items():
        entry: dict[str, Any] = {
            "users": c.users,
            "converted": c.converted,
            "conversions": c.conversions,
            "clicks": c.clicks,
            "conversion_rate": round(c.rate, 6),
        }
        if name != control and control in counts:
            r = compare(c, counts[control], alpha)
            entry["vs_control"] = {
                "lift": _num(r.lift),
                "lift_ci": [_num(r.low), _num(r.high)],
                "difference": round(r.difference, 6),
                "z": _num(r.z),
                "p_value": _num(r.p_value),
                "needed_per_arm": r.needed_per_arm,
            }
        out["arms"][name] = entry
    return out


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


def lines(rep: Mapping[str, Any]) -> list[str]:
    """The report as text lines (the CLI's)."""
    out = [f"{'arm':<12} {'users':>8} {'converted':>9} {'rate':>8} {'conv':>7} {'clicks':>7}"]
    for name, a in rep["arms"].items():
        out.append(
            f"{name:<12} {a['users']:>8} {a['converted']:>9} {a['conversion_rate']:>8.4f} "
            f"{a['conversions']:>7} {a['clicks']:>7}"
        )
    level = round(100 * (1 - rep["alpha"]))
    for name, a in rep["arms"].items():
        v = a.get("vs_control")
        if v is None:
            continue
        if v["lift"] is None:
            out.append(f"{name} vs {rep['control']}: no conversions yet to compare")
            continue
        low, high = v["lift_ci"]
        p = "n/a" if v["p_value"] is None else f"{v['p_value']:.4g}"
        out.append(
            f"{name} vs {rep['control']}: lift {v['lift']:+.1%} ({level}% CI {low:+.1%} .. "
            f"{high:+.1%}), p = {p}; users per arm needed for this effect (80% power): "
            f"{v['needed_per_arm'] or 'n/a'}"
        )
    return out
