"""The risk score: monotone in time, levels with hysteresis, the next level change."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.churn.bgnbd import BGNBDParams, p_alive
from profiles.churn.features import DAY_MS, Behaviour
from profiles.churn.risk import (
    LEVELS,
    RiskConfig,
    assess,
    level_of,
    level_with_hysteresis,
    next_crossing_ms,
    score,
)
from profiles.core.config import ProfileConfig
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
    return stats(first, last, orders, fp, lp)


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
cfg_st = st.builds(
    RiskConfig,
    engagement_half_life_days=st.floats(0.5, 90),
    model_weight=st.floats(0.0, 1.0),
    min_history_days=st.floats(0.0, 30),
)


# ------------------------------------------------------------------ monotone in as_of


@settings(max_examples=100, deadline=None)
@given(
    b=behaviours(),
    params=params_st,
    cfg=cfg_st,
    offsets=st.lists(st.integers(-30 * DAY_MS, 3000 * DAY_MS), min_size=2, max_size=8),
)
def test_risk_never_decreases_as_time_passes_without_events(
    b: dict[str, Any], params: BGNBDParams | None, cfg: RiskConfig, offsets: list[int]
) -> None:
    times = sorted(b["last_ts"] + o for o in offsets)
    risks = [score(b, t, params, cfg).risk for t in times]
    assert all(0.0 <= r <= 1.0 for r in risks)
    assert all(r1 <= r2 for r1, r2 in itertools.pairwise(risks)), risks
    # So the level, carried forward with hysteresis, never falls either.
    level: str | None = None
    for r in risks:
        new = level_with_hysteresis(level, r, cfg)
        assert level is None or LEVELS.index(new) >= LEVELS.index(level)
        level = new


@settings(max_examples=100, deadline=None)
@given(b=behaviours(), params=params_st, start=st.integers(-10 * DAY_MS, 400 * DAY_MS))
def test_next_crossing_is_exactly_where_the_level_changes(
    b: dict[str, Any], params: BGNBDParams | None, start: int
) -> None:
    from_ms = b["last_ts"] + start
    level = score(b, from_ms, params, CFG).level
    crossing = next_crossing_ms(b, from_ms, params, CFG, level)
    if crossing is None:
        # Never within the horizon: the level is high, or the end of the horizon is still below.
        horizon = from_ms + int(CFG.max_horizon_days * DAY_MS)
        assert level == "high" or score(b, horizon, params, CFG).level == level
        return
    assert crossing > from_ms
    before = score(b, crossing - 1, params, CFG, previous_level=level).level
    after = score(b, crossing, params, CFG, previous_level=level).level
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
    assert reason["signal"] == "model+engagement"
    assert (reason["x"], reason["t_x"], reason["T"]) == (3, 38.0, 58.0)
    assert reason["days_since_last_event"] == 10.0
    assert reason["days_since_last_purchase"] == 20.0
    assert reason["p_alive"] == pytest.approx(float(p_alive(MBG, 3, 38.0, 58.0)), abs=1e-6)
    assert reason["model_risk"] == pytest.approx(1 - reason["p_alive"], abs=1e-6)
    assert 0 < reason["expected_next_30d"] < 30
    e = 1 - 2 ** (-10 / CFG.engagement_half_life_days)
    assert r.risk == pytest.approx(math.sqrt(reason["model_risk"] * e), abs=1e-6)
    assert r.level == level_of(r.risk, CFG)
    assert r.as_of == at(60)
    assert r.model_version.startswith("risk1:mbgnbd-")
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
    assert unfitted.model_version == "risk1:engagement"


def test_one_time_buyer_is_not_certainly_alive() -> None:
    # BG/NBD says p_alive == 1 for x == 0: the score then ignores the model and uses engagement;
    # the MBG/NBD gives a p_alive below 1 that falls with time.
    one = stats(0, 0, orders=1, fp=0, lp=0)
    bg = score(one, at(90), BG, CFG)
    assert bg.reason["p_alive"] == 1.0
    assert bg.reason["signal"] == "engagement"
    assert bg.risk == pytest.approx(1 - 2 ** (-90 / 14))
    mbg_early, mbg_late = score(one, at(10), MBG, CFG), score(one, at(120), MBG, CFG)
    assert mbg_late.reason["signal"] == "model+engagement"
    assert 1.0 > mbg_early.reason["p_alive"] > mbg_late.reason["p_alive"]
    assert mbg_late.level == "high"


def test_recent_browsing_holds_back_a_lapsed_buyer() -> None:
    lapsed = stats(0, 120, orders=6, fp=0, lp=50)
    assert score(lapsed, at(121), MBG, CFG).level == "low"
    assert score(lapsed, at(200), MBG, CFG).level == "high"


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
    apply(p, [Record("t:0", i, e) for i, e in enumerate(events)], ProfileConfig(), lambda e: ())
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
    assert r.risk == 0.0


def test_a_user_without_events_cannot_be_scored() -> None:
    with pytest.raises(ValueError, match="without events"):
        score({"orders": 0}, at(1), None, CFG)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"levels": (0.5, 0.5)},
        {"margin": 0.5},
        {"engagement_half_life_days": 0.0},
        {"model_weight": 1.5},
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
    before = stats(0, 10, orders=3, fp=0, lp=10)
    high = score(before, at(200), MBG, CFG)
    assert high.level == "high"
    # The user comes back and buys: risk drops to 0 and the level follows, past every margin.
    back = stats(0, 200, orders=4, fp=0, lp=200)
    assert score(back, at(200), MBG, CFG, previous_level="high").level == "low"
    # Later silence raises it again, at the plain boundaries.
    crossing = next_crossing_ms(back, at(200), MBG, CFG, "low")
    assert crossing is not None
    assert score(back, crossing, MBG, CFG, previous_level="low").level == "medium"
