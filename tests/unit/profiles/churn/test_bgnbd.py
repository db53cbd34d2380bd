"""BG/NBD and MBG/NBD: published CDNOW estimates, an independent formula, simulation recovery."""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.churn.bgnbd import (
    BGNBDParams,
    Variant,
    expected_purchases,
    expected_purchases_one,
    fit,
    log_likelihood,
    model_version,
    p_alive,
    p_dead_one,
)

DATA = Path(__file__).parents[3] / "data" / "cdnow_summary.csv"
#: Fader, Hardie & Lee (2005), table 1: the 2357-customer CDNOW sample, time in weeks.
PUBLISHED = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
PUBLISHED_LL = -9582.4


def cdnow() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = np.loadtxt(DATA, delimiter=",", skiprows=1)
    return table[:, 0], table[:, 1], table[:, 2]


# ------------------------------------------------------------------ published values


def test_cdnow_sample_is_the_published_one() -> None:
    x, t_x, T = cdnow()
    assert x.size == 2357
    # The paper's summary: 1411 of 2357 made no repeat purchase in the 39-week calibration.
    assert int((x == 0).sum()) == 1411
    assert np.all((t_x >= 0) & (t_x <= T))


def test_fit_recovers_published_cdnow_estimates() -> None:
    x, t_x, T = cdnow()
    params = fit(x, t_x, T)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(params, name) == pytest.approx(getattr(PUBLISHED, name), rel=0.01), name
    assert log_likelihood(params, x, t_x, T) == pytest.approx(PUBLISHED_LL, abs=0.1)


def test_log_likelihood_at_published_estimates() -> None:
    x, t_x, T = cdnow()
    assert log_likelihood(PUBLISHED, x, t_x, T) == pytest.approx(PUBLISHED_LL, abs=0.1)


def test_fit_is_deterministic_and_weights_count_customers() -> None:
    x, t_x, T = cdnow()
    x, t_x, T = x[:400], t_x[:400], T[:400]
    assert fit(x, t_x, T) == fit(x, t_x, T)
    doubled = fit(np.r_[x, x[:100]], np.r_[t_x, t_x[:100]], np.r_[T, T[:100]])
    weights = np.r_[np.full(100, 2.0), np.ones(300)]
    weighted = fit(x, t_x, T, weights=weights)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(weighted, name) == pytest.approx(getattr(doubled, name), rel=1e-4)
    ll_doubled = log_likelihood(
        PUBLISHED, np.r_[x, x[:100]], np.r_[t_x, t_x[:100]], np.r_[T, T[:100]]
    )
    assert log_likelihood(PUBLISHED, x, t_x, T, weights) == pytest.approx(ll_doubled)


# ------------------------------------------------------------------ independent formulas


def _log_beta(p: float, q: float) -> float:
    return math.lgamma(p) + math.lgamma(q) - math.lgamma(p + q)


def direct_likelihood(prm: BGNBDParams, x: int, t_x: float, T: float) -> float:
    """Fader et al. (2005) eq. 6 (BG/NBD) / Batislam et al. (2007) (MBG/NBD), term by term."""
    r, al, a, b = prm.r, prm.alpha, prm.a, prm.b
    gamma_part = math.exp(math.lgamma(r + x) - math.lgamma(r)) * math.pow(al, r)
    if prm.variant == "bgnbd":
        alive = (
            math.exp(_log_beta(a, b + x) - _log_beta(a, b)) * gamma_part / math.pow(al + T, r + x)
        )
        dead = 0.0
        if x > 0:
            dead = (
                math.exp(_log_beta(a + 1, b + x - 1) - _log_beta(a, b))
                * gamma_part
                / math.pow(al + t_x, r + x)
            )
    else:
        alive = (
            math.exp(_log_beta(a, b + x + 1) - _log_beta(a, b))
            * gamma_part
            / math.pow(al + T, r + x)
        )
        dead = (
            math.exp(_log_beta(a + 1, b + x) - _log_beta(a, b))
            * gamma_part
            / math.pow(al + t_x, r + x)
        )
    return alive + dead


