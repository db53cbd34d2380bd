"""The customer-value evaluation: its ranking metric and a run on the CDNOW log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream.evaluation import value
from stream.evaluation.churn_log import Purchase


def test_top_share_takes_the_top_decile_by_score() -> None:
    scores = np.arange(20, dtype=np.float64)
    actual = np.zeros(20)
    actual[-2:] = 50.0  # the two best-scored customers hold all the revenue
    actual[0] = 100.0
    ids = [f"u{i}" for i in range(20)]
    assert value.top_share(scores, actual, ids) == pytest.approx(0.5)


def test_profiles_before_keeps_calibration_purchases_only() -> None:
    log = [Purchase("a", 10, 5.0), Purchase("a", 12, 7.5), Purchase("a", 20, 99.0)]
    (a,) = value.profiles_before(log, 15).values()
    assert (a.orders, a.spend_cents, a.last_purchase_ts) == (2, {"USD": 1250}, 12 * 86_400_000)


def test_the_cdnow_run_reports_fits_and_baselines() -> None:
    try:
        path = value.cdnow_path()
    except FileNotFoundError:
        pytest.skip("lifetimes (which ships CDNOW) is not installed")
    report = value.evaluate(path, value.CDNOW_CALIBRATION_END)
    assert report.startswith(value.SECTION)
    assert "23,570 customers" in report
    assert "historical spend (baseline)" in report and "recency × frequency" in report
    assert "p = 6.249, q = 3.745, v = 15.448" in report


def test_the_generator_log_is_a_purchase_log_with_a_calibration_end_inside(
    tmp_path: Path,
) -> None:
    import datetime as dt

    from stream.evaluation.churn_log import read_log
    from stream.evaluation.value import generated_log

    path, end = generated_log(tmp_path, users=60, days=90)
    with path.open() as f:
        purchases = read_log(f)
    days = [p.day for p in purchases]
    assert len({p.customer for p in purchases}) > 10 and all(p.amount > 0 for p in purchases)
    epoch = dt.date(1970, 1, 1).toordinal()
    assert min(days) < end.toordinal() - epoch <= max(days)
