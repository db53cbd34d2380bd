"""Online mini-batch k-means shared by several workers, as sufficient statistics.

Each worker assigns its users' vectors to the nearest centre of the shared :class:`Model` and
accumulates per-centre sums and weights in a :class:`Delta`. Deltas are plain sums against one
model version, so merging the deltas of two workers and applying the result once gives the
same model as one worker applying the delta of all their vectors. :meth:`MiniBatchKMeans.apply`
moves each centre with Sculley's per-centre learning rate (a batch version of it):

    N_j ← (1 − f) · N_j                  (forgetting, once per apply)
    c_j ← c_j + (s_j − n_j · c_j) / (N_j + n_j),    N_j ← N_j + n_j

so a centre is the (exponentially forgotten) mean of every vector ever assigned to it.

Before there are centres, vectors go to a reservoir sample (:meth:`MiniBatchKMeans.seed`); once
enough were seen, k-means++ seeding on the reservoir starts the model. Centres that starve are
re-seeded from the reservoir, far from the others, and segment ids follow the groups across
versions (:func:`profiles.segments.matching.stable_ids`).

>>> rng = np.random.default_rng(0)
>>> X = np.vstack([rng.normal(m, 0.1, size=(50, 2)) for m in (0.0, 5.0)])
>>> km = MiniBatchKMeans(k=2, dim=2, seed_factor=10)
>>> model = km.seed(km.empty(), X)
>>> model.seeded, model.k
(True, 2)
>>> labels, d2 = km.predict(model, X)
>>> bool((labels[:50] == labels[0]).all() and (labels[50:] != labels[0]).all())
True
>>> model = km.apply(model, km.delta(model, X))
>>> sorted(model.centres[:, 0].round().astype(int).tolist()), float(model.counts.sum())
([0, 5], 200.0)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import orjson

from profiles.segments.matching import squared_distances, stable_ids

__all__ = ["Delta", "MiniBatchKMeans", "Model"]

_MAGIC = b"RTPSEG1\n"
_HEADER = struct.Struct("<I")


def _pack(kind: str, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    meta = {
        "kind": kind,
        **header,
        "arrays": [[name, a.dtype.str, list(a.shape)] for name, a in arrays.items()],
    }
    head = orjson.dumps(meta)
    body = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays.values())
    return _MAGIC + _HEADER.pack(len(head)) + head + body


def _unpack(kind: str, blob: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if not blob.startswith(_MAGIC):
        raise ValueError("not a segmentation blob")
    at = len(_MAGIC)
    (size,) = _HEADER.unpack_from(blob, at)
    at += _HEADER.size
    meta = orjson.loads(blob[at : at + size])
    at += size
    if meta.get("kind") != kind:
        raise ValueError(f"expected a {kind} blob, got {meta.get('kind')!r}")
    arrays: dict[str, np.ndarray] = {}
    for name, dtype, shape in meta.pop("arrays"):
        dt = np.dtype(dtype)
        count = math.prod(shape)
        arrays[name] = np.frombuffer(blob, dtype=dt, count=count, offset=at).reshape(shape).copy()
        at += count * dt.itemsize
    if at != len(blob):
        raise ValueError("trailing bytes in segmentation blob")
    return meta, arrays


@dataclass(eq=False)
class Delta:
    """One worker's contribution since its last merge: weighted sums and weights per centre row.

    ``version`` is the model version the vectors were assigned against (None: unknown, never
    treated as stale). Merging is addition, so it is commutative and associative.

    >>> a = Delta(np.ones((2, 3)), np.array([1.0, 0.0]), version=4)
    >>> b = Delta(np.ones((2, 3)), np.array([0.0, 2.0]), version=5)
    >>> m = a.merge(b)
    >>> m.counts.tolist(), m.sums[0].tolist(), m.version
    ([1.0, 2.0], [2.0, 2.0, 2.0], 4)
    >>> Delta.from_bytes(m.to_bytes()).counts.tolist()
    [1.0, 2.0]
    """

    sums: np.ndarray
    counts: np.ndarray
    version: int | None = None

    @classmethod
    def zeros(cls, k: int, dim: int, version: int | None = None) -> Delta:
        return cls(np.zeros((k, dim)), np.zeros(k), version)

    @property
    def weight(self) -> float:
        return float(self.counts.sum())

    def merge(self, other: Delta) -> Delta:
        """The sum of both contributions; the older base version wins (stricter staleness).

        A delta without rows (from before seeding) is neutral, so a worker can keep one
        running delta across the model's seeding.
        """
        if not self.counts.size or not other.counts.size:
            kept = other if not self.counts.size else self
            return Delta(kept.sums.copy(), kept.counts.copy(), kept.version)
        if self.sums.shape != other.sums.shape:
            raise ValueError(f"delta shapes differ: {self.sums.shape} vs {other.sums.shape}")
        versions = [v for v in (self.version, other.version) if v is not None]
        return Delta(
            self.sums + other.sums, self.counts + other.counts, min(versions, default=None)
        )

    def to_bytes(self) -> bytes:
        return _pack(
            "delta",
            {"version": self.version},
            {"sums": self.sums.astype("<f8"), "counts": self.counts.astype("<f8")},
        )

    @classmethod
    def from_bytes(cls, blob: bytes) -> Delta:
        meta, arrays = _unpack("delta", blob)
        return cls(arrays["sums"], arrays["counts"], meta["version"])


@dataclass(eq=False)
class Model:
    """The shared, versioned state of the segmentation.

    ``centres`` (k × D), ``counts`` (per-centre weight, forgotten by the forgetting factor) and
    ``ids`` (stable segment id of each row) are empty until ``seeded``. ``reservoir`` holds a
    uniform sample (float32) of the vectors offered to :meth:`MiniBatchKMeans.seed`, ``seen``
    counts them; ``born`` is the version at which each row was last (re)seeded, so a delta
    computed before that does not pull the new centre; ``total`` is all weight ever applied
    (never forgotten); ``next_id`` is the next fresh segment id.
    """

    version: int
    centres: np.ndarray
    counts: np.ndarray
    ids: list[int]
    seeded: bool
    reservoir: np.ndarray
    seen: int = 0
    next_id: int = 0
    born: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    total: float = 0.0

    @property
    def k(self) -> int:
        return int(self.centres.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centres.shape[1])

    def to_bytes(self) -> bytes:
        header = {
            "version": self.version,
            "ids": self.ids,
            "seeded": self.seeded,
            "seen": self.seen,
            "next_id": self.next_id,
            "total": self.total,
        }
        arrays = {
            "centres": self.centres.astype("<f8"),
            "counts": self.counts.astype("<f8"),
            "born": self.born.astype("<i8"),
            # float32: the sample only ever seeds centres, and it is most of the blob.
            "reservoir": self.reservoir.astype("<f4"),
        }
        return _pack("model", header, arrays)

    @classmethod
    def from_bytes(cls, blob: bytes) -> Model:
        meta, arrays = _unpack("model", blob)
        return cls(
            version=int(meta["version"]),
            centres=arrays["centres"],
            counts=arrays["counts"],
            ids=[int(i) for i in meta["ids"]],
            seeded=bool(meta["seeded"]),
            reservoir=arrays["reservoir"],
            seen=int(meta["seen"]),
            next_id=int(meta["next_id"]),
            born=arrays["born"],
            total=float(meta["total"]),
        )


def _d2_pick(points: np.ndarray, d2: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Indices drawn with probability ∝ d2 (uniform when every d2 is 0)."""
    total = float(d2.sum())
    if not total > 0.0:
        return rng.integers(points.shape[0], size=size)
    picks = np.searchsorted(np.cumsum(d2), rng.random(size) * total)
    out: np.ndarray = np.minimum(picks, points.shape[0] - 1)
    return out