def direct_p_alive(prm: BGNBDParams, x: int, t_x: float, T: float) -> float:
    r, al, a, b = prm.r, prm.alpha, prm.a, prm.b
    if prm.variant == "bgnbd":
        if x == 0:
            return 1.0
        return 1.0 / (1.0 + a / (b + x - 1) * math.pow((al + T) / (al + t_x), r + x))
    return 1.0 / (1.0 + a / (b + x) * math.pow((al + T) / (al + t_x), r + x))


def hyp2f1_series(a: float, b: float, c: float, z: float) -> float:
    """Gauss's series, summed until the terms vanish (fine for the small ``z`` used here)."""
    term, total, n = 1.0, 1.0, 0
    while abs(term) > 1e-17 * abs(total):
        term *= (a + n) * (b + n) / ((c + n) * (n + 1)) * z
        total += term
        n += 1
    return total


def direct_expected(prm: BGNBDParams, t: float, x: int, t_x: float, T: float) -> float:
    """Fader et al. (2005) eq. 10, and its MBG/NBD counterpart."""
    r, al, a, b = prm.r, prm.alpha, prm.a, prm.b
    shift = 0.0 if prm.variant == "bgnbd" else 1.0
    c = a + b + x - 1 + shift
    z = t / (al + T + t)
    bracket = 1 - math.pow((al + T) / (al + T + t), r + x) * hyp2f1_series(
        r + x, b + x + shift, c, z
    )
    return c / (a - 1) * bracket * direct_p_alive(prm, x, t_x, T)


WORKED = [(0, 0.0, 10.0), (2, 4.5, 9.0), (7, 20.0, 21.5)]  # three customers (x, t_x, T)


@pytest.mark.parametrize("variant", ["bgnbd", "mbgnbd"])
@pytest.mark.parametrize(
    "prm",
    [(0.243, 4.414, 0.793, 2.426), (2.0, 17.0, 0.4, 19.0), (1.3, 3.0, 2.5, 1.1)],
)
def test_worked_example_matches_direct_formulas(
    prm: tuple[float, float, float, float], variant: Variant
) -> None:
    params = BGNBDParams(*prm, variant=variant)
    x = np.array([c[0] for c in WORKED])
    t_x = np.array([c[1] for c in WORKED])
    T = np.array([c[2] for c in WORKED])
    want_ll = sum(math.log(direct_likelihood(params, *c)) for c in WORKED)
    assert log_likelihood(params, x, t_x, T) == pytest.approx(want_ll, rel=1e-12)
    want_alive = [direct_p_alive(params, *c) for c in WORKED]
    np.testing.assert_allclose(p_alive(params, x, t_x, T), want_alive, rtol=1e-12)
    for t in (1.0, 7.0, 30.0):
        want = [direct_expected(params, t, *c) for c in WORKED]
        np.testing.assert_allclose(expected_purchases(params, t, x, t_x, T), want, rtol=1e-9)


# ------------------------------------------------------------------ x == 0


def test_bgnbd_calls_one_time_buyers_alive_and_mbgnbd_does_not() -> None:
    T = np.array([1.0, 10.0, 100.0, 1000.0])
    zeros = np.zeros_like(T)
    assert p_alive(PUBLISHED, zeros, zeros, T).tolist() == [1.0, 1.0, 1.0, 1.0]
    modified = BGNBDParams(PUBLISHED.r, PUBLISHED.alpha, PUBLISHED.a, PUBLISHED.b, "mbgnbd")
    alive = p_alive(modified, zeros, zeros, T)
    assert np.all(alive < 1.0)
    assert np.all(np.diff(alive) < 0)  # the longer the silence, the less likely alive
    assert p_dead_one(PUBLISHED, 0, 0.0, 1e6) == 0.0
    assert p_dead_one(modified, 0, 0.0, 1e6) > 0.8


# ------------------------------------------------------------------ shape and edge cases


