"""The risk score: P(no purchase in H), monotone in time, levels with hysteresis, next change."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.churn.bgnbd import BGNBDParams, expected_purchases, p_alive
from profiles.churn.calibration import FEATURES, Calibrator
from profiles.churn.features import DAY_MS, Behaviour
from profiles.churn.risk import (
    LEVELS,
    RiskConfig,
    assess,
    level_of,
    level_with_hysteresis,
    next_crossing_ms,
    p_no_purchase,
    score,
)
from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record, apply

CFG = RiskConfig()
MBG = BGNBDParams(2.0, 17.0, 0.4, 19.0, "mbgnbd")
BG = BGNBDParams(2.0, 17.0, 0.4, 19.0, "bgnbd")
T0 = 1_767_225_600_000


def stats(
    first: float, last: float, orders: int = 0, fp: float | None = None, lp: float | None = None
) -> dict[str, Any]:
    """A profile's stats from times in days after T0."""

    def ms(d: float | None) -> int | None:
        return None if d is None else T0 + round(d * DAY_MS)

    return {
        "first_ts": ms(first),
        "last_ts": ms(last),
        "orders": orders,
        "first_purchase_ts": ms(fp),
        "last_purchase_ts": ms(lp),
    }


def at(days: float) -> int:
    return T0 + round(days * DAY_MS)


# ------------------------------------------------------------------ strategies

DAY = st.floats(0.0, 400.0, allow_nan=False)


@st.composite
def behaviours(draw: st.DrawFn) -> dict[str, Any]:
    first, span = draw(DAY), draw(DAY)
    last = first + span
    orders = draw(st.integers(0, 60))
    if orders == 0:
        return stats(first, last)
    fp = first + draw(st.floats(0.0, 1.0)) * span
    lp = fp if orders == 1 else fp + draw(st.floats(0.0, 1.0)) * (last - fp)
    return {
        **stats(first, last, orders, fp, lp),
        "spend_cents": {"CNY": draw(st.integers(0, 10**9))},
    }


params_st = st.one_of(
    st.none(),
    st.builds(
        BGNBDParams,
        r=st.floats(0.05, 20),
        alpha=st.floats(0.05, 200),
        a=st.floats(0.05, 20),
        b=st.floats(0.05, 20),
        variant=st.sampled_from(["bgnbd", "mbgnbd"]),
    ),
)


@st.composite
def calibrators(draw: st.DrawFn) -> Calibrator:
    """Any calibrator the fit can produce: weights on features that grow with time are >= 0."""
    weights = tuple(
        draw(st.floats(0.0, 3.0) if grows else st.floats(-3.0, 3.0)) for _, grows in FEATURES
    )
    k = len(FEATURES)
    return Calibrator(
        intercept=draw(st.floats(-3.0, 3.0)),
        weights=weights,
        mean=tuple(draw(st.lists(st.floats(-2.0, 2.0), min_size=k, max_size=k))),
        scale=tuple(draw(st.lists(st.floats(0.1, 3.0), min_size=k, max_size=k))),
        auc_model=0.6,
        auc_calibrated=0.7,
        pairs=1000,
    )


cal_st = st.one_of(st.none(), calibrators())
cfg_st = st.builds(
    RiskConfig,
    engagement_half_life_days=st.floats(0.5, 90),
    horizon_days=st.floats(1.0, 400.0),
    min_history_days=st.floats(0.0, 30),
)


# ------------------------------------------------------------------ monotone in as_of


