"""Online embedding profiles: a time-decayed mean vector and a handful of interest vectors.

Both estimators are keyed on event time ``ts`` (ms) rather than arrival order. The state is
kept at a reference time ``T`` = the latest ``ts`` seen. A newer event first decays the state
to its own time; an older (out-of-order) event is decayed to ``T`` instead, so replays and
late events give the same result as in-order delivery. Decay factors are always
``2^(-Δ/h) <= 1``: nothing can overflow however far apart events are, at worst an old
contribution underflows to 0, which is what fifty half-lives mean anyway.

Math is float64; ``to_dict`` writes vectors as base64 float32 unless told otherwise (the
stored formats are in ``profiles/embedding/codec.py``).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

__all__ = ["DecayedMean", "Interest", "Interests"]


def _decay(dt_ms: int, half_life_ms: float) -> float:
    return math.exp2(-dt_ms / half_life_ms)


def _norm(v: np.ndarray) -> float:
    # Decayed sums can sit near 1e-160, where squaring underflows and np.linalg.norm says 0.
    scale = float(np.max(np.abs(v))) if v.size else 0.0
    if scale == 0.0:
        return 0.0
    return scale * float(np.linalg.norm(v / scale))


def _unit(vec: np.ndarray | Sequence[float]) -> np.ndarray:
    v = np.asarray(vec, dtype=np.float64)
    if v.ndim != 1 or not np.isfinite(v).all():
        raise ValueError("vector must be 1-D and finite")
    norm = _norm(v)
    if norm == 0.0:
        raise ValueError("vector must be non-zero")
    return v / norm


def _norms(m: np.ndarray) -> np.ndarray:
    """Row norms of ``m`` as :func:`_norm` computes them (scaled, so tiny rows keep theirs)."""
    scale = np.abs(m).max(axis=1) if m.shape[1] else np.zeros(m.shape[0])
    safe = np.where(scale > 0.0, scale, 1.0)
    return np.where(scale > 0.0, scale * np.linalg.norm(m / safe[:, None], axis=1), 0.0)


def _units(vectors: np.ndarray | Sequence[Any], dim: int | None) -> np.ndarray:
    """Rows of ``vectors`` normalised (as :func:`_unit` each), checked before any state moves."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or not np.isfinite(v).all():
        raise ValueError("vectors must be 2-D and finite")
    if dim is not None and v.shape[0] and v.shape[1] != dim:
        raise ValueError(f"vector has dim {v.shape[1]}, profile has {dim}")
    norms = _norms(v)
    if not (norms > 0.0).all():
        raise ValueError("vector must be non-zero")
    units: np.ndarray = v / norms[:, None]
    return units