@settings(max_examples=100, deadline=None)
@given(
    r=st.floats(0.05, 20),
    alpha=st.floats(0.05, 200),
    a=st.floats(0.05, 20),
    b=st.floats(0.05, 20),
    variant=st.sampled_from(["bgnbd", "mbgnbd"]),
    x=st.integers(0, 200),
    t_x=st.floats(0, 500),
    gaps=st.lists(st.floats(0, 500), min_size=2, max_size=5),
)
def test_p_alive_never_rises_with_T_and_scalar_agrees(
    r: float,
    alpha: float,
    a: float,
    b: float,
    variant: Variant,
    x: int,
    t_x: float,
    gaps: list[float],
) -> None:
    params = BGNBDParams(r, alpha, a, b, variant)
    t_x = 0.0 if x == 0 else t_x
    T = t_x + np.sort(np.array(gaps))
    alive = p_alive(params, np.full_like(T, x), np.full_like(T, t_x), T)
    assert np.all(np.diff(alive) <= 0)
    assert np.all((alive >= 0) & (alive <= 1))
    dead = [p_dead_one(params, x, t_x, float(v)) for v in T]
    assert all(d1 <= d2 for d1, d2 in itertools.pairwise(dead))
    np.testing.assert_allclose(dead, 1.0 - alive, atol=1e-12)


def test_expected_purchases_grows_with_the_window_and_is_zero_for_none() -> None:
    t = np.array([0.0, 1.0, 10.0, 100.0])
    for variant in ("bgnbd", "mbgnbd"):
        params = BGNBDParams(0.5, 6.0, 0.9, 1.6, variant)
        e = expected_purchases(params, t, 3, 20.0, 30.0)
        assert e[0] == 0.0
        assert np.all(np.diff(e) > 0)