@settings(max_examples=100, deadline=None)
@given(
    b=behaviours(),
    params=params_st,
    cfg=cfg_st,
    cal=cal_st,
    offsets=st.lists(st.integers(-30 * DAY_MS, 3000 * DAY_MS), min_size=2, max_size=8),
)
def test_risk_never_decreases_as_time_passes_without_events(
    b: dict[str, Any],
    params: BGNBDParams | None,
    cfg: RiskConfig,
    cal: Calibrator | None,
    offsets: list[int],
) -> None:
    times = sorted(b["last_ts"] + o for o in offsets)
    risks = [score(b, t, params, cfg, calibrator=cal).risk for t in times]
    # Deterministic: the same inputs give the same bits.
    assert risks == [score(b, t, params, cfg, calibrator=cal).risk for t in times]
    assert all(0.0 <= r <= 1.0 for r in risks)
    assert all(r1 <= r2 for r1, r2 in itertools.pairwise(risks)), risks
    # So the level, carried forward with hysteresis, never falls either.
    level: str | None = None
    for r in risks:
        new = level_with_hysteresis(level, r, cfg)
        assert level is None or LEVELS.index(new) >= LEVELS.index(level)
        level = new


@settings(max_examples=100, deadline=None)
@given(
    b=behaviours(),
    params=params_st,
    cal=cal_st,
    start=st.integers(-10 * DAY_MS, 400 * DAY_MS),
)
def test_next_crossing_is_exactly_where_the_level_changes(
    b: dict[str, Any], params: BGNBDParams | None, cal: Calibrator | None, start: int
) -> None:
    from_ms = b["last_ts"] + start
    level = score(b, from_ms, params, CFG, calibrator=cal).level
    crossing = next_crossing_ms(b, from_ms, params, CFG, level, cal)
    if crossing is None:
        # Never within the horizon: the level is high, or the end of the horizon is still below.
        horizon = from_ms + int(CFG.max_horizon_days * DAY_MS)
        assert level == "high" or score(b, horizon, params, CFG, calibrator=cal).level == level
        return
    assert crossing > from_ms
    before = score(b, crossing - 1, params, CFG, previous_level=level, calibrator=cal).level
    after = score(b, crossing, params, CFG, previous_level=level, calibrator=cal).level
    assert before == level
    assert LEVELS.index(after) > LEVELS.index(level)


def test_next_crossing_of_a_stale_level_is_now_and_high_is_final() -> None:
    b = stats(0, 0)
    assert score(b, at(5), None, CFG).level == "low"
    # The caller's level says high but risk is low: the change is due immediately.
    assert next_crossing_ms(b, at(5), None, CFG, "high") == at(5)
    assert score(b, at(60), None, CFG).level == "high"
    assert next_crossing_ms(b, at(60), None, CFG, "high") is None
    with pytest.raises(ValueError, match="unknown level"):
        next_crossing_ms(b, at(5), None, CFG, "severe")


def test_next_crossing_engagement_only_matches_closed_form() -> None:
    # e = 1 - 2**(-g/h) reaches 0.4 at g = -h * log2(0.6); 0.7 at g = -h * log2(0.3).
    b = stats(0, 0)
    h = CFG.engagement_half_life_days
    medium = next_crossing_ms(b, at(0), None, CFG, "low")
    assert medium is not None
    high = next_crossing_ms(b, medium, None, CFG, "medium")
    assert high is not None
    assert (medium - at(0)) / DAY_MS == pytest.approx(-h * math.log2(0.6), abs=1e-6)
    assert (high - at(0)) / DAY_MS == pytest.approx(-h * math.log2(0.3), abs=1e-6)


def test_next_crossing_is_none_beyond_the_horizon() -> None:
    cfg = RiskConfig(engagement_half_life_days=100.0, max_horizon_days=10.0)
    assert next_crossing_ms(stats(0, 0), at(30), None, cfg, "low") is None


# ------------------------------------------------------------------ hysteresis


def test_hysteresis_rises_at_the_boundary_and_falls_a_margin_below() -> None:
    assert level_with_hysteresis("low", 0.4, CFG) == "medium"
    assert level_with_hysteresis("medium", 0.39, CFG) == "medium"
    assert level_with_hysteresis("medium", 0.351, CFG) == "medium"
    assert level_with_hysteresis("medium", 0.349, CFG) == "low"
    assert level_with_hysteresis("high", 0.66, CFG) == "high"
    assert level_with_hysteresis("high", 0.64, CFG) == "medium"
    assert level_with_hysteresis("high", 0.1, CFG) == "low"
    assert level_with_hysteresis("low", 0.95, CFG) == "high"
    assert level_with_hysteresis(None, 0.39, CFG) == "low"


