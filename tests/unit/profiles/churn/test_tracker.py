"""The tracker: its fast path at events is a safe lower bound of the exact next crossing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.churn.bgnbd import BGNBDParams
from profiles.churn.features import DAY_MS
from profiles.churn.risk import RiskConfig, assess, next_crossing_ms
from profiles.churn.tracker import ChurnTracker
from profiles.core.profile import Profile

PARAMS = BGNBDParams(0.243, 4.414, 0.793, 2.426, "mbgnbd")


@settings(max_examples=100, deadline=None)
@given(
    first=st.integers(0, 400),
    gap=st.integers(0, 300),
    orders=st.integers(0, 20),
    fitted=st.booleans(),
)
def test_quiet_period_never_passes_a_real_crossing(
    first: int, gap: int, orders: int, fitted: bool
) -> None:
    last = (first + gap) * DAY_MS
    profile = Profile(
        "u",
        first_ts=first * DAY_MS,
        last_ts=last,
        orders=orders,
        first_purchase_ts=first * DAY_MS if orders else None,
        last_purchase_ts=last if orders else None,
    )
    tracker = ChurnTracker()
    tracker.params = PARAMS if fitted else None
    change = tracker.update(profile, last)
    assert profile.churn is not None
    if fitted and orders:
        # A customer with a model is scored exactly at the event: P(no purchase in 30 days).
        found = assess(profile, last, PARAMS, RiskConfig(), None)
        assert profile.churn["risk"] == round(found.risk.risk, 6)
        assert profile.churn["next_check_ms"] == found.next_check_ms
        assert (change is None) == (found.risk.level == "low")
        return
    assert change is None  # an event: low, silent
    assert profile.churn["level"] == "low"
    exact = next_crossing_ms(profile, last, tracker.params, RiskConfig(), "low")
    assert exact is None or profile.churn["next_check_ms"] <= exact


def test_a_comeback_after_high_is_announced() -> None:
    profile = Profile("u", first_ts=0, last_ts=0, orders=0)
    tracker = ChurnTracker()
    tracker.update(profile, 0)
    change = tracker.update(profile, 200 * DAY_MS)
    assert change is not None and change.risk.level == "high"
    profile.last_ts = 201 * DAY_MS
    back = tracker.update(profile, 201 * DAY_MS)
    assert back is not None and back.risk.level == "low"
