"""Compact sliding-window counts in event time: three integers per (signal, window).

A counter is ``[bucket, current, previous]``: the count of the window-aligned bucket the
latest event fell in and of the one before it. The count over the last ``window`` at time
``ts`` weights the previous bucket by how much of it the window still covers (the classic
two-bucket estimate: exact while events sit in one bucket, within one bucket's count
otherwise). Counting is in event order, so a replay counts the same.

>>> c = new()
>>> for ts in (0, 10, 20):
...     add(c, ts, 100)
>>> count(c, 20, 100)
3.0
>>> add(c, 150, 100)   # next bucket: half of the previous one is still in the window
>>> count(c, 150, 100)
2.5
>>> add(c, 420, 100)   # two buckets later: the old counts are gone
>>> count(c, 420, 100)
1.0
"""

from __future__ import annotations

Counter = list[int]


def new() -> Counter:
    return [-1, 0, 0]


def add(counter: Counter, ts: int, window: int) -> None:
    """Count one event at ``ts`` (a late one counts in its bucket while that is kept)."""
    bucket = ts // window
    at = counter[0]
    if bucket == at:
        counter[1] += 1
    elif bucket == at + 1:
        counter[:] = [bucket, 1, counter[1]]
    elif bucket > at + 1:
        counter[:] = [bucket, 1, 0]
    elif bucket == at - 1:
        counter[2] += 1
    # older still: outside every window that can matter now


def count(counter: Counter, ts: int, window: int) -> float:
    """Events in ``(ts - window, ts]``, estimated from the two buckets."""
    bucket = ts // window
    at, current, previous = counter
    if bucket == at:
        kept = 1.0 - (ts - bucket * window) / window
        return current + previous * kept
    if bucket == at + 1:
        kept = 1.0 - (ts - bucket * window) / window
        return current * kept
    if bucket < at:  # a late event: read as of the latest bucket's start
        return float(current + previous)
    return 0.0
