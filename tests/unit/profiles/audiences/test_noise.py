"""The Laplace mechanism's noise has the scale it states: checked on many seeded draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from profiles.audiences.noise import laplace_scale, noisy_count


@pytest.mark.parametrize("epsilon", [0.1, 0.5, 2.0])
def test_noise_scale_matches_epsilon(epsilon: float) -> None:
    rng = np.random.default_rng(20)
    size = 100_000  # far from 0: clamping never acts
    draws = np.array([noisy_count(size, epsilon, rng)["count"] for _ in range(20_000)])
    noise = draws - size
    b = 1 / epsilon
    # Laplace(0, b): mean 0, variance 2 b^2, mean |x| = b, P(|x| > b ln 20) = 0.05.
    # Bounds at ~5 standard errors of each estimate (n = 20,000), plus rounding.
    assert abs(noise.mean()) < 5 * math.sqrt(2) * b / math.sqrt(len(noise)) + 0.5
    assert abs(noise.var() / (2 * b * b + 1 / 12) - 1) < 0.1
    assert abs(np.abs(noise).mean() / b - 1) < 0.05 + 0.5 / b
    outside = float(np.mean(np.abs(noise) > b * math.log(20) + 0.5))
    assert 0.035 < outside < 0.06


def test_counts_are_never_negative_and_bad_epsilons_are_refused() -> None:
    rng = np.random.default_rng(1)
    assert min(noisy_count(0, 0.1, rng)["count"] for _ in range(500)) == 0
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="epsilon must be a positive number"):
            laplace_scale(bad)
