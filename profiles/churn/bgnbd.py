"""BG/NBD and MBG/NBD: how many purchases a customer makes, and whether they are still a customer.

The BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way") describes a
customer, from their first purchase on, by two latent quantities:

* while alive, purchases arrive as a Poisson process with rate ``lambda``, and ``lambda`` varies
  across customers as Gamma(shape ``r``, rate ``alpha``);
* after each purchase the customer drops out ("dies") with probability ``p``, and ``p`` varies
  across customers as Beta(``a``, ``b``).

A customer is summarised by ``(x, t_x, T)``: ``x`` repeat purchases (purchases after the first),
``t_x`` the time from the first to the last purchase, ``T`` the time from the first purchase to
the moment of scoring. The functions here are unit-agnostic (``alpha`` takes the unit of the
times), but everything in :mod:`profiles.churn` uses **days**.

**Why the modified variant exists.** In the BG/NBD a customer can only die right after a *repeat*
purchase, so a customer with ``x == 0`` is alive with probability exactly 1 however long ago
their single purchase was: :func:`p_alive` returns 1.0 for them. For churn scoring that is wrong
(a one-time buyer from a year ago is not "certainly alive"), and one-time buyers are the largest
group in most shops. The MBG/NBD (Batislam, Denizel & Filiztekin 2007) also lets the customer die
right after the first purchase; its only change to the formulas is ``b + x - 1 -> b + x`` and
dropping the ``x > 0`` indicator, so ``p_alive`` falls with ``T`` for every customer, including
``x == 0``. Both are available via :attr:`BGNBDParams.variant`; the risk score
(:mod:`profiles.churn.risk`) fits the MBG/NBD, and the BG/NBD is kept because its published
CDNOW estimates pin the implementation down (see the tests).

>>> import numpy as np
>>> cdnow = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)  # published, time in weeks
>>> x, t_x, T = np.array([2, 1, 0]), np.array([30.43, 1.71, 0.0]), np.array([38.86] * 3)
>>> np.round(p_alive(cdnow, x, t_x, T), 3).tolist()
[0.727, 0.212, 1.0]
>>> np.round(expected_purchases(cdnow, 39.0, x, t_x, T), 3).tolist()
[1.226, 0.203, 0.195]
>>> float(np.round(p_alive(BGNBDParams(0.243, 4.414, 0.793, 2.426, "mbgnbd"), 0, 0.0, 38.86), 3))
0.637
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import astuple, dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

__all__ = [
    "BGNBDParams",
    "Variant",
    "expected_purchases",
    "expected_purchases_one",
    "fit",
    "log_likelihood",
    "model_version",
    "p_alive",
    "p_dead_one",
]

Variant = Literal["bgnbd", "mbgnbd"]
ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

#: Log-parameters are kept in this box: far beyond any real shop, and exp() stays finite.
_LOG_BOUND = 15.0
#: Expected purchases divide by ``a - 1``; closer than this to 1 we evaluate just beside it.
_A_EQUALS_ONE = 1e-7


@dataclass(frozen=True)
class BGNBDParams:
    """Population parameters: purchase rate ~ Gamma(r, alpha), dropout ~ Beta(a, b).

    ``alpha`` is in the time unit of the data (days in :mod:`profiles.churn`).

    >>> BGNBDParams(0.243, 4.414, 0.793, 2.426).variant
    'bgnbd'
    >>> BGNBDParams(0.0, 1.0, 1.0, 1.0)
    Traceback (most recent call last):
    ...
    ValueError: r, alpha, a, b must be finite and > 0, got (0.0, 1.0, 1.0, 1.0)
    """

    r: float
    alpha: float
    a: float
    b: float
    variant: Variant = "bgnbd"

    def __post_init__(self) -> None:
        values = (self.r, self.alpha, self.a, self.b)
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"r, alpha, a, b must be finite and > 0, got {values}")
        if self.variant not in ("bgnbd", "mbgnbd"):
            raise ValueError(f"variant must be 'bgnbd' or 'mbgnbd', got {self.variant!r}")


def model_version(params: BGNBDParams) -> str:
    """A short stable name for fitted parameters: the variant and a hash of the rounded values.

    Rounding to 4 significant digits makes refits that barely moved keep their name.

    >>> model_version(BGNBDParams(0.243, 4.414, 0.793, 2.426))
    'bgnbd-b1284c7b'
    """
    text = ",".join(f"{v:.4g}" for v in astuple(params)[:4])
    return f"{params.variant}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _summary(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    xa, ta, Ta = np.broadcast_arrays(
        np.asarray(x, dtype=np.float64),
        np.asarray(t_x, dtype=np.float64),
        np.asarray(T, dtype=np.float64),
    )
    if np.any(xa < 0) or np.any(ta < 0) or np.any(Ta < ta):
        raise ValueError("need x >= 0 and 0 <= t_x <= T")
    return xa, ta, Ta


def _log_terms(
    params: BGNBDParams, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``(log A, log B)``: a customer's likelihood is ``A + B``.

    ``A``: alive through ``T``; ``B``: died right after the last purchase at ``t_x``.
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    common = special.gammaln(r + x) - special.gammaln(r) + r * math.log(alpha)
    common = common - special.betaln(a, b)
    if params.variant == "bgnbd":
        has_b = x > 0
        # b + x - 1 may be <= 0 where x == 0; that term is masked out, so any value will do.
        b_dead = np.where(has_b, b + x - 1.0, 1.0)
        log_a = common + special.betaln(a, b + x) - (r + x) * np.log(alpha + T)
        log_b = common + special.betaln(a + 1.0, b_dead) - (r + x) * np.log(alpha + t_x)
        # No repeat purchase, no chance to have died (the BG/NBD's blind spot).
        return log_a, np.where(has_b, log_b, -np.inf)
    log_a = common + special.betaln(a, b + x + 1.0) - (r + x) * np.log(alpha + T)
    log_b = common + special.betaln(a + 1.0, b + x) - (r + x) * np.log(alpha + t_x)
    return log_a, log_b


def _log_likelihoods(
    params: BGNBDParams, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    log_a, log_b = _log_terms(params, x, t_x, T)
    out: FloatArray = np.logaddexp(log_a, log_b)
    return out


def log_likelihood(
    params: BGNBDParams,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
) -> float:
    """The (weighted) total log-likelihood of the customers ``(x, t_x, T)`` under ``params``.

    Computed in log space (``gammaln``, ``betaln``, ``logaddexp``), so it stays finite for
    customers with hundreds of purchases.

    >>> round(log_likelihood(BGNBDParams(1.0, 1.0, 1.0, 1.0), [0, 1], [0.0, 1.0], [2.0, 2.0]), 6)
    -2.810329
    """
    xa, ta, Ta = _summary(x, t_x, T)
    ll = _log_likelihoods(params, xa, ta, Ta)
    if weights is None:
        return float(ll.sum())
    return float(np.sum(np.asarray(weights, dtype=np.float64) * ll))


def fit(
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
    init: BGNBDParams | None = None,
    *,
    variant: Variant = "bgnbd",
) -> BGNBDParams:
    """Maximum-likelihood parameters for the customers ``(x, t_x, T)``.

    Optimises the log-parameters with L-BFGS-B (deterministic: same data, same result).
    ``weights`` count identical customers (e.g. a compressed summary). ``init`` defaults to
    ``r = alpha = a = b = 1``; the variant of ``init``, if given, is ignored in favour of
    ``variant``.

    >>> p = fit([0, 0, 1, 2, 4, 0, 1], [0, 0, 3, 8, 20, 0, 5], [30, 25, 30, 30, 28, 10, 12])
    >>> (p.variant, round(p.r, 2) > 0)
    ('bgnbd', True)
    """
    xa, ta, Ta = _summary(x, t_x, T)
    if xa.size == 0:
        raise ValueError("cannot fit without customers")
    w = np.ones_like(xa) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != xa.shape or np.any(w < 0) or not np.any(w > 0):
        raise ValueError("weights must match the customers, be >= 0 and not all zero")
    # The mean, not the sum: the objective's scale no longer depends on how many customers.
    w = w / w.sum()
    start = init if init is not None else BGNBDParams(1.0, 1.0, 1.0, 1.0)
    theta0 = np.log(np.array(astuple(start)[:4], dtype=np.float64))

    def objective(theta: FloatArray) -> float:
        r, alpha, a, b = np.exp(theta)
        with np.errstate(all="ignore"):
            ll = _log_likelihoods(BGNBDParams(r, alpha, a, b, variant), xa, ta, Ta)
            value = -float(np.sum(w * ll))
        # Outside the region where the formulas are finite: steer the optimiser back.
        return value if math.isfinite(value) else 1e300

    result = optimize.minimize(
        objective,
        theta0,
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 4,
        options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9},
    )
    r, alpha, a, b = (float(v) for v in np.exp(result.x))
    return BGNBDParams(r, alpha, a, b, variant)


def p_alive(params: BGNBDParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """P(the customer is still alive at ``T`` | ``x``, ``t_x``, ``T``).

    BG/NBD: ``1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))**(r + x))``, which
    is exactly 1 for ``x == 0``. MBG/NBD: ``1 / (1 + a / (b + x) (...)**(r + x))`` for all ``x``.
    Non-increasing in ``T`` for fixed ``x, t_x`` (the odds of death grow with ``alpha + T``).

    >>> float(p_alive(BGNBDParams(0.243, 4.414, 0.793, 2.426), 0, 0.0, 100.0))
    1.0
    """
    xa, ta, Ta = _summary(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    growth = (r + xa) * (np.log(alpha + Ta) - np.log(alpha + ta))
    if params.variant == "bgnbd":
        has_b = xa > 0
        log_odds = math.log(a) - np.log(np.where(has_b, b + xa - 1.0, 1.0)) + growth
        log_odds = np.where(has_b, log_odds, -np.inf)
    else:
        log_odds = math.log(a) - np.log(b + xa) + growth
    out: FloatArray = special.expit(-log_odds)
    return out


def expected_purchases(
    params: BGNBDParams, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> FloatArray:
    """E[purchases in ``(T, T + t]`` | ``x``, ``t_x``, ``T``] (Fader et al. 2005, eq. 10).

    BG/NBD: ``(a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))**(r+x) * 2F1(r+x, b+x; a+b+x-1;
    t/(alpha+T+t))] / (1 + [x>0] a/(b+x-1) ((alpha+T)/(alpha+t_x))**(r+x))``; the MBG/NBD
    replaces ``b+x`` by ``b+x+1`` in ``2F1``, ``a+b+x-1`` by ``a+b+x`` and uses its ``p_alive``.
    ``a == 1`` is a removable singularity, evaluated just beside it.

    >>> params = BGNBDParams(0.243, 4.414, 0.793, 2.426)
    >>> np.round(expected_purchases(params, [1.0, 10.0, 100.0], 3, 5.0, 9.0), 3).tolist()
    [0.151, 1.306, 6.787]
    """
    xa, ta, Ta = _summary(x, t_x, T)
    ts = np.asarray(t, dtype=np.float64)
    if np.any(ts < 0):
        raise ValueError("t must be >= 0")
    r, alpha, b = params.r, params.alpha, params.b
    a = params.a
    if abs(a - 1.0) < _A_EQUALS_ONE:
        a = 1.0 + _A_EQUALS_ONE
    c = a + b + xa - (1.0 if params.variant == "bgnbd" else 0.0)
    z = ts / (alpha + Ta + ts)
    # Euler's transformation: (1-z)**(r+x) * 2F1(r+x, B; c; z)
    #   == (1-z)**(c-r-x-B) ... == (1-z)**(a-1) * 2F1(c-r-x, c-B; c; z), as c - B == a - 1.
    # The left side is 0 * inf for many purchases over a long window; the right side is not.
    kept = np.exp((a - 1.0) * np.log1p(-z)) * special.hyp2f1(c - r - xa, a - 1.0, c, z)
    alive_mass = c / (a - 1.0) * (1.0 - kept)
    out: FloatArray = alive_mass * p_alive(params, xa, ta, Ta)
    return out


def p_dead_one(params: BGNBDParams, x: float, t_x: float, T: float) -> float:
    """``1 - p_alive`` for one customer, in plain floats: fast enough to call in a bisection.

    Computed as ``expit(log odds of death)`` rather than ``1 - p_alive``, so tiny risks keep
    their precision; non-decreasing in ``T``. Inputs are assumed valid (``0 <= t_x <= T``).

    >>> params = BGNBDParams(0.243, 4.414, 0.793, 2.426)
    >>> round(p_dead_one(params, 2, 30.43, 38.86), 6)
    0.273421
    >>> p_dead_one(params, 0, 0.0, 500.0)
    0.0
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if params.variant == "bgnbd":
        if x <= 0:
            return 0.0
        b_dead = b + x - 1.0
    else:
        b_dead = b + x
    growth = (r + x) * (math.log(alpha + T) - math.log(alpha + t_x))
    log_odds = math.log(a) - math.log(b_dead) + growth
    if log_odds >= 0.0:
        return 1.0 / (1.0 + math.exp(-log_odds))
    odds = math.exp(log_odds)
    return odds / (1.0 + odds)


def expected_purchases_one(params: BGNBDParams, t: float, x: int, t_x: float, T: float) -> float:
    """:func:`expected_purchases` for one customer in plain floats (no array set-up): the
    per-event scoring path calls it once per score. NaN where ``2F1`` fails.

    >>> params = BGNBDParams(0.243, 4.414, 0.793, 2.426)
    >>> round(expected_purchases_one(params, 10.0, 3, 5.0, 9.0), 3)
    1.306
    """
    r, alpha, b = params.r, params.alpha, params.b
    a = params.a
    if abs(a - 1.0) < _A_EQUALS_ONE:
        a = 1.0 + _A_EQUALS_ONE
    c = a + b + x - (1.0 if params.variant == "bgnbd" else 0.0)
    z = t / (alpha + T + t)
    kept = math.exp((a - 1.0) * math.log1p(-z)) * float(special.hyp2f1(c - r - x, a - 1.0, c, z))
    return c / (a - 1.0) * (1.0 - kept) * (1.0 - p_dead_one(params, x, t_x, T))