@settings(max_examples=100, deadline=None)
@given(
    boundary=st.sampled_from(CFG.levels),
    wiggle=st.lists(st.floats(-0.0499, 0.0499), min_size=1, max_size=40),
)
def test_no_flapping_while_risk_oscillates_within_the_margin(
    boundary: float, wiggle: list[float]
) -> None:
    # Once the level has risen past a boundary, risk wandering within the margin of it never
    # brings the level back down, and never moves it past the next boundary.
    level = level_with_hysteresis(None, boundary, CFG)
    seen = {level}
    for w in wiggle:
        level = level_with_hysteresis(level, boundary + w, CFG)
        seen.add(level)
    assert seen == {level_of(boundary, CFG)}


# ------------------------------------------------------------------ what the score holds


def test_score_of_a_customer_explains_itself() -> None:
    b = stats(0, 50, orders=4, fp=2, lp=40)
    r = score(b, at(60), MBG, CFG)
    reason = r.reason
    assert reason["signal"] == "model" and reason["horizon_days"] == 30.0
    assert (reason["x"], reason["t_x"], reason["T"]) == (3, 38.0, 58.0)
    assert reason["days_since_last_event"] == 10.0
    assert reason["days_since_last_purchase"] == 20.0
    assert reason["p_alive"] == pytest.approx(float(p_alive(MBG, 3, 38.0, 58.0)), abs=1e-6)
    assert 0 < reason["expected_next_30d"] < 30
    # P(no purchase in 30 d) = 1 - p_alive * (1 - ((alpha + T) / (alpha + T + 30))^(r + x)).
    quiet = ((17.0 + 58.0) / (17.0 + 58.0 + 30.0)) ** (2.0 + 3)
    assert r.risk == pytest.approx(1 - reason["p_alive"] * (1 - quiet), abs=1e-6)
    assert reason["model_risk"] == pytest.approx(r.risk, abs=1e-6)
    assert r.level == level_of(r.risk, CFG)
    assert r.as_of == at(60)
    assert r.model_version.startswith("risk2:h30:mbgnbd-")
    # Expected next purchase: as_of plus (alpha + T) / (r + x) days.
    assert r.expected_next_purchase_ms == at(60) + round((17.0 + 58.0) / (2.0 + 3) * DAY_MS)
    assert r.to_dict()["reason"] == reason


def test_users_without_purchases_or_model_are_scored_by_engagement() -> None:
    browser = score(stats(0, 10), at(24), MBG, CFG)
    assert browser.reason["signal"] == "engagement"
    assert browser.reason["purchaser"] is False
    assert browser.expected_next_purchase_ms is None
    assert browser.risk == pytest.approx(0.5)
    unfitted = score(stats(0, 10, 2, 1, 10), at(24), None, CFG)
    assert unfitted.reason["signal"] == "engagement"
    assert unfitted.reason["x"] == 1 and unfitted.reason["p_alive"] is None
    assert unfitted.model_version == "risk2:h30:engagement"


def test_one_time_buyer_is_not_certainly_alive() -> None:
    # BG/NBD says p_alive == 1 for x == 0: only the purchase rate speaks, and it slows with
    # silence; the MBG/NBD also lets the one-time buyer drop out.
    one = stats(0, 0, orders=1, fp=0, lp=0)
    bg = score(one, at(90), BG, CFG)
    assert bg.reason["p_alive"] == 1.0 and bg.reason["signal"] == "model"
    assert bg.risk == pytest.approx(((17 + 90) / (17 + 90 + 30)) ** 2.0)
    mbg_early, mbg_late = score(one, at(10), MBG, CFG), score(one, at(120), MBG, CFG)
    assert mbg_late.reason["signal"] == "model"
    assert 1.0 > mbg_early.reason["p_alive"] > mbg_late.reason["p_alive"]
    assert mbg_early.risk < mbg_late.risk
    assert mbg_late.level == "high"


