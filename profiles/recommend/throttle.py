"""When a user's recommendations are worth recomputing (and announcing).

Recomputing on every event would spend the index on clicks that change nothing and flood
downstream with near-identical lists. A list is refreshed only after a change that matters
(a new purchase: those items must leave the list; or an interest shift: the long-term vector
moved away from where it was at the last recommendation), and at most once per interval per
user. Times are event times, so a replay makes the same decisions as live traffic.

The shift is measured against the vector *at the last recommendation*, not the previous
event, so slow drift accumulates until it crosses the threshold instead of hiding in many
small steps. For the same reason the caller should pass ``purchase=True`` while any purchase
is newer than the last recommendation (e.g. ``last_purchase_ts > last_rec_ts``), not only for
the batch that carried it: a purchase throttled inside the interval is then served by the
next event after it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["interest_shift", "should_recommend"]


def interest_shift(prev: np.ndarray | None, now: np.ndarray | None) -> float:
    """Cosine distance ``1 - cos`` between two long-term vectors, in [0, 2].

    No vector before and one now is a full shift (1.0): the user just became personal.
    No vector now means nothing to recommend from (0.0).

    >>> interest_shift(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    1.0
    >>> interest_shift(np.array([1.0, 0.0]), np.array([2.0, 0.0]))
    0.0
    >>> interest_shift(None, np.array([1.0, 0.0])), interest_shift(np.array([1.0, 0.0]), None)
    (1.0, 0.0)
    """
    if now is None:
        return 0.0
    if prev is None:
        return 1.0
    a = np.asarray(prev, dtype=np.float64)
    b = np.asarray(now, dtype=np.float64)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 1.0
    cos = float(a @ b) / (na * nb)
    return float(min(2.0, max(0.0, 1.0 - cos)))


def should_recommend(
    last_rec_ts: int | None,
    now_ts: int,
    interval_ms: int,
    purchase: bool,
    shift: float,
    threshold: float,
) -> bool:
    """Whether to recompute now: a change that matters, and the interval since the last.

    A user never recommended to gets a first list whatever changed.

    >>> should_recommend(None, 0, 60_000, purchase=False, shift=0.0, threshold=0.1)
    True
    >>> should_recommend(0, 30_000, 60_000, purchase=True, shift=0.0, threshold=0.1)
    False
    >>> should_recommend(0, 60_000, 60_000, purchase=True, shift=0.0, threshold=0.1)
    True
    >>> should_recommend(0, 60_000, 60_000, purchase=False, shift=0.05, threshold=0.1)
    False
    >>> should_recommend(0, 60_000, 60_000, purchase=False, shift=0.2, threshold=0.1)
    True
    """
    if last_rec_ts is None:
        return True
    if not (purchase or shift > threshold):
        return False
    return now_ts - last_rec_ts >= interval_ms
