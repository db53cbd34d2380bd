"""The shared counters' Python model (``FencedCounts``) with no decay: plain fenced sums."""

from __future__ import annotations

import random

from profiles.recommend.popularity import (
    NO_DECAY,
    Contribution,
    FencedCounts,
    PartitionCounts,
    merge_partitions,
)

YEAR = 365 * 86_400_000


def test_no_decay_sums_integers_exactly_in_any_order_and_fences_redelivery() -> None:
    rng = random.Random(3)
    c = FencedCounts(NO_DECAY)
    want: dict[str, int] = {}
    sent: list[list[Contribution]] = []
    offset = 0
    for _ in range(200):
        offset += 1
        ts = rng.randint(0, 500 * YEAR)  # out of order, far more than any rebase distance
        batch: list[Contribution] = []
        for name in rng.sample(["a", "b", "c"], rng.randint(1, 2)):
            weight = rng.choice([1, 2, 7])
            batch.append(("in:0", offset, ts, name, float(weight)))
            want[name] = want.get(name, 0) + weight
        sent.append(batch)
    first_ts = sent[0][0][2]
    for i, batch in enumerate(sent):
        assert c.add(batch) == len(batch)
        assert c.add(sent[max(0, i - 3)]) == 0  # redelivered: fenced
        assert c.add(batch) == 0
    assert c.state.counts == {name: float(n) for name, n in want.items()}  # exact, not approx
    assert c.state.anchor == first_ts  # set once, never rebased
    assert c.state.latest == max(b[0][2] for b in sent)
    assert c.fences == {"in:0": offset}
    for name, n in want.items():
        assert c.decayed(name, as_of=10**15) == n  # no decay at any read time


def test_no_decay_fences_each_source_on_its_own() -> None:
    c = FencedCounts(NO_DECAY)
    assert c.add([("in:0", 5, 0, "x", 1.0), ("in:1", 2, 0, "x", 1.0)]) == 2
    assert c.add([("in:0", 5, 9, "x", 1.0), ("in:1", 3, 9, "x", 1.0)]) == 1
    assert c.decayed("x", as_of=0) == 3.0
    assert c.decayed("y", as_of=0) == 0.0


def test_merge_with_no_decay_is_the_plain_sum_whatever_the_anchors() -> None:
    a = PartitionCounts(anchor=0, latest=5, counts={"x": 3.0})
    b = PartitionCounts(anchor=100 * YEAR, latest=100 * YEAR, counts={"x": 4.0, "y": 1.0})
    empty = PartitionCounts()
    assert merge_partitions([a, empty, b], NO_DECAY) == (
        {"x": 7.0, "y": 1.0},
        100 * YEAR,
        100 * YEAR,
    )
    assert merge_partitions([empty], NO_DECAY) == ({}, None, None)


def test_decaying_counts_are_unchanged() -> None:
    c = FencedCounts(half_life_ms=1000)
    c.add([("in:0", 1, 0, "x", 1.0), ("in:0", 2, 1000, "x", 1.0)])
    assert c.decayed("x", as_of=2000) == 0.75
