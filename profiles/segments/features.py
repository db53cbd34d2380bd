"""Clustering features of a user: behaviour statistics next to the long-term embedding.

A user's clustering vector has two blocks:

* the long-term embedding (unit vector, zeros when the user has none yet), and
* a few behaviour statistics (recency, orders, spend, the mix of event kinds, activity),
  standardised with a :class:`Standardizer` shared by all workers.

Each block is scaled to unit expected squared norm before it is weighted, so the weights in
:class:`FeatureConfig` say how much each block contributes to a squared distance, whatever the
embedding dimension or the number of behaviour features.

>>> stats = {"counts": {"click": 3, "purchase": 1}, "orders": 1,
...          "spend_cents": {"USD": 1000}, "last_ts": 0}
>>> dict(zip(BEHAVIOUR_FEATURES, behaviour_vector(stats, as_of_ms=DAY_MS).round(3).tolist()))
... # doctest: +NORMALIZE_WHITESPACE
{'log1p_recency_days': 0.693, 'log1p_orders': 0.693, 'log1p_spend': 4.29,
 'share_click': 0.75, 'share_add_to_cart': 0.0, 'share_purchase': 0.25, 'share_review': 0.0,
 'share_search': 0.0, 'log1p_events': 1.609}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from profiles.core.profile import Profile

__all__ = [
    "BEHAVIOUR_FEATURES",
    "BEHAVIOUR_KINDS",
    "DAY_MS",
    "MAX_RECENCY_DAYS",
    "USD_TO_CNY",
    "FeatureConfig",
    "Standardizer",
    "behaviour_matrix",
    "behaviour_vector",
    "behaviour_vector_of",
    "clustering_vectors",
    "profile_stats",
    "rfm_values",
]

DAY_MS = 86_400_000
#: Fixed conversion for clustering only; segment boundaries need not follow the daily rate.
USD_TO_CNY = 7.2
#: Recency of a user with no event time at all (and the cap for everyone else).
MAX_RECENCY_DAYS = 3650.0
#: The user-facing event kinds whose mix describes how someone shops.
BEHAVIOUR_KINDS: tuple[str, ...] = ("click", "add_to_cart", "purchase", "review", "search")
BEHAVIOUR_FEATURES: tuple[str, ...] = (
    "log1p_recency_days",
    "log1p_orders",
    "log1p_spend",
    *(f"share_{kind}" for kind in BEHAVIOUR_KINDS),
    "log1p_events",
)

#: The fields of :class:`profiles.core.profile.Profile` (and of its stored JSON) that are read here.
_STATS_FIELDS = ("counts", "orders", "spend_cents", "last_ts", "last_purchase_ts")


@dataclass(frozen=True)
class FeatureConfig:
    """Weights of the two blocks of a clustering vector.

    ``clip_sigma`` bounds each standardised behaviour feature: one extreme spender should not
    be able to claim a centre of their own.
    """

    embedding_weight: float = 1.0
    behaviour_weight: float = 0.5
    clip_sigma: float = 4.0


def _spend_cny(spend_cents: Mapping[str, Any]) -> float:
    total = 0.0
    for currency, cents in spend_cents.items():
        rate = USD_TO_CNY if currency == "USD" else 1.0
        total += float(cents) / 100.0 * rate
    return total


def _days_since(ts: Any, as_of_ms: int) -> float:
    if ts is None:
        return MAX_RECENCY_DAYS
    # A clock slightly behind the newest event must not give negative ages.
    return min(max(as_of_ms - int(ts), 0) / DAY_MS, MAX_RECENCY_DAYS)


def rfm_values(stats: Mapping[str, Any], as_of_ms: int) -> dict[str, float]:
    """Recency (days since the last purchase), frequency (orders) and money (CNY).

    Users who never bought get :data:`MAX_RECENCY_DAYS`.

    >>> rfm_values({"orders": 2, "spend_cents": {"CNY": 500, "USD": 100},
    ...             "last_purchase_ts": 0}, as_of_ms=2 * DAY_MS)
    {'recency_days': 2.0, 'frequency': 2.0, 'monetary': 12.2}
    """
    return {
        "recency_days": _days_since(stats.get("last_purchase_ts"), as_of_ms),
        "frequency": float(stats.get("orders", 0)),
        "monetary": round(_spend_cny(stats.get("spend_cents", {})), 6),
    }


def behaviour_vector(stats: Mapping[str, Any], as_of_ms: int) -> np.ndarray:
    """The :data:`BEHAVIOUR_FEATURES` of one user, unstandardised (float64).

    ``stats`` is the behaviour profile as stored (the decoded ``d`` JSON of ``rtp:p:{user}``,
    or :func:`profile_stats` of a :class:`~profiles.core.profile.Profile`); only ``counts``,
    ``orders``, ``spend_cents`` and ``last_ts`` are read, missing ones count as empty.
    Recency is the age of the last event of any kind at ``as_of_ms``.

    >>> behaviour_vector({}, as_of_ms=0).round(2).tolist()
    [8.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    counts: Mapping[str, Any] = stats.get("counts") or {}
    per_kind = [float(counts.get(kind, 0)) for kind in BEHAVIOUR_KINDS]
    events = sum(per_kind)
    shares = [n / events if events > 0 else 0.0 for n in per_kind]
    return np.array(
        [
            math.log1p(_days_since(stats.get("last_ts"), as_of_ms)),
            math.log1p(float(stats.get("orders", 0))),
            math.log1p(_spend_cny(stats.get("spend_cents") or {})),
            *shares,
            math.log1p(events),
        ],
        dtype=np.float64,
    )


def profile_stats(profile: Profile) -> dict[str, Any]:
    """The fields of ``profile`` that the features read, as a mapping (Profile has slots)."""
    return {name: getattr(profile, name) for name in _STATS_FIELDS}


def behaviour_vector_of(profile: Profile, as_of_ms: int) -> np.ndarray:
    """:func:`behaviour_vector` of a :class:`~profiles.core.profile.Profile` dataclass."""
    return behaviour_vector(profile_stats(profile), as_of_ms)


def behaviour_matrix(stats: Iterable[Mapping[str, Any]], as_of_ms: int) -> np.ndarray:
    """One :func:`behaviour_vector` row per user (n × len(BEHAVIOUR_FEATURES))."""
    rows = [behaviour_vector(s, as_of_ms) for s in stats]
    if not rows:
        return np.empty((0, len(BEHAVIOUR_FEATURES)))
    return np.vstack(rows)


class Standardizer:
    """Running per-feature mean and variance that several workers can merge.

    Merging follows Chan, Golub and LeVeque's pairwise update, so learning two halves on two
    workers and merging gives the statistics of one pass over everything.

    >>> a, b, both = Standardizer(2), Standardizer(2), Standardizer(2)
    >>> X = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    >>> a.learn_many(X[:1]); b.learn_many(X[1:]); both.learn_many(X)
    >>> merged = a.merge(b)
    >>> bool(np.allclose(merged.mean, both.mean) and np.allclose(merged.var, both.var))
    True
    >>> merged.transform(np.array([[2.5, 25.0]])).tolist()
    [[0.0, 0.0]]
    """

    __slots__ = ("m2", "mean", "n")

    def __init__(self, dim: int = len(BEHAVIOUR_FEATURES)) -> None:
        self.n = 0.0
        self.mean = np.zeros(dim, dtype=np.float64)
        self.m2 = np.zeros(dim, dtype=np.float64)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def var(self) -> np.ndarray:
        """Population variance per feature (zeros before any data)."""
        return self.m2 / self.n if self.n > 0 else np.zeros_like(self.m2)

    def learn_many(self, X: np.ndarray) -> None:
        """Add the rows of ``X`` (n × dim) to the statistics, in place."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"expected an (n, {self.dim}) array, got shape {X.shape}")
        if X.shape[0] == 0:
            return
        if not np.isfinite(X).all():
            raise ValueError("features must be finite")
        batch = Standardizer(self.dim)
        batch.n = float(X.shape[0])
        batch.mean = X.mean(axis=0)
        batch.m2 = ((X - batch.mean) ** 2).sum(axis=0)
        merged = self.merge(batch)
        self.n, self.mean, self.m2 = merged.n, merged.mean, merged.m2

    def merge(self, other: Standardizer) -> Standardizer:
        """The statistics of both inputs together (a new object; the inputs are unchanged)."""
        if other.dim != self.dim:
            raise ValueError(f"dimension mismatch: {self.dim} vs {other.dim}")
        out = Standardizer(self.dim)
        n = self.n + other.n
        if n == 0:
            return out
        delta = other.mean - self.mean
        out.n = n
        out.mean = self.mean + delta * (other.n / n)
        out.m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        return out

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``(X - mean) / std``; constant features (and an empty standardizer) keep scale 1."""
        X = np.asarray(X, dtype=np.float64)
        std = np.sqrt(self.var)
        scale = np.where(std > 1e-12, std, 1.0)
        out: np.ndarray = (X - self.mean) / scale
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Standardizer:
        mean = np.asarray(data["mean"], dtype=np.float64)
        out = cls(int(mean.shape[0]))
        out.n = float(data["n"])
        out.mean = mean
        out.m2 = np.asarray(data["m2"], dtype=np.float64)
        return out

    def __repr__(self) -> str:
        return f"Standardizer(dim={self.dim}, n={self.n:g})"


def clustering_vectors(
    embeddings: np.ndarray | None,
    behaviour: np.ndarray,
    std: Standardizer,
    cfg: FeatureConfig,
) -> np.ndarray:
    """Concatenate ``[embedding_weight · e, behaviour_weight · z / √m]`` per user.

    ``embeddings`` is n × d with unit rows (zeros where a user has none) or None, in which case
    the vectors are the behaviour block alone (n × m); ``z`` is the standardised behaviour,
    clipped to ± ``cfg.clip_sigma``.

    >>> std = Standardizer(2); std.learn_many(np.array([[0.0, 0.0], [2.0, 4.0]]))
    >>> clustering_vectors(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]]), std,
    ...                    FeatureConfig(behaviour_weight=2 ** 0.5)).round(3).tolist()
    [[1.0, 0.0, 1.0, -1.0]]
    """
    B = np.asarray(behaviour, dtype=np.float64)
    if B.ndim != 2 or B.shape[1] != std.dim:
        raise ValueError(f"behaviour must be (n, {std.dim}), got shape {B.shape}")
    z = np.clip(std.transform(B), -cfg.clip_sigma, cfg.clip_sigma)
    block: np.ndarray = z * (cfg.behaviour_weight / math.sqrt(std.dim))
    if embeddings is None:
        return block
    E = np.asarray(embeddings, dtype=np.float64)
    if E.ndim != 2 or E.shape[0] != B.shape[0]:
        raise ValueError(f"embeddings must be (n={B.shape[0]}, d), got shape {E.shape}")
    out: np.ndarray = np.hstack([E * cfg.embedding_weight, block])
    return out
