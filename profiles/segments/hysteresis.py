"""Hysteresis on a user's segment: do not flip between two centres at every event.

A user near the border of two segments would otherwise change segment whenever their vector
jitters, and every change is a marketing event downstream (a new audience, a new campaign).
The user leaves their current segment only for a centre clearly closer than their own.

>>> d = np.array([4.0, 3.8, 9.0])  # squared distances to the centres of segments 10, 11, 12
>>> choose(10, d, [10, 11, 12])         # 3.8 is not below 0.9 × 4.0: stay
10
>>> choose(10, d, [10, 11, 12], margin=0.0)
11
>>> choose(None, d, [10, 11, 12])       # a new user takes the nearest
11
>>> choose(99, d, [10, 11, 12])         # segment 99 no longer exists
11
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["choose", "choose_many"]


def choose(
    current: int | None, distances_row: np.ndarray, ids: Sequence[int], margin: float = 0.1
) -> int:
    """The user's segment id given their distances to every centre (row ``j`` ↔ ``ids[j]``).

    Switch from ``current`` to the nearest centre only when its distance is below
    ``(1 − margin)`` × the distance to ``current``'s centre; keep ``current`` otherwise. With
    the squared distances of :meth:`~profiles.segments.kmeans.MiniBatchKMeans.predict`, the
    margin applies to squared distances. A ``current`` that is None or not among ``ids``
    gives the nearest segment.
    """
    row = np.asarray(distances_row, dtype=np.float64)
    if row.ndim != 1 or row.shape[0] != len(ids) or row.shape[0] == 0:
        raise ValueError(f"need one distance per id (got {row.shape} for {len(ids)} ids)")
    best = int(np.argmin(row))
    if current is None or current == ids[best]:
        return int(ids[best])
    try:
        mine = list(ids).index(current)
    except ValueError:
        return int(ids[best])
    return int(ids[best]) if row[best] < (1.0 - margin) * row[mine] else current


def choose_many(
    current: Sequence[int | None], distances: np.ndarray, ids: Sequence[int], margin: float = 0.1
) -> list[int]:
    """:func:`choose` for each row of ``distances`` (n × k), vectorised.

    >>> choose_many([10, None], np.array([[4.0, 3.8], [1.0, 2.0]]), [10, 11])
    [10, 10]
    """
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != len(current) or d.shape[1] != len(ids) or not len(ids):
        raise ValueError(f"need an (n={len(current)}, k={len(ids)}) array, got {d.shape}")
    id_arr = np.asarray(ids, dtype=np.int64)
    best = np.argmin(d, axis=1)
    out = id_arr[best].copy()
    row_of = {int(i): j for j, i in enumerate(ids)}
    mine = np.array([row_of.get(c, -1) if c is not None else -1 for c in current], dtype=np.intp)
    known = np.flatnonzero(mine >= 0)
    if len(known):
        rows = np.arange(len(current))[known]
        stay = ~(d[rows, best[known]] < (1.0 - margin) * d[rows, mine[known]])
        out[known[stay]] = id_arr[mine[known[stay]]]
    return [int(i) for i in out]
