"""Differentially private audience counts: the Laplace mechanism.

Adding or removing one user changes an audience's size by at most 1 (the sensitivity), so
``size + Laplace(0, 1/epsilon)`` is epsilon-differentially private. Repeated reports add up
(sequential composition): the store keeps the epsilon spent per audience and report and
refuses a count once the budget is spent. Rounding and clamping at 0 are post-processing and
cost no privacy.

>>> import numpy as np
>>> noisy = noisy_count(1000, 0.5, np.random.default_rng(1))
>>> noisy["scale"], noisy["epsilon"], noisy["mechanism"]
(2.0, 0.5, 'laplace')
>>> abs(noisy["count"] - 1000) < 40
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SENSITIVITY = 1.0


def laplace_scale(epsilon: float) -> float:
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
    return SENSITIVITY / epsilon


def noisy_count(size: int, epsilon: float, rng: np.random.Generator) -> dict[str, Any]:
    """``size`` with Laplace noise of scale 1/epsilon, and how to read it: with probability
    0.95 the noise is within ``scale * ln 20`` of zero."""
    scale = laplace_scale(epsilon)
    noise = float(rng.laplace(0.0, scale))
    return {
        "count": max(0, round(size + noise)),
        "epsilon": epsilon,
        "scale": scale,
        "mechanism": "laplace",
        "within_95": round(scale * math.log(20), 6),
    }
