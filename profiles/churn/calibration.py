"""A small logistic calibrator over the model's horizon probability and the customer's features.

The repeat-buying model (:mod:`profiles.churn.bgnbd`) knows purchases only. A shop's own outcomes
say how much the rest matters: how many purchases, how long ago the last one, how long the
customer has been one, how much they spend per order, and how recently they did *anything*
(clicks, searches: engagement). The calibrator is a logistic regression on matured
``(features as of s, no purchase in (s, s + H])`` pairs, fitted by L-BFGS-B (deterministic: same
pairs, same weights) with a small L2 penalty. On CDNOW a gradient-boosted model over these and
more features (recent purchase counts, expected purchases, the last gap over the mean gap) ranked
no better than this regression (EVALUATION.md), so the regression stays: a few floats per score.

**Monotone in time.** Without new events, four features only grow (the model's log-odds, days
since the last purchase, customer age, days since the last event) and two stay put (repeat
purchases, mean order value). The weights of those that grow are bounded at ``>= 0``, so the
calibrated risk, like the model's,
never falls as time passes without events: what lets the sweep find each level change by
bisection (:func:`profiles.churn.risk.next_crossing_ms`).

**Never silently worse.** Pairs are split by a hash of the user id into fit and holdout; the
calibrator is used only if its held-out AUC beats the model's (both kept in
:attr:`Calibrator.auc_model` / :attr:`Calibrator.auc_calibrated`, both exported as metrics).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> f = rng.normal(size=(400, len(FEATURES)))
>>> y = rng.random(400) < 1 / (1 + np.exp(-2 * f[:, 0]))
>>> cal = fit_calibrator(f, y, [f"u{i}" for i in range(400)])
>>> cal is not None and cal.weights[0] > 0 and cal.pairs == 400
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, special
from scipy import stats as sstats

__all__ = [
    "FEATURES",
    "Calibrator",
    "auc",
    "feature_row",
    "fit_calibrator",
    "in_holdout",
]

FloatArray = npt.NDArray[np.float64]

#: Feature names, in order; ``True`` where the feature only grows while nothing happens.
FEATURES: tuple[tuple[str, bool], ...] = (
    ("model_logit", True),
    ("log_days_since_purchase", True),
    ("log_repeat_purchases", False),
    ("log_customer_days", True),
    ("log_days_since_event", True),
    ("log_order_value", False),
)
#: Model probabilities are clipped this far from 0 and 1 before the logit.
_EPS = 1e-6
#: Share of pairs (by user hash) kept out of the fit to judge it.
HOLDOUT_SHARE = 0.25


def auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Area under the ROC curve via the rank-sum (Mann-Whitney U) statistic; ties count half.

    >>> auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
    0.75
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    ranks = sstats.rankdata(s)  # average ranks for ties
    u = float(ranks[y].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def feature_row(
    p_model: float,
    days_since_purchase: float,
    x: int,
    T: float,
    days_since_event: float,
    order_value: float,
) -> tuple[float, ...]:
    """The calibrator's inputs for one customer, in :data:`FEATURES` order (plain floats).

    >>> [round(v, 3) for v in feature_row(0.5, 10.0, 2, 40.0, 1.0, 19.0)]
    [0.0, 2.398, 1.099, 3.714, 0.693, 2.996]
    """
    p = min(max(p_model, _EPS), 1.0 - _EPS)
    return (
        math.log(p / (1.0 - p)),
        math.log1p(max(days_since_purchase, 0.0)),
        math.log1p(x),
        math.log1p(max(T, 0.0)),
        math.log1p(max(days_since_event, 0.0)),
        math.log1p(min(max(order_value, 0.0), 1e12)),
    )


def in_holdout(user_id: str) -> bool:
    """Deterministic fit/holdout split by user id (a user's pairs all fall on one side)."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < HOLDOUT_SHARE


@dataclass(frozen=True)
class Calibrator:
    """``risk = expit(intercept + sum(weights * (f - mean) / scale))``, and how well it did."""

    intercept: float
    weights: tuple[float, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    #: Held-out AUC of the model's probability alone and of the calibrated risk.
    auc_model: float
    auc_calibrated: float
    #: Matured pairs it was fitted and judged on (fit + holdout).
    pairs: int

    @property
    def better(self) -> bool:
        """Whether the calibrated risk beat the model on the holdout (else it is not used)."""
        return self.auc_calibrated > self.auc_model

    def risk(self, row: Sequence[float]) -> float:
        """The calibrated probability for one :func:`feature_row`."""
        z = self.intercept
        for w, v, m, s in zip(self.weights, row, self.mean, self.scale, strict=True):
            z += w * (v - m) / s
        # Plain floats (next_crossing_ms calls this ~50 times per user); stable both ways.
        if z >= 0.0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def risks(self, rows: npt.ArrayLike) -> FloatArray:
        """The calibrated probabilities for a matrix of rows."""
        f = np.asarray(rows, dtype=np.float64)
        z = self.intercept + ((f - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(
            self.weights
        )
        out: FloatArray = special.expit(z)
        return out

    def version(self) -> str:
        """A short stable name of the weights (4 significant digits)."""
        text = ",".join(f"{v:.4g}" for v in (self.intercept, *self.weights, *self.mean))
        return f"cal-{hashlib.sha256(text.encode()).hexdigest()[:8]}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        """The inverse of :meth:`to_dict`; a calibrator over another feature set is refused."""
        if len(data["weights"]) != len(FEATURES):
            raise ValueError(f"calibrator has {len(data['weights'])} weights, want {len(FEATURES)}")
        return cls(
            intercept=float(data["intercept"]),
            weights=tuple(float(v) for v in data["weights"]),
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            auc_model=float(data["auc_model"]),
            auc_calibrated=float(data["auc_calibrated"]),
            pairs=int(data["pairs"]),
        )


def _fit_logistic(
    f: FloatArray, y: FloatArray, nonneg: Sequence[bool], l2: float
) -> tuple[float, FloatArray]:
    n, k = f.shape

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        z = theta[0] + f @ theta[1:]
        # log(1 + e^z) - y z, and its gradient, averaged; L2 on the weights only.
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * float(
            theta[1:] @ theta[1:]
        )
        resid = (special.expit(z) - y) / n
        grad = np.concatenate(([resid.sum()], f.T @ resid + l2 * theta[1:]))
        return loss, grad

    bounds = [(None, None)] + [(0.0, None) if nn else (None, None) for nn in nonneg]
    result = optimize.minimize(
        objective, np.zeros(k + 1), jac=True, method="L-BFGS-B", bounds=bounds
    )
    return float(result.x[0]), np.asarray(result.x[1:], dtype=np.float64)


def fit_calibrator(
    rows: npt.ArrayLike,
    no_purchase: npt.ArrayLike,
    user_ids: Sequence[str],
    *,
    min_pairs: int = 200,
    l2: float = 1e-3,
) -> Calibrator | None:
    """Fit on the pairs outside the hash holdout, judge both scores on the holdout.

    ``rows`` are :func:`feature_row` values, ``no_purchase`` the matured outcomes. None when
    there are fewer than ``min_pairs`` pairs or either side lacks one of the outcomes.
    """
    f = np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURES))
    y = np.asarray(no_purchase, dtype=bool)
    if f.shape[0] != y.size or y.size != len(user_ids):
        raise ValueError("rows, outcomes and user ids must have the same length")
    if y.size < min_pairs:
        return None
    held = np.array([in_holdout(u) for u in user_ids], dtype=bool)
    fit_y, test_y = y[~held], y[held]
    if not (0 < fit_y.sum() < fit_y.size and 0 < test_y.sum() < test_y.size):
        return None
    mean = f[~held].mean(axis=0)
    scale = f[~held].std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    nonneg = [grows for _, grows in FEATURES]
    intercept, weights = _fit_logistic(
        (f[~held] - mean) / scale, fit_y.astype(np.float64), nonneg, l2
    )
    cal = Calibrator(
        intercept=intercept,
        weights=tuple(float(w) for w in weights),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        auc_model=0.0,
        auc_calibrated=0.0,
        pairs=int(y.size),
    )
    return Calibrator(
        **{
            **asdict(cal),
            "auc_model": auc(f[held, 0], test_y),
            "auc_calibrated": auc(cal.risks(f[held]), test_y),
        }
    )
