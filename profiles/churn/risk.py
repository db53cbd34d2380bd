"""Churn risk of one user as of any event time: a probability, a level, the next level change.

**What the number means.** For a customer (at least one purchase) with a fitted model,
``risk = P(no purchase in the next H days | purchase history)``, ``H`` =
:attr:`RiskConfig.horizon_days` (30 by default), from the population's MBG/NBD
(:mod:`profiles.churn.bgnbd`): a customer buys in ``(T, T + H]`` only if still alive, and while
alive buys at a rate whose posterior given ``x`` purchases over ``T`` days is
Gamma(``r + x``, ``alpha + T``), so

    ``risk = 1 - p_alive * (1 - ((alpha + T) / (alpha + T + H)) ** (r + x))``.

Unlike ``1 - p_alive`` this uses the purchase *rate* too: a lapsed frequent buyer and a one-time
buyer with the same silence get different risks. When the shop's own matured outcomes have
fitted a :class:`~profiles.churn.calibration.Calibrator` that beats the model on its holdout,
the risk is the calibrated probability instead, over the model's log-odds, recency, frequency,
customer age, mean order value and days since the last event of any kind (browsing enters as
evidence).
Users who never bought, and every user while no model has been fitted, get the engagement risk
``e = 1 - 2**(-g / h)`` (``g`` days since the last event, ``h`` =
:attr:`RiskConfig.engagement_half_life_days`): not a probability, and ``reason.signal`` says so.

Levels are bands of that probability: "high" means at least 70% likely not to buy within ``H``
days, "low" under 40% (:attr:`RiskConfig.levels`). Users seen for less than
:attr:`RiskConfig.min_history_days` are capped below "high".

**Monotone in time.** With no new events ``T`` grows, ``p_alive`` does not rise and
``(alpha + T) / (alpha + T + H)`` rises, so the model risk never falls; the calibrator's weights
on the features that grow with time are ``>= 0`` and the engagement risk grows with ``g``. So
risk never decreases as time passes without events: the level moves only up until the next
event, which is what lets :func:`next_crossing_ms` find the next change by bisection and a sweep
wake each user exactly once per change.

>>> from profiles.churn.bgnbd import BGNBDParams
>>> params = BGNBDParams(2.0, 17.0, 0.4, 19.0, "mbgnbd")  # days
>>> stats = {"first_ts": 0, "last_ts": 40 * DAY_MS, "orders": 3,
...          "first_purchase_ts": 0, "last_purchase_ts": 40 * DAY_MS}
>>> [score(stats, d * DAY_MS, params, RiskConfig()).level for d in (41, 100, 200)]
['low', 'medium', 'high']
>>> round(score(stats, 100 * DAY_MS, params, RiskConfig()).risk, 3)  # P(no purchase in 30 d)
0.553
>>> next_crossing_ms(stats, 41 * DAY_MS, params, RiskConfig(), "low") // DAY_MS
74
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from profiles.churn import bgnbd
from profiles.churn.bgnbd import BGNBDParams
from profiles.churn.calibration import Calibrator, feature_row
from profiles.churn.features import DAY_MS, Behaviour, Stats, customer_summary

__all__ = [
    "FORMULA_VERSION",
    "LEVELS",
    "Assessment",
    "Risk",
    "RiskConfig",
    "assess",
    "level_of",
    "level_with_hysteresis",
    "model_version",
    "next_crossing_ms",
    "p_no_purchase",
    "score",
]

#: Bump when the risk formula changes, so consumers can tell scores of different formulas apart.
FORMULA_VERSION = "risk2"
LEVELS = ("low", "medium", "high")
_RANK = {name: i for i, name in enumerate(LEVELS)}
_LN2 = math.log(2.0)
#: Window of the expected-purchases feature in :attr:`Risk.reason`.
EXPECTED_WINDOW_DAYS = 30.0


@dataclass(frozen=True)
class RiskConfig:
    """Horizon, levels and hysteresis. ``low < levels[0] <= medium < levels[1] <= high``.

    >>> RiskConfig(levels=(0.7, 0.4))
    Traceback (most recent call last):
    ...
    ValueError: need 0 < levels[0] < levels[1] < 1, got (0.7, 0.4)
    """

    levels: tuple[float, float] = (0.4, 0.7)
    #: A level falls back only once risk is this far below its lower boundary (rises are exact).
    margin: float = 0.05
    #: The risk is the probability of no purchase within this many days.
    horizon_days: float = 30.0
    #: Engagement risk (users who never bought, or no model yet): halves every this many days.
    engagement_half_life_days: float = 14.0
    #: Users seen for less than this are never rated "high".
    min_history_days: float = 7.0
    #: :func:`next_crossing_ms` looks this far ahead at most.
    max_horizon_days: float = 3650.0

    def __post_init__(self) -> None:
        low, high = self.levels
        if not 0.0 < low < high < 1.0:
            raise ValueError(f"need 0 < levels[0] < levels[1] < 1, got {self.levels}")
        if not 0.0 <= self.margin < low:
            raise ValueError(f"need 0 <= margin < levels[0], got {self.margin}")
        if not self.engagement_half_life_days > 0.0:
            raise ValueError("engagement_half_life_days must be > 0")
        if not self.horizon_days > 0.0:
            raise ValueError("horizon_days must be > 0")
        if not self.min_history_days >= 0.0:
            raise ValueError("min_history_days must be >= 0")
        if not self.max_horizon_days > 0.0:
            raise ValueError("max_horizon_days must be > 0")

    @property
    def history_cap(self) -> float:
        """The most risk a user with a short history can get: below "high" even with hysteresis."""
        return self.levels[1] - self.margin


@dataclass(frozen=True)
class Risk:
    """A user's churn risk as of ``as_of`` (epoch ms, event time).

    ``reason`` holds the features behind the score (JSON-ready). ``expected_next_purchase_ms``
    is ``as_of`` plus the expected gap between purchases *if the customer is still active*
    (the reciprocal of the posterior mean purchase rate, ``(alpha + T) / (r + x)`` days); None
    for users who never bought or when no model is fitted.
    """

    risk: float
    level: str
    reason: dict[str, Any]
    expected_next_purchase_ms: int | None
    as_of: int
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        """A plain dict, e.g. for a ``churn_risk`` event payload."""
        return asdict(self)


def model_version(
    params: BGNBDParams | None, calibrator: Calibrator | None = None, horizon_days: float = 30.0
) -> str:
    """Formula, horizon, fitted model and calibrator, e.g. ``'risk2:h30:mbgnbd-1a2b3c4d'``.

    A calibrator that did not beat the model on its holdout is not used, so not named.

    >>> model_version(None)
    'risk2:h30:engagement'
    """
    name = "engagement" if params is None else bgnbd.model_version(params)
    if params is not None and calibrator is not None and calibrator.better:
        name += f"+{calibrator.version()}"
    return f"{FORMULA_VERSION}:h{horizon_days:g}:{name}"


def p_no_purchase(params: BGNBDParams, x: int, t_x: float, T: float, horizon_days: float) -> float:
    """P(no purchase in ``(T, T + horizon]`` | ``x``, ``t_x``, ``T``), in plain floats.

    ``P(dead) + P(alive) * E[exp(-lambda H) | alive]``, the expectation over the posterior
    Gamma(``r + x``, ``alpha + T``) of the purchase rate. Non-decreasing in ``T``.

    >>> params = BGNBDParams(0.243, 4.414, 0.793, 2.426)  # CDNOW, weeks
    >>> round(p_no_purchase(params, 2, 30.43, 38.86, 39.0), 4)
    0.4454
    """
    dead = bgnbd.p_dead_one(params, x, t_x, T)
    log_ratio = math.log(params.alpha + T) - math.log(params.alpha + T + horizon_days)
    return dead + (1.0 - dead) * math.exp((params.r + x) * log_ratio)


def level_of(risk: float, cfg: RiskConfig) -> str:
    """The level of ``risk`` without history: ``low < levels[0] <= medium < levels[1] <= high``.

    >>> [level_of(r, RiskConfig()) for r in (0.0, 0.4, 0.69, 0.7)]
    ['low', 'medium', 'medium', 'high']
    """
    low, high = cfg.levels
    return "high" if risk >= high else "medium" if risk >= low else "low"


def level_with_hysteresis(previous: str | None, risk: float, cfg: RiskConfig) -> str:
    """The new level given the ``previous`` one: rises at the boundary, falls ``margin`` below it.

    Rising is exact so that a user's level as time passes (risk only grows) is the plain level
    and :func:`next_crossing_ms` predicts it; falling (after a purchase or a visit) needs the
    risk to clear the boundary by ``margin``, so a risk hovering around a boundary cannot flap.

    >>> cfg = RiskConfig()
    >>> [level_with_hysteresis("medium", r, cfg) for r in (0.36, 0.34, 0.72)]
    ['medium', 'low', 'high']
    >>> level_with_hysteresis("high", 0.3, cfg), level_with_hysteresis(None, 0.5, cfg)
    ('low', 'medium')
    """
    plain = level_of(risk, cfg)
    if previous is None or _RANK[plain] >= _RANK[previous]:
        return plain
    # Falling: every boundary moved down by the margin, and never above where it was.
    low, high = (boundary - cfg.margin for boundary in cfg.levels)
    sticky = 2 if risk >= high else 1 if risk >= low else 0
    return LEVELS[min(_RANK[previous], sticky)]


@dataclass(frozen=True, slots=True)
class _Parts:
    risk: float
    engagement_risk: float
    model_risk: float | None
    calibrated: bool
    summary: tuple[int, float, float] | None
    days_since_last_event: float
    short_history: bool


def _parts(
    b: Behaviour,
    as_of_ms: int,
    params: BGNBDParams | None,
    cfg: RiskConfig,
    calibrator: Calibrator | None,
) -> _Parts:
    """The score and its ingredients, in plain floats: :func:`next_crossing_ms` calls it often."""
    if b.first_ts is None or b.last_ts is None:
        raise ValueError("cannot score a user without events (first_ts/last_ts missing)")
    gap = max(as_of_ms - b.last_ts, 0) / DAY_MS
    engagement = -math.expm1(-_LN2 * gap / cfg.engagement_half_life_days)
    summary = customer_summary(b, as_of_ms)
    model: float | None = None
    calibrated = False
    risk = engagement
    if summary is not None and params is not None:
        x, t_x, T = summary
        model = risk = p_no_purchase(params, x, t_x, T, cfg.horizon_days)
        if calibrator is not None and calibrator.better:
            risk = calibrator.risk(feature_row(model, T - t_x, x, T, gap, b.order_value))
            calibrated = True
    short = (as_of_ms - b.first_ts) < cfg.min_history_days * DAY_MS
    if short:
        risk = min(risk, cfg.history_cap)
    return _Parts(risk, engagement, model, calibrated, summary, gap, short)


def score(
    stats: Stats | Behaviour,
    as_of_ms: int,
    params: BGNBDParams | None,
    cfg: RiskConfig,
    *,
    previous_level: str | None = None,
    calibrator: Calibrator | None = None,
) -> Risk:
    """The churn risk of one user as of ``as_of_ms`` (event time, epoch ms).

    ``params`` are the population's fitted parameters (days; None before the first fit).
    ``previous_level``, if given, applies :func:`level_with_hysteresis` to the level;
    ``calibrator``, if given and better than the model on its holdout, calibrates the risk.

    >>> r = score({"first_ts": 0, "last_ts": 14 * DAY_MS, "orders": 0}, 28 * DAY_MS, None,
    ...           RiskConfig())
    >>> (r.risk, r.level, r.reason["signal"], r.model_version)
    (0.5, 'medium', 'engagement', 'risk2:h30:engagement')
    """
    b = Behaviour.read(stats)
    p = _parts(b, as_of_ms, params, cfg, calibrator)
    signal = "engagement" if p.model_risk is None else "calibrated" if p.calibrated else "model"
    reason: dict[str, Any] = {
        "signal": signal,
        "horizon_days": cfg.horizon_days,
        "purchaser": p.summary is not None,
        "days_since_last_event": round(p.days_since_last_event, 6),
        "days_since_last_purchase": None,
        "engagement_risk": round(p.engagement_risk, 6),
        "model_risk": None if p.model_risk is None else round(p.model_risk, 6),
        "x": None,
        "t_x": None,
        "T": None,
        "p_alive": None,
        "expected_next_30d": None,
        "short_history": p.short_history,
    }
    expected_next: int | None = None
    if p.summary is not None:
        x, t_x, T = p.summary
        reason.update(x=x, t_x=round(t_x, 6), T=round(T, 6))
        reason["days_since_last_purchase"] = round(T - t_x, 6)
        if params is not None:
            alive = 1.0 - bgnbd.p_dead_one(params, x, t_x, T)
            # 2F1 can fail for absurd histories (thousands of purchases in a day); say so.
            with np.errstate(all="ignore"):
                window = bgnbd.expected_purchases_one(params, EXPECTED_WINDOW_DAYS, x, t_x, T)
            reason["p_alive"] = round(alive, 6)
            reason["expected_next_30d"] = round(window, 6) if math.isfinite(window) else None
            gap_days = (params.alpha + T) / (params.r + x)
            expected_next = as_of_ms + round(gap_days * DAY_MS)
    return Risk(
        risk=p.risk,
        level=level_with_hysteresis(previous_level, p.risk, cfg),
        reason=reason,
        expected_next_purchase_ms=expected_next,
        as_of=as_of_ms,
        model_version=model_version(params, calibrator, cfg.horizon_days),
    )


def next_crossing_ms(
    stats: Stats | Behaviour,
    from_ms: int,
    params: BGNBDParams | None,
    cfg: RiskConfig,
    current_level: str,
    calibrator: Calibrator | None = None,
) -> int | None:
    """The earliest event time ``>= from_ms`` at which, with no new events, the level changes.

    ``current_level`` is the level last published (hysteresis applies). If it already differs at
    ``from_ms``, that is ``from_ms``. Otherwise, since risk only grows without events, the level
    can only rise: the answer is the first millisecond where the plain level exceeds
    ``current_level``, found by doubling then bisection over integer milliseconds (about 50
    risk evaluations). None if the level is "high" or does not rise within
    :attr:`RiskConfig.max_horizon_days`.

    >>> stats = {"first_ts": 0, "last_ts": 0, "orders": 0}
    >>> cfg = RiskConfig()
    >>> t = next_crossing_ms(stats, 0, None, cfg, "low")
    >>> score(stats, t - 1, None, cfg).level, score(stats, t, None, cfg).level
    ('low', 'medium')
    >>> next_crossing_ms(stats, 100 * DAY_MS, None, cfg, "high") is None
    True
    """
    if current_level not in _RANK:
        raise ValueError(f"unknown level {current_level!r}")
    b = Behaviour.read(stats)
    now = _parts(b, from_ms, params, cfg, calibrator).risk
    if level_with_hysteresis(current_level, now, cfg) != current_level:
        return from_ms
    if current_level == LEVELS[-1]:
        return None
    rank = _RANK[current_level]

    def risen(t: int) -> bool:
        return _RANK[level_of(_parts(b, t, params, cfg, calibrator).risk, cfg)] > rank

    limit = from_ms + math.ceil(cfg.max_horizon_days * DAY_MS)
    lo, step = from_ms, DAY_MS
    hi = min(from_ms + step, limit)
    while not risen(hi):
        if hi >= limit:
            return None
        lo = hi
        step *= 2
        hi = min(hi + step, limit)
    # Invariant: not risen(lo), risen(hi).
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if risen(mid):
            hi = mid
        else:
            lo = mid
    return hi


@dataclass(frozen=True)
class Assessment:
    """What a sweep or an event handler needs for one user: the score, whether to announce it,
    and when to look again."""

    risk: Risk
    #: The level differs from ``previous_level`` (always True for a first assessment).
    changed: bool
    #: When the level would next change without new events (None: never, e.g. already high).
    next_check_ms: int | None


def assess(
    stats: Stats | Behaviour,
    as_of_ms: int,
    params: BGNBDParams | None,
    cfg: RiskConfig,
    previous_level: str | None,
    calibrator: Calibrator | None = None,
) -> Assessment:
    """Score with hysteresis and plan the next check: call on every event and every due check.

    >>> a = assess({"first_ts": 0, "last_ts": 0, "orders": 0}, 0, None, RiskConfig(), None)
    >>> (a.risk.level, a.changed, a.next_check_ms == next_crossing_ms(
    ...     {"first_ts": 0, "last_ts": 0, "orders": 0}, 0, None, RiskConfig(), "low"))
    ('low', True, True)
    """
    b = Behaviour.read(stats)
    risk = score(b, as_of_ms, params, cfg, previous_level=previous_level, calibrator=calibrator)
    return Assessment(
        risk=risk,
        changed=risk.level != previous_level,
        next_check_ms=next_crossing_ms(b, as_of_ms, params, cfg, risk.level, calibrator),
    )
