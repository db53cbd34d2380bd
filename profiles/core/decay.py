"""Anchored decay by event time, shared by tag scores and item popularity.

A decayed sum is kept as values anchored at a time ``anchor``: an event of weight ``w`` at
``ts`` adds ``w * 2**((ts - anchor) / h)``, and a read at ``T`` multiplies by
``2**(-(T - anchor) / h)``. Adding touches nothing else and does not depend on arrival order,
so late events are exact. Only the anchor must move now and then, before ``2**x`` overflows.
"""

from __future__ import annotations

#: Move the anchor to the event once it is this many half-lives ahead of it.
REBASE_HALF_LIVES = 400.0


def rebase(anchor: int | None, ts: int, half_life_ms: float) -> tuple[int, float]:
    """The anchor to add an event at ``ts`` against, and the factor the values kept so far must
    be multiplied by to stay right on it (1.0: the anchor did not move).

    >>> rebase(None, 5, 10)
    (5, 1.0)
    >>> rebase(0, 4000, 10)
    (0, 1.0)
    >>> rebase(0, 4010, 10) == (4010, 2.0**-401)
    True
    """
    if anchor is None:
        return ts, 1.0
    age = (ts - anchor) / half_life_ms
    if age > REBASE_HALF_LIVES:
        return ts, 2.0**-age
    return anchor, 1.0