def test_recent_browsing_lowers_a_lapsed_buyers_risk_once_calibrated() -> None:
    # The model sees purchases only; a calibrator that learned "browsing means buying" moves
    # the probability, and is used only because it beat the model on its holdout.
    browsing, silent = stats(0, 120, orders=6, fp=0, lp=50), stats(0, 50, orders=6, fp=0, lp=50)
    assert score(browsing, at(121), MBG, CFG).risk == score(silent, at(121), MBG, CFG).risk
    k = len(FEATURES)
    learned = Calibrator(0.0, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (0.0,) * k, (1.0,) * k, 0.6, 0.7, 500)
    calibrated = score(browsing, at(121), MBG, CFG, calibrator=learned)
    assert calibrated.reason["signal"] == "calibrated"
    assert calibrated.risk < score(silent, at(121), MBG, CFG, calibrator=learned).risk
    assert calibrated.model_version.endswith("+" + learned.version())
    worse = Calibrator(0.0, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (0.0,) * k, (1.0,) * k, 0.7, 0.6, 500)
    unused = score(browsing, at(121), MBG, CFG, calibrator=worse)
    assert unused.reason["signal"] == "model"
    assert unused.risk == score(browsing, at(121), MBG, CFG).risk


@settings(max_examples=200, deadline=None)
@given(
    params=params_st.filter(lambda p: p is not None),
    x=st.integers(0, 50),
    t_x=st.floats(0.0, 300.0),
    gap=st.floats(0.0, 300.0),
    h=st.floats(0.5, 400.0),
)
def test_horizon_probability_is_bounded_and_monotone(
    params: BGNBDParams, x: int, t_x: float, gap: float, h: float
) -> None:
    T = t_x + gap
    p = p_no_purchase(params, x, t_x, T, h)
    assert 0.0 <= p <= 1.0
    # Later (same history), or over a shorter horizon: never less likely to stay away.
    assert p_no_purchase(params, x, t_x, T + 10.0, h) >= p - 1e-12
    assert p_no_purchase(params, x, t_x, T, h / 2) >= p - 1e-12
    # At least the chance of being dead; never above it plus the alive chance.
    dead = 1.0 - float(p_alive(params, x, t_x, T))
    assert dead - 1e-9 <= p <= 1.0


