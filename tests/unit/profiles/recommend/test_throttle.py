"""Throttle policy: first list, interval, purchase trigger, interest-shift threshold."""

from __future__ import annotations

import numpy as np
import pytest

from profiles.recommend.throttle import interest_shift, should_recommend

MIN = 60_000


def test_first_recommendation_is_always_due() -> None:
    assert should_recommend(None, 0, 10 * MIN, purchase=False, shift=0.0, threshold=0.2)


def test_nothing_changed_means_no_recommendation_however_long_ago() -> None:
    assert not should_recommend(0, 10**12, 10 * MIN, purchase=False, shift=0.0, threshold=0.2)


def test_purchase_triggers_once_the_interval_has_passed() -> None:
    last = 1_000 * MIN
    assert not should_recommend(last, last + 9 * MIN, 10 * MIN, True, 0.0, 0.2)
    assert should_recommend(last, last + 10 * MIN, 10 * MIN, True, 0.0, 0.2)
    assert should_recommend(last, last + 99 * MIN, 10 * MIN, True, 0.0, 0.2)


def test_shift_must_exceed_the_threshold() -> None:
    last = 0
    assert not should_recommend(last, 20 * MIN, 10 * MIN, False, 0.2, 0.2)
    assert should_recommend(last, 20 * MIN, 10 * MIN, False, 0.21, 0.2)
    # ... and still waits for the interval.
    assert not should_recommend(last, 5 * MIN, 10 * MIN, False, 0.9, 0.2)


def test_event_time_going_backwards_never_triggers() -> None:
    assert not should_recommend(100 * MIN, 50 * MIN, 10 * MIN, True, 1.0, 0.2)


def test_interest_shift_is_cosine_distance() -> None:
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([np.cos(0.5), np.sin(0.5), 0.0])
    assert interest_shift(a, a) == pytest.approx(0.0, abs=1e-12)
    assert interest_shift(a, b) == pytest.approx(1 - np.cos(0.5))
    assert interest_shift(a, -a) == pytest.approx(2.0)
    assert interest_shift(a, 5 * a) == pytest.approx(0.0, abs=1e-12)  # scale-free
    assert interest_shift(None, a) == 1.0
    assert interest_shift(a, None) == 0.0
    assert interest_shift(None, None) == 0.0
    assert interest_shift(np.zeros(3), a) == 1.0


def test_slow_drift_accumulates_against_the_last_recommended_vector() -> None:
    """Each step is below the threshold; measured from the last list, the drift crosses it."""
    at_last_rec = np.array([1.0, 0.0])
    threshold = 0.05
    fired_at = None
    for step in range(1, 20):
        angle = 0.05 * step
        now = np.array([np.cos(angle), np.sin(angle)])
        prev = np.array([np.cos(angle - 0.05), np.sin(angle - 0.05)])
        assert interest_shift(prev, now) < threshold  # step by step it never would
        if should_recommend(0, step * MIN, MIN, False, interest_shift(at_last_rec, now), threshold):
            fired_at = step
            break
    assert fired_at is not None and fired_at > 1
