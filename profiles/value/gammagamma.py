"""The Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005, "RFM and CLV").

A customer's transactions have values ``z_i ~ Gamma(p, nu)`` (shape ``p``, rate ``nu``), so
the customer's mean transaction value is ``p / nu``; across customers ``nu ~ Gamma(q, v)``.
Only repeat buyers carry information about their own mean, so the model is fitted on the
customers with ``x >= 1`` transactions averaged, each summarised by ``(x, m_x)``: the number of
transactions and their mean value. It assumes spend is independent of purchase frequency
(check it on your data: the correlation of ``x`` and ``m_x`` should be small).

The conditional expectation of a customer's mean transaction value is a weighted average of
the population mean ``v p / (q - 1)`` and the customer's own ``m_x``, the more of their own
the more transactions they made::

    E[Z | x, m_x] = p (v + x m_x) / (p x + q - 1)

>>> cdnow = GammaGammaParams(6.25, 3.74, 15.44)  # published, the CDNOW 1/10 sample
>>> round(float(cdnow.population_mean), 2)
35.22
>>> np.round(conditional_expected_value(cdnow, [0, 1, 10], [0.0, 20.0, 20.0]), 2).tolist()
[35.22, 24.64, 20.64]
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import astuple, dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

__all__ = [
    "GammaGammaParams",
    "conditional_expected_value",
    "fit",
    "log_likelihood",
    "model_version",
]

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

_LOG_BOUND = 15.0


@dataclass(frozen=True)
class GammaGammaParams:
    """Population parameters: transaction value ~ Gamma(p, nu), nu ~ Gamma(q, v).

    ``v`` is in the currency unit of the data.

    >>> GammaGammaParams(1.0, 0.5, 1.0)
    Traceback (most recent call last):
    ...
    ValueError: need p, v > 0 and q > 1 (a finite mean), got (1.0, 0.5, 1.0)
    """

    p: float
    q: float
    v: float

    def __post_init__(self) -> None:
        values = (self.p, self.q, self.v)
        if not all(math.isfinite(x) for x in values) or self.p <= 0 or self.v <= 0 or self.q <= 1:
            raise ValueError(f"need p, v > 0 and q > 1 (a finite mean), got {values}")

    @property
    def population_mean(self) -> float:
        """E[Z] of a customer about whom nothing is known: ``v p / (q - 1)``."""
        return self.v * self.p / (self.q - 1.0)


def model_version(params: GammaGammaParams) -> str:
    """A short stable name for fitted parameters (4 significant digits, hashed).

    >>> model_version(GammaGammaParams(6.25, 3.74, 15.44))
    'gg-d7e42a92'
    """
    text = ",".join(f"{v:.4g}" for v in astuple(params))
    return f"gg-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _summary(x: ArrayLike, m: ArrayLike) -> tuple[FloatArray, FloatArray]:
    xa, ma = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64))
    if np.any(xa < 0) or np.any(ma < 0):
        raise ValueError("need x >= 0 and m >= 0")
    return xa, ma


def _log_likelihoods(p: float, q: float, v: float, x: FloatArray, m: FloatArray) -> FloatArray:
    """Per customer ``log f(m_x | x)`` up to a term that does not depend on ``p, q, v``."""
    px = p * x
    out: FloatArray = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * math.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )
    return out


def log_likelihood(
    params: GammaGammaParams, x: ArrayLike, m: ArrayLike, weights: ArrayLike | None = None
) -> float:
    """The (weighted) log-likelihood of repeat buyers ``(x >= 1, m_x > 0)`` under ``params``."""
    xa, ma = _summary(x, m)
    ll = _log_likelihoods(params.p, params.q, params.v, xa, ma)
    if weights is None:
        return float(ll.sum())
    return float(np.sum(np.asarray(weights, dtype=np.float64) * ll))


def fit(
    x: ArrayLike,
    m: ArrayLike,
    weights: ArrayLike | None = None,
    init: GammaGammaParams | None = None,
) -> GammaGammaParams:
    """Maximum-likelihood ``(p, q, v)`` from customers with ``x`` transactions of mean ``m``.

    Customers with ``x < 1`` or ``m <= 0`` carry no information and are left out. L-BFGS-B
    on ``(log p, log (q - 1), log v)``, so every iterate has a finite mean; deterministic.
    ``init`` (e.g. the previous fit) makes a refit faster.

    >>> fit([1, 2, 3, 1, 4], [10.0, 12.0, 9.0, 30.0, 11.0]).q > 1
    True
    """
    xa, ma = _summary(x, m)
    w = np.ones_like(xa) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != xa.shape or np.any(w < 0):
        raise ValueError("weights must match the customers and be >= 0")
    keep = (xa >= 1) & (ma > 0) & (w > 0)
    xa, ma, w = xa[keep], ma[keep], w[keep]
    if xa.size == 0:
        raise ValueError("cannot fit without repeat buyers")
    w = w / w.sum()
    start = init if init is not None else GammaGammaParams(1.0, 2.0, float(np.median(ma)))
    theta0 = np.log(np.array([start.p, start.q - 1.0, start.v], dtype=np.float64))

    def objective(theta: FloatArray) -> float:
        p, q1, v = np.exp(theta)
        with np.errstate(all="ignore"):
            value = -float(np.sum(w * _log_likelihoods(p, q1 + 1.0, v, xa, ma)))
        return value if math.isfinite(value) else 1e300

    result = optimize.minimize(
        objective,
        theta0,
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 3,
        options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-10},
    )
    p, q1, v = (float(t) for t in np.exp(result.x))
    return GammaGammaParams(p, q1 + 1.0, v)


def conditional_expected_value(params: GammaGammaParams, x: ArrayLike, m: ArrayLike) -> FloatArray:
    """``E[Z | x, m_x] = p (v + x m_x) / (p x + q - 1)``; the population mean where ``x == 0``."""
    xa, ma = _summary(x, m)
    p, q, v = params.p, params.q, params.v
    out: FloatArray = p * (v + xa * ma) / (p * xa + q - 1.0)
    return out


def expected_value_one(params: GammaGammaParams, x: float, m: float) -> float:
    """:func:`conditional_expected_value` for one customer in plain floats."""
    return params.p * (params.v + x * m) / (params.p * x + params.q - 1.0)