def _check_weights(weights: np.ndarray | Sequence[float], n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not (np.isfinite(w) & (w >= 0.0)).all():
        raise ValueError(f"weights must be {n} finite values >= 0")
    return w


def _check_times(timestamps: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    ts = np.asarray(timestamps, dtype=np.int64)
    if ts.shape != (n,):
        raise ValueError(f"{n} vectors need {n} timestamps")
    return ts


def _check_tags(tags: Sequence[Sequence[tuple[str, float]]] | None, n: int) -> list[Any]:
    """Per-event tag lists (checked: ``_add_tags`` must not raise halfway through a batch)."""
    tag_lists: list[Any] = [()] * n if tags is None else list(tags)
    if len(tag_lists) != n:
        raise ValueError(f"{n} vectors need {n} tag lists")
    for event_tags in tag_lists:
        for _, tag_weight in event_tags:
            _check_weight(tag_weight)
    return tag_lists


def _check_weight(weight: float) -> float:
    w = float(weight)
    if not (math.isfinite(w) and w >= 0.0):
        raise ValueError(f"weight must be finite and >= 0, got {weight!r}")
    return w


def _check_half_life(half_life_ms: float) -> float:
    h = float(half_life_ms)
    if not (math.isfinite(h) and h > 0.0):
        raise ValueError(f"half_life_ms must be finite and > 0, got {half_life_ms!r}")
    return h


def encode_vec(v: np.ndarray) -> str:
    """A vector as JSON: base64 of its float32 bytes (the original ``f32`` layout)."""
    return base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")


def decode_vec(s: Any) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").astype(np.float64)


#: How ``to_dict`` writes a vector into the dict / ``from_dict`` reads it back (the stored
#: formats of ``profiles/embedding/codec.py`` put a row number there instead).
VecOut = Callable[[np.ndarray], Any]
VecIn = Callable[[Any], np.ndarray]


#: Below this norm a decayed interest nears underflow: checked for vanishing, read afresh.
_NEAR_ZERO = 1e-280

#: Below this a decayed sum has gone subnormal (its direction is rounding noise): vanished.
_VANISHED = 1e-290


def _unit32(s: np.ndarray) -> np.ndarray | None:
    norm = _norm(s)
    if not norm > _VANISHED:
        return None
    return (s / norm).astype(np.float32)


class DecayedMean:
    """Time-decayed weighted mean direction of event vectors.

    Keeps ``S = Σ w·2^{-(T-t)/h}·v`` and ``Z = Σ w·2^{-(T-t)/h}`` at ``T`` = latest ts.
    Use one instance with a long half-life (days) for the long-term taste vector and another
    with a short one (e.g. 30 minutes) for the session / short-term vector: same maths,
    only the memory differs.

    >>> m = DecayedMean(half_life_ms=1000)
    >>> m.vector() is None
    True
    >>> m.learn_one([1.0, 0.0], 1.0, ts=0)
    >>> m.learn_one([0.0, 1.0], 1.0, ts=1000)   # one half-life later: x counts half
    >>> [round(float(x), 4) for x in m.vector()]
    [0.4472, 0.8944]
    >>> m.weight(), m.weight(ts=2000)
    (1.5, 0.75)
    >>> m.learn_one([1.0, 0.0], 1.0, ts=0)      # late event, decayed to T, not the state
    >>> [round(float(x), 4) for x in m.vector()]
    [0.7071, 0.7071]
    >>> DecayedMean.from_dict(m.to_dict()).to_dict() == m.to_dict()
    True
    """

    def __init__(self, half_life_ms: float) -> None:
        self.half_life_ms = _check_half_life(half_life_ms)
        self.ts: int | None = None
        self.total = 0.0
        self._sum: np.ndarray | None = None

    def learn_one(self, vec: np.ndarray | Sequence[float], weight: float, ts: int) -> None:
        """Add one event: ``vec`` (normalised here), ``weight`` >= 0, event time ``ts`` ms."""
        u = _unit(vec)
        w = _check_weight(weight)
        if self._sum is None:
            self._sum = np.zeros_like(u)
            self.ts = ts
        elif u.shape != self._sum.shape:
            raise ValueError(f"vector has dim {u.shape[0]}, profile has {self._sum.shape[0]}")
        assert self.ts is not None
        if ts > self.ts:
            f = _decay(ts - self.ts, self.half_life_ms)
            self._sum *= f
            self.total *= f
            self.ts = ts
            factor = 1.0
        else:
            factor = _decay(self.ts - ts, self.half_life_ms)
        self._sum += (w * factor) * u
        self.total += w * factor

    def learn_many(
        self,
        vectors: np.ndarray | Sequence[Sequence[float]],
        weights: np.ndarray | Sequence[float],
        timestamps: Sequence[int],
    ) -> None:
        """Add events in one step: the state :meth:`learn_one` reaches over them in order.

        The state at ``T`` is a sum, so order does not matter: the new ``T`` is the latest
        time seen, the old state is decayed to it once and each event by its own factor
        (one matrix-vector product). Invalid input raises before anything changes.
        """
        u = _units(vectors, None if self._sum is None else self._sum.shape[0])
        w = _check_weights(weights, u.shape[0])
        self._learn_units(u, w, _check_times(timestamps, u.shape[0]))

    def _learn_units(self, u: np.ndarray, w: np.ndarray, ts: np.ndarray) -> None:
        """:meth:`learn_many` on checked input: unit rows ``u``, weights, int64 times."""
        if not u.shape[0]:
            return
        start = int(ts[0]) if self.ts is None else self.ts
        latest = max(start, int(ts.max()))
        f = w * np.exp2((ts - latest) / self.half_life_ms)
        if self._sum is None:
            self._sum = f @ u
            self.total = float(f.sum())
        else:
            old = _decay(latest - start, self.half_life_ms)
            self._sum = self._sum * old + f @ u
            self.total = self.total * old + float(f.sum())
        self.ts = latest

    def vector(self) -> np.ndarray | None:
        """Unit float32 mean direction, or None before any (non-vanished) event."""
        return None if self._sum is None else _unit32(self._sum)

    def weight(self, ts: int | None = None) -> float:
        """Decayed total weight at ``ts`` (default ``T``); times before ``T`` read as ``T``."""
        if self.ts is None:
            return 0.0
        if ts is None or ts <= self.ts:
            return self.total
        return self.total * _decay(ts - self.ts, self.half_life_ms)

    def to_dict(self, vec: VecOut = encode_vec) -> dict[str, Any]:
        return {
            "half_life_ms": self.half_life_ms,
            "ts": self.ts,
            "total": self.total,
            "sum": None if self._sum is None else vec(self._sum),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], vec: VecIn = decode_vec) -> DecayedMean:
        m = cls(float(data["half_life_ms"]))
        m.ts = None if data["ts"] is None else int(data["ts"])
        m.total = float(data["total"])
        m._sum = None if data["sum"] is None else vec(data["sum"])
        return m

    def __repr__(self) -> str:
        return (
            f"DecayedMean(half_life_ms={self.half_life_ms:g}, ts={self.ts}, total={self.total:.4g})"
        )


class Interest(NamedTuple):
    """One interest as read out: unit centroid, weight at the read time, top tags.

    ``events`` counts the events that joined it (``count`` would shadow ``tuple.count``).
    """

    vector: np.ndarray
    weight: float
    tags: list[tuple[str, float]]
    events: int
    last_ts: int


@dataclass
class _Cluster:
    sum: np.ndarray
    total: float
    count: int
    last_ts: int
    tags: dict[str, float] = field(default_factory=dict)

    def scale(self, f: float) -> None:
        self.sum *= f
        self.total *= f
        for tag in self.tags:
            self.tags[tag] *= f

    def centroid(self) -> np.ndarray | None:
        norm = _norm(self.sum)
        return self.sum / norm if norm > 0.0 else None


class Interests:
    """Up to ``k_max`` interest vectors per user, clustered online (PinnerSage-like).

    Each interest has a decayed weight, a decayed-mean centroid, an event count, the latest
    event time and its top ``max_tags`` tags by decayed weight. An event joins the nearest
    interest when their cosine is at least ``join_threshold``, otherwise it founds a new
    one; past ``k_max`` the interest with the lowest decayed weight is dropped. When a join
    pulls a centroid within ``join_threshold`` of another, the two merge, so slots are not
    wasted on near-duplicates. Tags outside the top ``max_tags`` are forgotten (a bounded,
    approximate top-k).

    >>> it = Interests(half_life_ms=1000, k_max=2, join_threshold=0.5)
    >>> it.learn_one([1.0, 0.0, 0.0], 1.0, ts=0, tags=[("shoes", 1.0)])
    >>> it.learn_one([0.9, 0.1, 0.0], 1.0, ts=0, tags=[("shoes", 1.0), ("red", 0.5)])
    >>> it.learn_one([0.0, 1.0, 0.0], 0.5, ts=1000, tags=[("tea", 1.0)])
    >>> [(i.weight, i.events, i.tags) for i in it.interests()]   # the pair has halved
    [(1.0, 2, [('shoes', 1.0), ('red', 0.25)]), (0.5, 1, [('tea', 0.5)])]
    >>> it.learn_one([0.0, 0.0, 1.0], 3.0, ts=1000)   # a third interest: the weakest goes
    >>> [(i.weight, i.events) for i in it.interests()]
    [(3.0, 1), (1.0, 2)]
    """

    def __init__(
        self, half_life_ms: float, k_max: int = 5, join_threshold: float = 0.5, max_tags: int = 5
    ) -> None:
        if k_max < 1 or max_tags < 0:
            raise ValueError("k_max must be >= 1 and max_tags >= 0")
        if not -1.0 <= join_threshold <= 1.0:
            raise ValueError(f"join_threshold is a cosine in [-1, 1], got {join_threshold}")
        self.half_life_ms = _check_half_life(half_life_ms)
        self.k_max = k_max
        self.join_threshold = float(join_threshold)
        self.max_tags = max_tags
        self.ts: int | None = None
        self._clusters: list[_Cluster] = []

    def __len__(self) -> int:
        return len(self._clusters)

    def learn_one(
        self,
        vec: np.ndarray | Sequence[float],
        weight: float,
        ts: int,
        tags: Sequence[tuple[str, float]] = (),
    ) -> None:
        """Add one event with its tags (``(tag, tag_weight >= 0)`` pairs)."""
        u = _unit(vec)
        if self._clusters and u.shape != self._clusters[0].sum.shape:
            raise ValueError(
                f"vector has dim {u.shape[0]}, profile has {self._clusters[0].sum.shape[0]}"
            )
        w = _check_weight(weight) * self._advance(ts)
        # A weightless event (or one decayed to nothing) would found an interest with no
        # direction; it only moves the clock.
        if w == 0.0:
            return
        best, best_cos = -1, -math.inf
        for i, cluster in enumerate(self._clusters):
            c = cluster.centroid()
            if c is not None and (cos := float(c @ u)) > best_cos:
                best, best_cos = i, cos
        if best >= 0 and best_cos >= self.join_threshold:
            cluster = self._clusters[best]
            cluster.sum += w * u
            cluster.total += w
            cluster.count += 1
            cluster.last_ts = max(cluster.last_ts, ts)
            self._add_tags(cluster, tags, w)
            self._merge_into(best)
        else:
            cluster = _Cluster(sum=w * u, total=w, count=1, last_ts=ts)
            self._add_tags(cluster, tags, w)
            self._clusters.append(cluster)
            if len(self._clusters) > self.k_max:
                weakest = min(
                    range(len(self._clusters)),
                    key=lambda i: (self._clusters[i].total, self._clusters[i].last_ts),
                )
                del self._clusters[weakest]

    def learn_many(
        self,
        vectors: np.ndarray | Sequence[Sequence[float]],
        weights: np.ndarray | Sequence[float],
        timestamps: Sequence[int],
        tags: Sequence[Sequence[tuple[str, float]]] | None = None,
    ) -> None:
        """Add events in order: the state :meth:`learn_one` reaches over them one by one.

        Clustering is sequential by nature (each event joins the interest nearest to it
        *after* the events before it), so this is the same loop with the per-event work cut:
        the vectors are normalised in one step, the sums sit in one preallocated matrix
        (decayed with one multiply), and each interest keeps its unit centroid, recomputed
        only when its sum changes (decay moves no direction), so an event costs one
        matrix-vector product. Invalid input raises before anything changes.
        """
        dim = self._clusters[0].sum.shape[0] if self._clusters else None
        units = _units(vectors, dim)
        n = units.shape[0]
        w = _check_weights(weights, n)
        self._learn_units(units, w, _check_times(timestamps, n), _check_tags(tags, n))

    def _learn_units(
        self, units: np.ndarray, weights: np.ndarray, timestamps: np.ndarray, tag_lists: list[Any]
    ) -> None:
        """:meth:`learn_many` on checked input (unit rows, weights, int64 times, tag lists)."""
        n, d = units.shape
        if not n:
            return
        w_all: list[float] = weights.tolist()
        times: list[int] = timestamps.tolist()
        h, thr = self.half_life_ms, self.join_threshold
        clusters = self._clusters
        k = len(clusters)
        sums = np.empty((self.k_max + 1, d))
        cents = np.empty((self.k_max + 1, d))
        # Each interest's norm (0: no direction), kept through decays: a vanishing sum shows
        # here first, so the exact (and dearer) checks run only near underflow.
        norms: list[float] = []
        for i, c in enumerate(clusters):
            sums[i] = c.sum
            norms.append(self._refresh(sums, cents, i))
        for i in range(n):
            ts = times[i]
            if self.ts is None:
                self.ts, factor = ts, 1.0
            elif ts <= self.ts:
                factor = _decay(self.ts - ts, h)
            else:
                f = _decay(ts - self.ts, h)
                self.ts, factor = ts, 1.0
                if k:
                    sums[:k] *= f
                    for c in clusters:
                        c.total *= f
                        for tag in c.tags:
                            c.tags[tag] *= f
                    norms = [x * f for x in norms]
                    if min(norms) < _NEAR_ZERO:
                        k = self._vanish(sums, cents, norms, k)
            w = w_all[i] * factor
            if w == 0.0:
                continue
            u = units[i]
            best, best_cos = -1, -math.inf
            if k:
                for j, cos in enumerate((cents[:k] @ u).tolist()):
                    if norms[j] > 0.0 and cos > best_cos:
                        best, best_cos = j, cos
            if best >= 0 and best_cos >= thr:
                cluster = clusters[best]
                sums[best] += w * u
                cluster.total += w
                cluster.count += 1
                cluster.last_ts = max(cluster.last_ts, ts)
                self._add_tags(cluster, tag_lists[i], w)
                norms[best] = self._refresh(sums, cents, best)
                k = self._merge_rows(sums, cents, norms, best, k)
            else:
                cluster = _Cluster(sum=sums[k], total=w, count=1, last_ts=ts)
                self._add_tags(cluster, tag_lists[i], w)
                np.multiply(u, w, out=sums[k])
                clusters.append(cluster)
                norms.append(self._refresh(sums, cents, k))
                k += 1
                if k > self.k_max:
                    weakest = min(range(k), key=lambda j: (clusters[j].total, clusters[j].last_ts))
                    k = self._drop(sums, cents, norms, weakest, k)
        for j, c in enumerate(clusters):
            c.sum = sums[j].copy()

    def _vanish(self, sums: np.ndarray, cents: np.ndarray, norms: list[float], k: int) -> int:
        """As :meth:`_advance`: drop interests decayed to nothing; re-read tiny ones."""
        alive: list[bool] = np.any(sums[:k], axis=1).tolist()
        clusters = self._clusters
        for j in reversed(range(k)):
            if not (alive[j] and clusters[j].total > 0.0):
                k = self._drop(sums, cents, norms, j, k)
        for j in range(k):  # near underflow a sum's direction is rounding noise: read it anew
            if norms[j] < _NEAR_ZERO:
                norms[j] = self._refresh(sums, cents, j)
        return k

    @staticmethod
    def _refresh(sums: np.ndarray, cents: np.ndarray, j: int) -> float:
        """Row ``j``'s unit centroid from its sum; its norm (0: the sum has no direction)."""
        row = sums[j]
        sq = float(row @ row)
        norm = math.sqrt(sq) if 1e-300 < sq < 1e300 else _norm(row)
        if norm > 0.0:
            np.divide(row, norm, out=cents[j])
        return norm

    def _drop(self, sums: np.ndarray, cents: np.ndarray, norms: list[float], j: int, k: int) -> int:
        """Delete interest ``j`` (rows keep their order); return the new count."""
        sums[j : k - 1] = sums[j + 1 : k]
        cents[j : k - 1] = cents[j + 1 : k]
        del self._clusters[j]
        del norms[j]
        return k - 1

    def _merge_rows(
        self, sums: np.ndarray, cents: np.ndarray, norms: list[float], keep: int, k: int
    ) -> int:
        """:meth:`_merge_into` on the matrix rows; return the new count."""
        while norms[keep] > 0.0:
            cos = (cents[:k] @ cents[keep]).tolist()
            near = next(
                (
                    j
                    for j in range(k)
                    if j != keep and norms[j] > 0.0 and cos[j] >= self.join_threshold
                ),
                None,
            )
            if near is None:
                break
            sums[keep] += sums[near]
            self._absorb(self._clusters[keep], self._clusters[near])
            norms[keep] = self._refresh(sums, cents, keep)
            k = self._drop(sums, cents, norms, near, k)
            if near < keep:
                keep -= 1
        return k

    def interests(self, ts: int | None = None) -> list[Interest]:
        """Interests by weight (at ``ts``, default ``T``) descending."""
        f = 1.0
        if ts is not None and self.ts is not None and ts > self.ts:
            f = _decay(ts - self.ts, self.half_life_ms)
        out = []
        for cluster in self._clusters:
            vec = _unit32(cluster.sum)
            if vec is None:
                continue
            tags = sorted(
                ((t, tw * f) for t, tw in cluster.tags.items()), key=lambda kv: (-kv[1], kv[0])
            )
            out.append(Interest(vec, cluster.total * f, tags, cluster.count, cluster.last_ts))
        out.sort(key=lambda i: (-i.weight, -i.last_ts))
        return out

    def _advance(self, ts: int) -> float:
        """Move ``T`` forward to ``ts`` if later; return the factor for an event at ``ts``."""
        if self.ts is None:
            self.ts = ts
            return 1.0
        if ts <= self.ts:
            return _decay(self.ts - ts, self.half_life_ms)
        f = _decay(ts - self.ts, self.half_life_ms)
        for cluster in self._clusters:
            cluster.scale(f)
        # Interests decayed past the smallest double have no direction left: gone.
        self._clusters = [c for c in self._clusters if c.total > 0.0 and c.sum.any()]
        self.ts = ts
        return 1.0

    def _add_tags(self, cluster: _Cluster, tags: Sequence[tuple[str, float]], w: float) -> None:
        for tag, tag_weight in tags:
            tw = _check_weight(tag_weight) * w
            if tw > 0.0:
                cluster.tags[tag] = cluster.tags.get(tag, 0.0) + tw
        self._prune_tags(cluster)

    def _absorb(self, target: _Cluster, other: _Cluster) -> None:
        """Fold ``other``'s weight, count, time and tags into ``target`` (its vector sum is
        the caller's: the batch path keeps sums in one matrix)."""
        target.total += other.total
        target.count += other.count
        target.last_ts = max(target.last_ts, other.last_ts)
        for tag, tw in other.tags.items():
            target.tags[tag] = target.tags.get(tag, 0.0) + tw
        self._prune_tags(target)

    def _prune_tags(self, cluster: _Cluster) -> None:
        if len(cluster.tags) > self.max_tags:
            top = sorted(cluster.tags.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_tags]
            cluster.tags = dict(top)

    def _merge_into(self, keep: int) -> None:
        while True:
            target = self._clusters[keep]
            c = target.centroid()
            if c is None:
                return
            near = next(
                (
                    j
                    for j, other in enumerate(self._clusters)
                    if j != keep
                    and (oc := other.centroid()) is not None
                    and float(oc @ c) >= self.join_threshold
                ),
                None,
            )
            if near is None:
                return
            other = self._clusters[near]
            target.sum += other.sum
            self._absorb(target, other)
            del self._clusters[near]
            if near < keep:
                keep -= 1

    def to_dict(self, vec: VecOut = encode_vec) -> dict[str, Any]:
        return {
            "half_life_ms": self.half_life_ms,
            "k_max": self.k_max,
            "join_threshold": self.join_threshold,
            "max_tags": self.max_tags,
            "ts": self.ts,
            "clusters": [
                {
                    "sum": vec(c.sum),
                    "total": c.total,
                    "count": c.count,
                    "last_ts": c.last_ts,
                    "tags": [[t, tw] for t, tw in c.tags.items()],
                }
                for c in self._clusters
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], vec: VecIn = decode_vec) -> Interests:
        it = cls(
            float(data["half_life_ms"]),
            k_max=int(data["k_max"]),
            join_threshold=float(data["join_threshold"]),
            max_tags=int(data["max_tags"]),
        )
        it.ts = None if data["ts"] is None else int(data["ts"])
        it._clusters = [
            _Cluster(
                sum=vec(c["sum"]),
                total=float(c["total"]),
                count=int(c["count"]),
                last_ts=int(c["last_ts"]),
                tags={str(t): float(tw) for t, tw in c["tags"]},
            )
            for c in data["clusters"]
        ]
        return it

    def __repr__(self) -> str:
        return f"Interests(k={len(self)}/{self.k_max}, ts={self.ts})"
