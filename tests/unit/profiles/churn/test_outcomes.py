"""Matured outcomes: labels are exact or absent, snapshots are spaced and capped, odd stored
entries are dropped."""

from __future__ import annotations

import itertools
from typing import Any

from profiles.churn.bgnbd import BGNBDParams
from profiles.churn.calibration import FEATURES
from profiles.churn.features import DAY_MS, Behaviour
from profiles.churn.outcomes import KEEP, label, record, training_rows

P = BGNBDParams(0.6, 50.0, 0.8, 1.2, "mbgnbd")


def who(orders: int, last_purchase_day: float, first_day: float = 0.0) -> Behaviour:
    return Behaviour.read(
        {
            "first_ts": int(first_day * DAY_MS),
            "last_ts": int(last_purchase_day * DAY_MS),
            "orders": orders,
            "first_purchase_ts": int(first_day * DAY_MS),
            "last_purchase_ts": int(last_purchase_day * DAY_MS),
            "spend_cents": {"CNY": 1000 * orders},
        }
    )


def entry(day: float, orders: int) -> list[Any]:
    return [int(day * DAY_MS), orders, -1, *([0.0] * len(FEATURES))]


def test_labels_are_exact_or_unknown() -> None:
    snap = entry(50, 2)  # 2 orders at day 50; window (50, 80]
    assert label(snap, who(2, 40), 30.0) == 1  # no order since
    assert label(snap, who(3, 70), 30.0) == 0  # one, inside the window
    assert label(snap, who(5, 80), 30.0) == 0  # the last one on the window's end: inside
    assert label(snap, who(3, 95), 30.0) == 1  # exactly one, after the window
    assert label(snap, who(4, 95), 30.0) is None  # two or more, the last after: unknown


def test_snapshots_every_third_of_a_horizon_capped_and_labelled_once_matured() -> None:
    kept: list[Any] = []
    b = who(2, 10)
    for day in range(20, 200, 2):
        kept = record(kept, b, day * DAY_MS, P, 30.0)
    days = [e[0] / DAY_MS for e in kept]
    assert len(kept) == KEEP and days == sorted(days)
    assert all(later - earlier >= 10 for earlier, later in itertools.pairwise(days))
    for e in kept:  # matured ones labelled (no order ever since day 10), the rest pending
        assert e[2] == (1 if e[0] + 30 * DAY_MS <= 198 * DAY_MS else -1)
    rows, outcomes, ids = training_rows([("u", kept)])
    assert len(rows) == sum(e[2] != -1 for e in kept) and all(outcomes) and set(ids) == {"u"}


def test_an_unknown_outcome_drops_the_snapshot_and_odd_entries_are_dropped() -> None:
    snap = entry(50, 2)
    assert record([snap], who(4, 95), 100 * DAY_MS, P, 30.0)[0][0] == 100 * DAY_MS
    odd: list[Any] = [
        "x",
        [1, 2],
        [*entry(50, 2)[:3], *(["a"] * len(FEATURES))],
        [*entry(50, 2)[:2], 7, *([0.0] * len(FEATURES))],
        [*entry(50, 2)[:3], float("nan"), *([0.0] * (len(FEATURES) - 1))],
        entry(150, 2),  # from the future of this refit (a clock moved back): dropped
    ]
    out = record(odd, who(2, 40), 100 * DAY_MS, P, 30.0)
    assert [e[0] for e in out] == [100 * DAY_MS]
    assert training_rows([("u", odd)]) == ([], [], [])


def test_a_user_who_never_bought_gets_no_snapshot() -> None:
    b = Behaviour.read({"first_ts": 0, "last_ts": DAY_MS, "orders": 0})
    assert record([], b, 10 * DAY_MS, P, 30.0) == []