def test_horizon_probability_matches_a_simulation() -> None:
    # Draw customers from the MBG/NBD, condition on a history, count who buys in (T, T + H].
    import numpy as np

    rng = np.random.default_rng(5)
    params = BGNBDParams(1.5, 20.0, 0.8, 3.0, "mbgnbd")
    n, T, H = 400_000, 60.0, 30.0
    lam = rng.gamma(params.r, 1.0 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    # MBG/NBD: the customer may die right after each purchase, the first included.
    alive = rng.random(n) >= p
    times = np.zeros(n)
    count = np.zeros(n, dtype=int)
    last = np.zeros(n)
    bought_later = np.zeros(n, dtype=bool)
    active = alive.copy()
    while active.any():
        times[active] += rng.exponential(1.0 / lam[active])
        in_window = active & (times <= T)
        beyond = active & (times > T)
        bought_later |= beyond & (times <= T + H)
        count[in_window] += 1
        last[in_window] = times[in_window]
        active = in_window & (rng.random(n) >= p)
    for x in (0, 1, 3):
        pick = count == x
        if x:
            pick &= (last > 30.0) & (last <= 40.0)
        observed = 1.0 - bought_later[pick].mean()
        t_x = 0.0 if x == 0 else float(last[pick].mean())
        predicted = p_no_purchase(params, x, t_x, T, H)
        assert abs(observed - predicted) < 0.02, (x, observed, predicted)
    # And it is not just 1 - p_alive, nor exp(-expected purchases).
    assert p_no_purchase(params, 1, 35.0, T, H) != pytest.approx(
        1 - float(p_alive(params, 1, 35.0, T))
    )
    assert float(expected_purchases(params, H, 1, 35.0, T)) > 0


def test_short_history_is_never_high() -> None:
    cfg = RiskConfig(engagement_half_life_days=0.5, min_history_days=7)
    b = stats(0, 0)
    assert score(b, at(6.9), None, cfg).risk == cfg.history_cap
    assert score(b, at(6.9), None, cfg).reason["short_history"] is True
    assert score(b, at(7), None, cfg).level == "high"
    assert next_crossing_ms(b, at(3), None, cfg, "medium") == at(7)


def test_profile_mapping_and_stored_json_score_alike() -> None:
    p = Profile("u")
    events = [
        {"event_id": "e1", "type": "search", "user_id": "u", "ts": at(0), "query": "q"},
        {
            "event_id": "e2",
            "type": "purchase",
            "user_id": "u",
            "ts": at(3),
            "order_id": "o1",
            "items": [{"product_id": "p", "quantity": 1, "price": 5.0}],
            "amount": 5.0,
            "currency": "CNY",
        },
        {
            "event_id": "e3",
            "type": "purchase",
            "user_id": "u",
            "ts": at(9),
            "order_id": "o2",
            "items": [{"product_id": "p", "quantity": 1, "price": 5.0}],
            "amount": 5.0,
            "currency": "CNY",
        },
    ]
    apply(
        p,
        [Record(InputPartition("t", 0), i, e) for i, e in enumerate(events)],
        ProfileConfig(),
        lambda e: (),
    )
    import orjson

    stored = orjson.loads(p.to_bytes())
    a, b = score(p, at(30), MBG, CFG), score(stored, at(30), MBG, CFG)
    assert a == b
    assert Behaviour.read(p) == Behaviour.read(stored)
    assert (a.reason["x"], a.reason["t_x"], a.reason["T"]) == (1, 6.0, 27.0)


def test_as_of_before_the_last_event_counts_as_no_silence() -> None:
    b = stats(0, 20, orders=2, fp=0, lp=20)
    r = score(b, at(10), MBG, CFG)
    assert r.reason["days_since_last_event"] == 0.0
    assert r.reason["T"] == r.reason["t_x"] == 20.0
    # Scored as if right at the last purchase: no silence yet, only the purchase rate speaks.
    assert r.risk == pytest.approx(p_no_purchase(MBG, 1, 20.0, 20.0, 30.0))
    assert r.risk == score(b, at(20), MBG, CFG).risk


def test_a_user_without_events_cannot_be_scored() -> None:
    with pytest.raises(ValueError, match="without events"):
        score({"orders": 0}, at(1), None, CFG)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"levels": (0.5, 0.5)},
        {"margin": 0.5},
        {"engagement_half_life_days": 0.0},
        {"horizon_days": 0.0},
        {"min_history_days": -1.0},
        {"max_horizon_days": 0.0},
    ],
)
def test_risk_config_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RiskConfig(**kwargs)


def test_assess_announces_changes_and_plans_the_next_check() -> None:
    b = stats(0, 0)
    first = assess(b, at(1), None, CFG, None)
    assert (first.risk.level, first.changed) == ("low", True)
    assert first.next_check_ms == next_crossing_ms(b, at(1), None, CFG, "low")
    same = assess(b, at(2), None, CFG, "low")
    assert not same.changed and same.next_check_ms == first.next_check_ms
    assert first.next_check_ms is not None
    due = assess(b, first.next_check_ms, None, CFG, "low")
    assert (due.risk.level, due.changed) == ("medium", True)
    assert due.next_check_ms is not None and due.next_check_ms > first.next_check_ms


def test_a_return_after_a_high_level_brings_it_down() -> None:
    before = stats(0, 100, orders=19, fp=0, lp=100)
    high = score(before, at(250), MBG, CFG)
    assert high.level == "high"
    # The frequent buyer comes back and buys: the risk drops and the level follows, past every
    # margin.
    back = stats(0, 250, orders=20, fp=0, lp=250)
    assert score(back, at(250), MBG, CFG, previous_level="high").level == "low"
    # Later silence raises it again, at the plain boundaries.
    crossing = next_crossing_ms(back, at(250), MBG, CFG, "low")
    assert crossing is not None
    assert score(back, crossing, MBG, CFG, previous_level="low").level == "medium"