def test_expected_purchases_is_continuous_at_a_equals_one() -> None:
    at_one = expected_purchases(BGNBDParams(0.8, 5.0, 1.0, 2.0), 30.0, 2, 10.0, 20.0)
    below = expected_purchases(BGNBDParams(0.8, 5.0, 1.0 - 1e-5, 2.0), 30.0, 2, 10.0, 20.0)
    above = expected_purchases(BGNBDParams(0.8, 5.0, 1.0 + 1e-5, 2.0), 30.0, 2, 10.0, 20.0)
    assert math.isfinite(float(at_one))
    assert float(at_one) == pytest.approx(float(below), rel=1e-4)
    assert float(at_one) == pytest.approx(float(above), rel=1e-4)


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="t_x <= T"):
        p_alive(PUBLISHED, 1, 5.0, 4.0)
    with pytest.raises(ValueError, match="x >= 0"):
        log_likelihood(PUBLISHED, -1, 0.0, 4.0)
    with pytest.raises(ValueError, match="variant"):
        BGNBDParams(1.0, 1.0, 1.0, 1.0, "pareto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="without customers"):
        fit([], [], [])
    with pytest.raises(ValueError, match="weights"):
        fit([1, 2], [1.0, 2.0], [3.0, 3.0], weights=[0.0, 0.0])


def test_model_version_names_variant_and_rounded_params() -> None:
    v = model_version(PUBLISHED)
    assert v.startswith("bgnbd-") and len(v) == len("bgnbd-") + 8
    assert model_version(BGNBDParams(0.24300001, 4.414, 0.793, 2.426)) == v
    assert model_version(BGNBDParams(0.25, 4.414, 0.793, 2.426)) != v
    assert model_version(BGNBDParams(0.243, 4.414, 0.793, 2.426, "mbgnbd")).startswith("mbgnbd-")


# ------------------------------------------------------------------ simulation recovery


def simulate(params: BGNBDParams, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw customers from the model itself: Gamma rates, Poisson purchases, Beta dropout."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params.r, 1.0 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    T = rng.uniform(30.0, 180.0, n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    for i in range(n):
        # MBG/NBD: the customer may already drop out right after the first purchase.
        if params.variant == "mbgnbd" and rng.random() < p[i]:
            continue
        t = 0.0
        while True:
            t += rng.exponential(1.0 / lam[i])
            if t > T[i]:
                break
            x[i] += 1
            t_x[i] = t
            if rng.random() < p[i]:
                break
    return x, t_x, T


@pytest.mark.parametrize("variant", ["bgnbd", "mbgnbd"])
def test_fit_recovers_parameters_of_simulated_customers(variant: Variant) -> None:
    truth = BGNBDParams(r=0.8, alpha=10.0, a=0.8, b=2.5, variant=variant)
    x, t_x, T = simulate(truth, 8000, seed=3)
    got = fit(x, t_x, T, variant=variant)
    assert got.variant == variant
    assert got.r == pytest.approx(truth.r, rel=0.15)
    assert got.alpha == pytest.approx(truth.alpha, rel=0.2)
    # Dropout is seen only through silences, so a and b are less sharply identified.
    assert got.a == pytest.approx(truth.a, rel=0.25)
    assert got.b == pytest.approx(truth.b, rel=0.25)
    # The fit explains the data at least as well as the truth does.
    assert log_likelihood(got, x, t_x, T) >= log_likelihood(truth, x, t_x, T)


# ------------------------------------------------------------------ lifetimes as a reference


def lifetimes_module() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import lifetimes
        # Under newer numpy/scipy lifetimes may fail in other ways than a missing package.
        except Exception as exc:
            pytest.skip(f"lifetimes unavailable: {exc}")
    return lifetimes


def _reference(lifetimes: ModuleType, params: BGNBDParams) -> Any:
    import pandas as pd

    cls = lifetimes.BetaGeoFitter if params.variant == "bgnbd" else lifetimes.ModifiedBetaGeoFitter
    model = cls()
    model.params_ = pd.Series({"r": params.r, "alpha": params.alpha, "a": params.a, "b": params.b})
    return model


@pytest.mark.parametrize("variant", ["bgnbd", "mbgnbd"])
def test_p_alive_and_expected_purchases_match_lifetimes(variant: Variant) -> None:
    lifetimes = lifetimes_module()
    params = BGNBDParams(0.243, 4.414, 0.793, 2.426, variant)
    ref = _reference(lifetimes, params)
    x, t_x, T = cdnow()
    pick = np.r_[0:10, 100:110, np.flatnonzero(x >= 10)[:5]]
    x, t_x, T = x[pick], t_x[pick], T[pick]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want_alive = np.asarray(ref.conditional_probability_alive(x, t_x, T), dtype=float)
        want = {
            t: np.asarray(
                ref.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, T), dtype=float
            )
            for t in (1.0, 10.0, 39.0)
        }
    np.testing.assert_allclose(p_alive(params, x, t_x, T), want_alive, rtol=1e-9)
    for t, expected in want.items():
        np.testing.assert_allclose(expected_purchases(params, t, x, t_x, T), expected, rtol=1e-7)


def test_mbgnbd_fit_matches_lifetimes_on_cdnow() -> None:
    lifetimes = lifetimes_module()
    x, t_x, T = cdnow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lifetimes.ModifiedBetaGeoFitter().fit(x, t_x, T)
    ours = fit(x, t_x, T, variant="mbgnbd")
    for name in ("r", "alpha", "a", "b"):
        assert getattr(ours, name) == pytest.approx(float(ref.params_[name]), rel=1e-3), name


@pytest.mark.parametrize("variant", ["bgnbd", "mbgnbd"])
def test_expected_purchases_one_matches_the_array_version(variant: Variant) -> None:
    params = BGNBDParams(0.243, 4.414, 0.793, 2.426, variant)
    x, t_x, T = cdnow()
    for i in range(0, x.size, 97):
        for t in (1.0, 30.0, 273.0):
            want = float(expected_purchases(params, t, x[i], t_x[i], T[i]))
            got = expected_purchases_one(params, t, int(x[i]), float(t_x[i]), float(T[i]))
            assert got == pytest.approx(want, rel=1e-12, abs=1e-15)
