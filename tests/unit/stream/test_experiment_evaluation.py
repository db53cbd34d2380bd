"""The experiment evaluation: the measured lift's interval holds the planted one, and with no
uplift planted the arms convert alike."""

from __future__ import annotations

from profiles.experiments.report import compare
from stream.evaluation.experiment import simulate


def test_the_planted_lift_is_inside_the_measured_interval() -> None:
    counts = simulate(20_000, base=0.10, uplift=0.03, window_days=7, seed=3)
    r = compare(counts["treatment"], counts["holdout"])
    assert r.low <= 0.3 <= r.high
    assert sum(c.users for c in counts.values()) == 20_000
    assert abs(counts["holdout"].users / 20_000 - 0.1) < 0.01


def test_no_uplift_measures_no_significant_lift() -> None:
    counts = simulate(20_000, base=0.10, uplift=0.0, window_days=7, seed=4)
    r = compare(counts["treatment"], counts["holdout"])
    assert r.low <= 0.0 <= r.high
