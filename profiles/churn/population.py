"""Fit the purchase model to the stored profiles: run periodically, not per event.

The parameters describe the whole customer base, so they move slowly; refitting daily (or
hourly) from a scan of the profiles is enough, and every score names the fit it used
(:func:`profiles.churn.bgnbd.model_version`).

>>> from profiles.churn.features import DAY_MS
>>> users = [{"orders": 0, "first_ts": 0, "last_ts": 0},
...          {"orders": 3, "first_ts": 0, "last_ts": 9 * DAY_MS,
...           "first_purchase_ts": DAY_MS, "last_purchase_ts": 9 * DAY_MS}]
>>> x, t_x, T = summaries(users, 11 * DAY_MS)
>>> x.tolist(), t_x.tolist(), T.tolist()
([2.0], [8.0], [10.0])
>>> fit_population(users, 11 * DAY_MS) is None  # fewer than min_customers buyers
True
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from profiles.churn import bgnbd
from profiles.churn.bgnbd import BGNBDParams, FloatArray, Variant
from profiles.churn.features import Behaviour, Stats, customer_summary

__all__ = ["fit_population", "summaries"]


def summaries(
    profiles: Iterable[Stats | Behaviour], as_of_ms: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(x, t_x, T)`` in days of every customer who had bought by ``as_of_ms``.

    Users who never bought are left out (they are not in the BG/NBD population), and so are
    users whose first purchase is after ``as_of_ms`` (not customers yet at that time).
    """
    rows: list[tuple[int, float, float]] = []
    for stats in profiles:
        b = Behaviour.read(stats)
        if b.first_purchase_ts is None or b.first_purchase_ts > as_of_ms:
            continue
        summary = customer_summary(b, as_of_ms)
        if summary is not None:
            rows.append(summary)
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    return table[:, 0].copy(), table[:, 1].copy(), table[:, 2].copy()


def fit_population(
    profiles: Iterable[Stats | Behaviour],
    as_of_ms: int,
    min_customers: int = 50,
    *,
    variant: Variant = "mbgnbd",
    init: BGNBDParams | None = None,
) -> BGNBDParams | None:
    """Maximum-likelihood parameters (days) from the customers as of ``as_of_ms``.

    None when fewer than ``min_customers`` have bought: with a handful of customers the
    estimates are noise, and scores fall back to engagement alone. The MBG/NBD is the default
    because the BG/NBD calls every one-time buyer certainly alive (see
    :mod:`profiles.churn.bgnbd`). Passing the previous fit as ``init`` makes a refit faster.
    """
    x, t_x, T = summaries(profiles, as_of_ms)
    if x.size < max(min_customers, 1):
        return None
    return bgnbd.fit(x, t_x, T, init=init, variant=variant)
