"""A streaming anomaly score per user: how far this event's behaviour features sit above the
user's usual sessions, in (floored) standard deviations, the largest over the features.

The baseline is the running mean and variance of each feature's peak per session, learned
when a session ends (the next event after a pause), so a burst inside one session is scored
against the user's past sessions and cannot teach itself to look normal.

Our own rather than a shared online model (river's Half-Space Trees): a model shared by a
worker learns in whatever order its partitions arrive, restarts empty and moves with
rebalances, so the same log would not give the same scores live and in replay, and a
redelivered batch would train it twice. This state is the user's own, stored in the
profile and fenced with it, so the score is exactly-once and a replay equals live.

>>> s = new()
>>> quiet = [0.7, 0.7, 0.0, 0.0, None]
>>> for _ in range(6):
...     score(s, quiet)
...     end_session(s)
0.0
0.0
0.0
0.0
0.0
0.0
>>> score(s, quiet)
0.0
>>> round(score(s, [4.0, 4.0, 0.0, 0.0, None]), 2)  # 3.3 above the usual peak, floor 0.5
6.6
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: Features: log1p of clicks/min, events/min, purchases/h, reviews/h, and a purchase's amount.
DIMS = 5
WARMUP = 5  # sessions before scoring (a purchase amount: 3 sessions with one)
WARMUP_AMOUNT = 3
FLOOR = 0.5  # the smallest deviation assumed (log units): a steady user is not a zero-variance one
SPAN = 30  # the running mean becomes an exponential one over about this many sessions

State = dict[str, Any]


def new() -> State:
    return {"n": [0] * DIMS, "m": [0.0] * DIMS, "v": [0.0] * DIMS, "cur": [None] * DIMS}


def score(state: State, x: Sequence[float | None]) -> float:
    """The score of ``x`` against the past sessions (0 while warming up); ``x`` joins the
    current session's peaks."""
    n, m, v, cur = state["n"], state["m"], state["v"], state["cur"]
    worst = 0.0
    for i, value in enumerate(x):
        if value is None:
            continue
        if n[i] >= (WARMUP_AMOUNT if i == DIMS - 1 else WARMUP):
            worst = max(worst, (value - m[i]) / math.sqrt(v[i] + FLOOR * FLOOR))
        cur[i] = value if cur[i] is None else max(cur[i], value)
    return worst


def end_session(state: State) -> None:
    """Learn the ended session's peaks into the baseline."""
    n, m, v, cur = state["n"], state["m"], state["v"], state["cur"]
    for i, value in enumerate(cur):
        if value is None:
            continue
        n[i] += 1
        alpha = 1.0 / min(n[i], SPAN)
        delta = value - m[i]
        m[i] += alpha * delta
        v[i] = (1.0 - alpha) * (v[i] + alpha * delta * delta)
        cur[i] = None