def _kmeans_pp(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ (Arthur & Vassilvitskii; 2 + log k trials per centre, as scikit-learn)."""
    trials = 2 + int(math.log(k))
    centres = np.empty((k, X.shape[1]))
    first = int(rng.integers(X.shape[0]))
    centres[0] = X[first]
    d2 = squared_distances(X, X[first : first + 1])[:, 0]
    for i in range(1, k):
        candidates = _d2_pick(X, d2, rng, trials)
        # trials × n: each candidate's potential if it were chosen
        pot = np.minimum(d2[None, :], squared_distances(X[candidates], X))
        best = int(np.argmin(pot.sum(axis=1)))
        d2 = pot[best]
        centres[i] = X[candidates[best]]
    return centres


class MiniBatchKMeans:
    """The update rules; all state lives in :class:`Model` and :class:`Delta` (pure methods).

    ``forgetting`` (f) shrinks every centre's weight by (1 − f) at each :meth:`apply`, so old
    vectors fade and centres follow drifting traffic. Seeding waits until ``seed_factor · k``
    vectors were offered, then runs k-means++ and ``lloyd_iters`` Lloyd steps on the reservoir
    (a uniform sample of at most ``reservoir`` of them) ``n_init`` times (default 10, 3 above
    64 centres) and keeps the tightest start. A centre is dead when its weight is below
    ``dead_ratio`` × the largest one once ``warmup`` weight (default ``seed_factor · k``) was
    applied; it is then re-seeded from the reservoir. ``match_threshold`` is passed to
    :func:`~profiles.segments.matching.stable_ids` (None: its default).
    """

    def __init__(
        self,
        k: int,
        dim: int,
        forgetting: float = 0.0,
        reservoir: int = 2000,
        seed: int = 0,
        *,
        seed_factor: int = 10,
        dead_ratio: float = 0.01,
        warmup: float | None = None,
        lloyd_iters: int = 10,
        n_init: int | None = None,
        match_threshold: float | None = None,
    ) -> None:
        if k < 1 or dim < 1:
            raise ValueError("k and dim must be >= 1")
        if not 0.0 <= forgetting < 1.0:
            raise ValueError("forgetting must be in [0, 1)")
        if reservoir < k:
            raise ValueError("the reservoir must hold at least k vectors")
        self.k = k
        self.dim = dim
        self.forgetting = forgetting
        self.reservoir = reservoir
        self.seed_value = seed
        self.seed_factor = seed_factor
        self.dead_ratio = dead_ratio
        self.warmup = float(seed_factor * k) if warmup is None else warmup
        self.lloyd_iters = lloyd_iters
        # Seeding costs ~k² · reservoir · dim per start; with many centres one merged pair of
        # groups is a small share of the segments, so fewer starts do.
        self.n_init = (10 if k <= 64 else 3) if n_init is None else max(1, n_init)
        self.match_threshold = match_threshold

    # ----------------------------------------------------------------- model lifecycle

    def empty(self) -> Model:
        """A model with no centres and an empty reservoir (version 0)."""
        return Model(
            version=0,
            centres=np.zeros((0, self.dim)),
            counts=np.zeros(0),
            ids=[],
            seeded=False,
            reservoir=np.zeros((0, self.dim), dtype=np.float32),
        )

    def _rng(self, model: Model) -> np.random.Generator:
        # Any worker replaying the same merge draws the same numbers.
        return np.random.default_rng([self.seed_value, model.version, model.seen])

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"expected an (n, {self.dim}) array, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("vectors must be finite")
        return X

    def seed(self, model: Model, X: np.ndarray) -> Model:
        """Offer ``X`` to the reservoir; seed the centres once ``seed_factor · k`` were seen.

        Returns a new model (version + 1). The reservoir keeps filling after seeding: it is
        where dead centres are re-seeded from.
        """
        X = self._check(X)
        rng = self._rng(model)
        res = self._sample(model.reservoir, model.seen, X, rng)
        out = replace(model, version=model.version + 1, reservoir=res, seen=model.seen + len(X))
        if model.seeded or out.seen < self.seed_factor * self.k or res.shape[0] < self.k:
            return out
        points = res.astype(np.float64)
        best = np.inf
        for _ in range(self.n_init):
            # Several starts, keep the tightest: one bad start would merge two groups for good
            # (a dead centre is re-seeded, a centre covering two groups never is).
            trial = _kmeans_pp(points, self.k, rng)
            for _ in range(self.lloyd_iters):
                trial = self._lloyd_step(points, trial)
            d2 = squared_distances(points, trial)
            score = float(d2.min(axis=1).sum())
            if score < best:
                best, centres, labels = score, trial, np.argmin(d2, axis=1)
        return replace(
            out,
            centres=centres,
            # The reservoir's vectors never went through a delta: they count as seen here.
            counts=np.bincount(labels, minlength=self.k).astype(np.float64),
            ids=list(range(self.k)),
            next_id=self.k,
            seeded=True,
            born=np.full(self.k, out.version, dtype=np.int64),
        )

    def _sample(
        self, res: np.ndarray, seen: int, X: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Algorithm R over the new rows, vectorised (a later draw of the same slot wins)."""
        size = self.reservoir
        fill = min(max(size - seen, 0), len(X))
        out = np.vstack([res, X[:fill].astype(np.float32)]) if fill else res.copy()
        rest = X[fill:]
        if len(rest):
            positions = seen + fill + np.arange(len(rest))
            slots = rng.integers(0, positions + 1)
            keep = np.flatnonzero(slots < size)
            if len(keep):
                # Reversed so np.unique's first occurrence is the last draw of each slot.
                rev = keep[::-1]
                uniq, first = np.unique(slots[rev], return_index=True)
                out[uniq] = rest[rev[first]].astype(np.float32)
        return out

    def _lloyd_step(self, X: np.ndarray, centres: np.ndarray) -> np.ndarray:
        labels = np.argmin(squared_distances(X, centres), axis=1)
        counts = np.bincount(labels, minlength=len(centres)).astype(np.float64)
        sums = _sum_rows(X, labels, None, len(centres))
        out = centres.copy()
        live = counts > 0
        out[live] = sums[live] / counts[live, None]
        return out

    # ----------------------------------------------------------------- per batch

    def predict(self, model: Model, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centre row of each vector and squared distances to all centres (n × k).

        Before seeding: labels are all -1 and the distance matrix has no columns.
        """
        X = self._check(X)
        if not model.seeded:
            return np.full(len(X), -1, dtype=np.intp), np.zeros((len(X), 0))
        d2 = squared_distances(X, model.centres)
        return np.argmin(d2, axis=1), d2

    def delta(
        self,
        model: Model,
        X: np.ndarray,
        weights: np.ndarray | None = None,
        *,
        labels: np.ndarray | None = None,
    ) -> Delta:
        """Assign each vector to its nearest centre and accumulate (weighted) sums and weights.

        Pass ``labels`` from :meth:`predict` on the same model to skip the second assignment.
        An unseeded model gives an empty delta (0 rows).
        """
        X = self._check(X)
        if not model.seeded:
            return Delta.zeros(0, self.dim, model.version)
        if labels is None:
            labels = np.argmin(squared_distances(X, model.centres), axis=1)
        labels = np.asarray(labels)
        if labels.shape != (len(X),):
            raise ValueError("labels must have one entry per vector")
        w = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (len(X),) or not (np.isfinite(w).all() and (w >= 0).all()):
                raise ValueError("weights must be one finite non-negative value per vector")
        counts = np.bincount(labels, weights=w, minlength=model.k).astype(np.float64)
        return Delta(_sum_rows(X, labels, w, model.k), counts, model.version)

    def apply(self, model: Model, delta: Delta) -> Model:
        """Fold ``delta`` into ``model``: a new model, version + 1, ids re-matched.

        Rows re-seeded after ``delta.version`` ignore the delta's contribution (those vectors
        were assigned to a centre that no longer exists). Dead centres are re-seeded.
        """
        version = model.version + 1
        if not model.seeded:
            return replace(model, version=version)
        if delta.sums.shape != model.centres.shape or delta.counts.shape != (model.k,):
            raise ValueError(
                f"delta shape {delta.sums.shape} does not fit the model's {model.centres.shape}"
            )
        n = delta.counts.astype(np.float64, copy=True)
        sums = delta.sums
        if delta.version is not None:
            stale = model.born > delta.version
            if stale.any():
                n[stale] = 0.0
                sums = sums.copy()
                sums[stale] = 0.0
        weight = model.counts * (1.0 - self.forgetting) + n
        centres = model.centres.copy()
        moved = n > 0
        centres[moved] += (sums[moved] - n[moved, None] * centres[moved]) / weight[moved, None]
        total = model.total + float(n.sum())
        born = model.born.copy()
        self._reseed(model, centres, weight, born, total, version)
        ids = stable_ids(
            model.centres, model.ids, centres, self.match_threshold, next_id=model.next_id
        )
        return replace(
            model,
            version=version,
            centres=centres,
            counts=weight,
            ids=ids,
            next_id=max(model.next_id, max(ids) + 1),
            born=born,
            total=total,
        )

    def _reseed(
        self,
        model: Model,
        centres: np.ndarray,
        weight: np.ndarray,
        born: np.ndarray,
        total: float,
        version: int,
    ) -> None:
        """Move dead centres (in place) to reservoir points drawn ∝ squared distance (k-means++).

        A re-seeded centre gets the smallest live weight, as scikit-learn does, so it is not
        found dead again at the next apply and is not dragged all the way by one batch.
        """
        if total < self.warmup or model.reservoir.shape[0] == 0:
            return
        dead = weight < self.dead_ratio * float(weight.max())
        if not dead.any():
            return
        rng = self._rng(model)
        points = model.reservoir.astype(np.float64)
        live = ~dead
        d2 = squared_distances(points, centres[live]).min(axis=1)
        floor = float(weight[live].min())
        for j in np.flatnonzero(dead):
            if not float(d2.sum()) > 0.0:
                break  # every sampled point already sits on a centre: nothing to gain
            pick = int(_d2_pick(points, d2, rng, 1)[0])
            centres[j] = _local_mean(points, pick, max(1, len(points) // len(centres)))
            weight[j] = floor
            born[j] = version
            d2 = np.minimum(d2, squared_distances(points, centres[j : j + 1])[:, 0])


def _local_mean(points: np.ndarray, at: int, m: int) -> np.ndarray:
    """Mean of the ``m`` points nearest to ``points[at]`` (itself included).

    In high dimension a single point is far from its group's mean (about σ·√D), so a centre
    placed on one point attracts almost nothing and starves again; a local mean sits where the
    group's vectors will pull it anyway.
    """
    d2 = squared_distances(points, points[at : at + 1])[:, 0]
    near = np.argpartition(d2, m - 1)[:m] if m < len(points) else np.arange(len(points))
    out: np.ndarray = points[near].mean(axis=0)
    return out


def _sum_rows(X: np.ndarray, labels: np.ndarray, w: np.ndarray | None, k: int) -> np.ndarray:
    """Per-label sums of (weighted) rows, by sorting once and reducing contiguous runs."""
    sums = np.zeros((k, X.shape[1]))
    if len(X) == 0:
        return sums
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    rows = X[order] if w is None else X[order] * w[order, None]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sums[sorted_labels[starts]] = np.add.reduceat(rows, starts, axis=0)
    return sums
