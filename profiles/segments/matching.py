"""Stable segment ids: carry ids from an old set of centres over to a new one.

A segment keeps its id while it is the same group: new centres are matched one-to-one to old
ones (Hungarian method on squared distances), and a match that moved further than a threshold
is a new group, so it gets a fresh id.

>>> old = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
>>> new = np.array([[10.2, 0.1], [0.1, 0.0], [50.0, 50.0]])  # two moved a bit, one is new
>>> stable_ids(old, [7, 3, 5], new)
[3, 7, 8]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["default_threshold", "squared_distances", "stable_ids"]


def squared_distances(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """``‖x_i − c_j‖²`` for every row pair (n × k), by the dot-product expansion.

    >>> squared_distances(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 0.0]])).tolist()
    [[0.0], [25.0]]
    """
    xx = np.einsum("ij,ij->i", X, X)
    cc = np.einsum("ij,ij->i", C, C)
    d: np.ndarray = X @ C.T
    d *= -2.0
    d += xx[:, None]
    d += cc[None, :]
    # Cancellation can leave tiny negatives for (near-)identical rows.
    np.maximum(d, 0.0, out=d)
    return d


def default_threshold(centres: np.ndarray) -> float:
    """Half the median distance between distinct centres (inf with fewer than two centres).

    >>> default_threshold(np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]]))
    2.0
    """
    k = centres.shape[0]
    if k < 2:
        return float("inf")
    d = np.sqrt(squared_distances(centres, centres)[np.triu_indices(k, 1)])
    return 0.5 * float(np.median(d))


def stable_ids(
    old_centres: np.ndarray,
    old_ids: Sequence[int],
    new_centres: np.ndarray,
    threshold: float | None = None,
    next_id: int | None = None,
) -> list[int]:
    """The id of each row of ``new_centres``.

    Rows are matched one-to-one with ``old_centres`` minimising the total squared distance,
    first maximising the number of pairs within ``threshold`` (Euclidean; default
    :func:`default_threshold` of the old centres). A row whose match is further than that, or
    that has no match because there are more new centres than old ones, gets a fresh id:
    ``next_id``, ``next_id + 1`` ... where ``next_id`` defaults to ``max(old_ids) + 1``. Ids
    of unmatched old centres are retired.
    """
    old = np.asarray(old_centres, dtype=np.float64)
    new = np.asarray(new_centres, dtype=np.float64)
    if old.shape[0] != len(old_ids):
        raise ValueError(f"{old.shape[0]} old centres but {len(old_ids)} ids")
    fresh = next_id if next_id is not None else max(old_ids, default=-1) + 1
    out = [-1] * new.shape[0]
    if old.shape[0] and new.shape[0]:
        limit = default_threshold(old) if threshold is None else float(threshold)
        limit2 = limit * limit  # inf for a huge threshold, where ** would raise
        d2 = squared_distances(new, old)
        cost = d2
        cap = (min(len(old), len(new)) + 1) * limit2 + 1.0
        if math.isfinite(cap):
            # Gated: every pair beyond the threshold costs the same, more than all valid pairs
            # together, so one far-away (e.g. re-seeded) centre cannot pull the assignment into
            # swapping ids between centres that merely moved a little.
            cost = np.where(d2 <= limit2, d2, cap)
        for r, c in zip(*linear_sum_assignment(cost), strict=True):
            if d2[r, c] <= limit2:
                out[r] = int(old_ids[c])
    for r, got in enumerate(out):
        if got < 0:
            out[r] = fresh
            fresh += 1
    return out
