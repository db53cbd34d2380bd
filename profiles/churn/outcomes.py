"""Matured outcomes kept by the stream: what the calibrator learns the shop's own data from.

At a refit (as of ``s``) every sampled customer gets a *snapshot*: the calibrator's features
as of ``s`` (:func:`profiles.churn.calibration.feature_row`, with the model just fitted) and
their order count then. At the first refit at or after ``s + H`` the snapshot is *labelled*
from the profile alone, exactly or not at all:

- no order since ``s``: no purchase in ``(s, s + H]``;
- the last purchase at or before ``s + H`` and some order since ``s``: a purchase in the window;
- exactly one order since ``s``, after ``s + H``: none in the window;
- two or more since ``s``, the last after ``s + H``: unknown (the profile keeps no purchase
  history), and the snapshot is dropped rather than guessed.

Nothing later than ``s + H`` decides a label, so no outcome leaks into its own features. A
snapshot is taken every ``H / 3`` of event time and a user keeps :data:`KEEP` of them (about
three horizons), in their own profile hash (so erasure removes them with the profile).

>>> from profiles.churn.bgnbd import BGNBDParams
>>> p = BGNBDParams(0.6, 50.0, 0.8, 1.2, "mbgnbd")
>>> b = Behaviour.read({"first_ts": 0, "last_ts": 40 * DAY_MS, "orders": 2,
...     "first_purchase_ts": 0, "last_purchase_ts": 40 * DAY_MS, "spend_cents": {"USD": 4000}})
>>> kept = record([], b, 50 * DAY_MS, p, 30.0)
>>> len(kept), kept[0][:3]
(1, [4320000000, 2, -1])
>>> labelled = record(kept, b, 81 * DAY_MS, p, 30.0)  # no order since day 50: matured, True
>>> [e[2] for e in labelled]
[1, -1]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from profiles.churn.bgnbd import BGNBDParams
from profiles.churn.calibration import FEATURES, feature_row
from profiles.churn.features import DAY_MS, Behaviour, customer_summary
from profiles.churn.risk import p_no_purchase

__all__ = ["KEEP", "label", "record", "training_rows"]

#: Snapshots kept per user (one every H / 3: about three horizons).
KEEP = 9
_UNKNOWN = -1

# An entry: [as_of_ms, orders_then, label (-1 until matured, then 0/1: no purchase), *features]
Entry = list[Any]


def _snapshot(b: Behaviour, as_of_ms: int, params: BGNBDParams, horizon: float) -> Entry | None:
    summary = customer_summary(b, as_of_ms)
    if summary is None or b.last_ts is None:
        return None
    x, t_x, T = summary
    gap = max(as_of_ms - b.last_ts, 0) / DAY_MS
    p = p_no_purchase(params, x, t_x, T, horizon)
    return [as_of_ms, b.orders, _UNKNOWN, *feature_row(p, T - t_x, x, T, gap, b.order_value)]


def label(entry: Entry, b: Behaviour, horizon: float) -> int | None:
    """1: no purchase in ``(s, s + H]``, 0: a purchase, None: unknown (see the module)."""
    s, then = int(entry[0]), int(entry[1])
    since = b.orders - then
    if since <= 0:
        return 1
    end = s + horizon * DAY_MS
    if b.last_purchase_ts is not None and b.last_purchase_ts <= end:
        return 0
    return 1 if since == 1 else None


def _valid(entry: Any) -> bool:
    """Stored entries are read back from Redis: anything odd is dropped, never trusted."""
    return (
        isinstance(entry, list)
        and len(entry) == 3 + len(FEATURES)
        and all(isinstance(v, int | float) and math.isfinite(v) for v in entry)
        and entry[2] in (_UNKNOWN, 0, 1)
    )


def record(
    entries: Iterable[Any], b: Behaviour, now_ms: int, params: BGNBDParams, horizon: float
) -> list[Entry]:
    """A user's snapshots after a refit as of ``now_ms``: matured ones labelled (or dropped),
    a new snapshot if the last is ``H / 3`` old, the :data:`KEEP` newest kept."""
    out: list[Entry] = []
    for entry in entries:
        if not _valid(entry) or entry[0] > now_ms:
            continue
        if entry[2] == _UNKNOWN and entry[0] + horizon * DAY_MS <= now_ms:
            found = label(entry, b, horizon)
            if found is None:
                continue
            entry = [entry[0], entry[1], found, *entry[3:]]
        out.append(entry)
    out.sort(key=lambda e: e[0])
    if not out or now_ms - out[-1][0] >= horizon / 3 * DAY_MS:
        new = _snapshot(b, now_ms, params, horizon)
        if new is not None:
            out.append(new)
    return out[-KEEP:]


def training_rows(
    users: Iterable[tuple[str, Sequence[Entry]]],
) -> tuple[list[list[float]], list[bool], list[str]]:
    """Labelled pairs for :func:`profiles.churn.calibration.fit_calibrator`, each named by its
    user (so the holdout split keeps all of a user's pairs on one side)."""
    rows: list[list[float]] = []
    outcomes: list[bool] = []
    ids: list[str] = []
    for user, entries in users:
        for entry in entries:
            if _valid(entry) and entry[2] != _UNKNOWN:
                rows.append([float(v) for v in entry[3:]])
                outcomes.append(entry[2] == 1)
                ids.append(user)
    return rows, outcomes, ids
