"""The Gamma-Gamma fitter against the published CDNOW estimates, and its formulas."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from profiles.value import gammagamma
from profiles.value.gammagamma import GammaGammaParams

#: Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves", CDNOW 1/10 sample.
PUBLISHED = {"p": 6.25, "q": 3.74, "v": 15.45}


def cdnow_summary() -> tuple[np.ndarray, np.ndarray]:
    """``(x, zbar)`` of the published CDNOW summary shipped by ``lifetimes``."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or spec.origin is None:
        pytest.skip("lifetimes (which ships the CDNOW summary) is not installed")
    path = Path(spec.origin).parent / "datasets" / "cdnow_customers_summary_with_transactions.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    x = np.array([float(r["x"]) for r in rows])
    m = np.array([float(r["zbar"]) for r in rows])
    return x, m


def test_fit_on_the_cdnow_summary_matches_the_published_parameters() -> None:
    x, m = cdnow_summary()
    assert int((x > 0).sum()) == 946  # the repeat buyers the paper fits on
    fit = gammagamma.fit(x, m)  # customers with x == 0 are left out by the fitter
    for name, want in PUBLISHED.items():
        got = getattr(fit, name)
        assert got == pytest.approx(want, rel=0.02), (name, got)
    # The paper's mean spend per transaction of an unknown customer: about $35.
    assert fit.population_mean == pytest.approx(35.2, abs=0.3)


def test_the_fit_is_the_likelihood_maximum_and_deterministic() -> None:
    x, m = cdnow_summary()
    fit = gammagamma.fit(x, m)
    best = gammagamma.log_likelihood(fit, x[x > 0], m[x > 0])
    for dp, dq, dv in [(1.02, 1, 1), (0.98, 1, 1), (1, 1.02, 1), (1, 1, 1.02), (1, 1, 0.98)]:
        near = GammaGammaParams(fit.p * dp, fit.q * dq, fit.v * dv)
        assert gammagamma.log_likelihood(near, x[x > 0], m[x > 0]) < best
    warm = gammagamma.fit(x, m, init=fit)  # a warm start agrees
    assert (warm.p, warm.q, warm.v) == pytest.approx((fit.p, fit.q, fit.v), rel=1e-5)
    assert gammagamma.fit(x, m) == fit


def test_synthetic_data_recovers_its_parameters() -> None:
    rng = np.random.default_rng(7)
    p, q, v = 3.0, 4.0, 20.0
    nu = rng.gamma(q, 1 / v, size=20_000)
    x = rng.integers(1, 10, size=nu.size)
    m = rng.gamma(p * x, 1 / (nu * x))  # the mean of x Gamma(p, nu) values
    fit = gammagamma.fit(x, m)
    assert (fit.p, fit.q, fit.v) == pytest.approx((p, q, v), rel=0.1)


def test_conditional_expectation_shrinks_to_the_population_mean() -> None:
    params = GammaGammaParams(6.25, 3.74, 15.44)
    few, many = gammagamma.conditional_expected_value(params, [1, 50], [100.0, 100.0])
    assert params.population_mean < few < many < 100.0  # more orders, more of their own mean
    assert gammagamma.expected_value_one(params, 1, 100.0) == pytest.approx(few)
    assert gammagamma.conditional_expected_value(params, 0, 0.0) == pytest.approx(
        params.population_mean
    )


def test_invalid_input_is_refused() -> None:
    with pytest.raises(ValueError, match="repeat buyers"):
        gammagamma.fit([0, 0], [0.0, 0.0])
    with pytest.raises(ValueError):
        GammaGammaParams(1.0, 1.0, 1.0)  # q == 1: no finite mean
