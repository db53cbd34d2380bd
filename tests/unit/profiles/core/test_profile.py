"""Pure profile math: counts, money, fences, duplicates, lateness, event-time decay."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record, apply, decayed

DAY = 86_400_000
CFG = ProfileConfig(half_life_ms=10 * DAY, lateness_ms=2 * DAY, top_tags=5)


def tags_of(event: dict[str, Any]) -> list[tuple[str, float]]:
    word = event.get("query") or event.get("product_id") or "x"
    return [(word, 1.0)]


def ev(n: int, kind: str = "search", ts: int = 0, **extra: Any) -> dict[str, Any]:
    base = {"event_id": f"e{n}", "type": kind, "user_id": "u", "ts": ts, "schema_version": 1}
    if kind == "search":
        base["query"] = extra.pop("query", "shoes")
    return {**base, **extra}


def purchase(n: int, ts: int, amount: float, currency: str = "CNY") -> dict[str, Any]:
    items = [{"product_id": "p1", "quantity": 2, "price": amount / 2}]
    return ev(n, "purchase", ts, order_id=f"o{n}", items=items, amount=amount, currency=currency)


def test_counts_money_and_recency() -> None:
    p = Profile("u")
    recs = [
        Record(InputPartition("t", 0), i, e)
        for i, e in enumerate(
            [ev(1, ts=DAY), purchase(2, 2 * DAY, 19.99), purchase(3, 3 * DAY, 0.01, "USD")]
        )
    ]
    out = apply(p, recs, CFG, tags_of)
    assert out.applied == 3
    assert p.counts == {"search": 1, "purchase": 2}
    assert p.spend_cents == {"CNY": 1999, "USD": 1}
    assert (p.first_ts, p.last_ts) == (DAY, 3 * DAY)
    assert (p.first_purchase_ts, p.last_purchase_ts, p.orders, p.items_bought) == (
        2 * DAY,
        3 * DAY,
        2,
        4,
    )
    assert p.rfm() == {
        "recency_ts": 3 * DAY,
        "frequency": 2,
        "monetary": {"CNY": 19.99, "USD": 0.01},
    }


def test_offset_fence_makes_redelivery_a_no_op() -> None:
    p = Profile("u")
    recs = [Record(InputPartition("t", 0), 10, ev(1)), Record(InputPartition("t", 1), 3, ev(2))]
    apply(p, recs, CFG, tags_of)
    before = p.to_bytes()
    again = apply(p, recs, CFG, tags_of)
    assert (again.applied, again.fenced) == (0, 2)
    assert p.to_bytes() == before


def test_duplicate_event_id_at_new_offset_is_ignored() -> None:
    p = Profile("u")
    out = apply(
        p,
        [Record(InputPartition("t", 0), 1, ev(1)), Record(InputPartition("t", 0), 2, ev(1))],
        CFG,
        tags_of,
    )
    assert (out.applied, out.duplicates, p.counts["search"]) == (1, 1, 1)


def test_events_later_than_lateness_are_returned_not_applied() -> None:
    p = Profile("u")
    late = Record(InputPartition("t", 0), 2, ev(2, ts=10 * DAY - 3 * DAY))
    ok_late = Record(InputPartition("t", 0), 3, ev(3, ts=10 * DAY - DAY))
    out = apply(
        p, [Record(InputPartition("t", 0), 1, ev(1, ts=10 * DAY)), late, ok_late], CFG, tags_of
    )
    assert out.late == [late]
    assert out.applied == 2
    assert p.first_ts == 9 * DAY


def test_tag_scores_decay_by_half_life_in_event_time() -> None:
    p = Profile("u")
    apply(p, [Record(InputPartition("t", 0), 1, ev(1, ts=0, query="a"))], CFG, tags_of)
    apply(p, [Record(InputPartition("t", 0), 2, ev(2, ts=10 * DAY, query="b"))], CFG, tags_of)
    scores = dict(p.top_tags(5, CFG.half_life_ms))
    weight = CFG.kind_weights["search"]
    assert abs(scores["b"] - weight) < 1e-6
    assert abs(scores["a"] - weight / 2) < 1e-6  # one half-life older


def test_out_of_order_within_lateness_equals_in_order() -> None:
    events = [ev(i, ts=i * 3600_000, query=f"q{i % 4}") for i in range(30)]
    in_order, shuffled = Profile("u"), Profile("u")
    apply(
        in_order, [Record(InputPartition("t", 0), i, e) for i, e in enumerate(events)], CFG, tags_of
    )
    mixed = events[:]
    random.Random(1).shuffle(mixed)
    apply(
        shuffled, [Record(InputPartition("t", 0), i, e) for i, e in enumerate(mixed)], CFG, tags_of
    )
    a, b = (
        dict(in_order.top_tags(5, CFG.half_life_ms)),
        dict(shuffled.top_tags(5, CFG.half_life_ms)),
    )
    assert a.keys() == b.keys()
    assert all(abs(a[k] - b[k]) <= 1e-9 * max(1.0, a[k]) for k in a)
    assert in_order.counts == shuffled.counts


def test_replay_gives_byte_equal_profile() -> None:
    events = [ev(i, ts=i * 60_000, query=f"q{i % 7}") for i in range(200)]
    recs = [Record(InputPartition("t", 0), i, e) for i, e in enumerate(events)]
    one, two = Profile("u"), Profile("u")
    apply(one, recs, CFG, tags_of)
    for start in range(0, 200, 17):  # same log, other batch boundaries
        apply(two, recs[start : start + 17], CFG, tags_of)
    assert one.to_bytes() == two.to_bytes()


def test_pruning_does_not_depend_on_batch_boundaries() -> None:
    recs = [
        Record(InputPartition("t", 0), i, ev(i, ts=i * 1000, query=f"q{i % 23}"))
        for i in range(120)
    ]
    whole, pieces = Profile("u"), Profile("u")
    apply(whole, recs, CFG, tags_of)
    for start in range(0, 120, 7):
        apply(pieces, recs[start : start + 7], CFG, tags_of)
    assert whole.to_bytes() == pieces.to_bytes()


def test_tags_are_pruned_to_the_strongest() -> None:
    p = Profile("u")
    recs = [Record(InputPartition("t", 0), i, ev(i, ts=i, query=f"q{i}")) for i in range(40)]
    apply(p, recs, CFG, tags_of)
    assert len(p.tags) <= 2 * CFG.top_tags


def test_serialisation_round_trip() -> None:
    p = Profile("u")
    apply(p, [Record(InputPartition("t", 0), 1, purchase(1, DAY, 5.0))], CFG, tags_of)
    again = Profile.from_bytes("u", p.version, p.to_bytes())
    assert again == p


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=50 * 365 * DAY), min_size=1, max_size=30))
def test_scores_stay_finite_over_decades(times: list[int]) -> None:
    p = Profile("u")
    big = ProfileConfig(half_life_ms=DAY, lateness_ms=100 * 365 * DAY)
    recs = [Record(InputPartition("t", 0), i, ev(i, ts=t, query="a")) for i, t in enumerate(times)]
    apply(p, recs, big, tags_of)
    ((tag, score),) = p.top_tags(1, big.half_life_ms)
    assert tag == "a" and 0 <= score < float("inf")
    assert all(v < float("inf") for v in p.tags.values())


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=10**9))
def test_decay_is_monotone(anchor: int, step: int) -> None:
    later = decayed(1.0, anchor, anchor + step, DAY)
    assert 0 <= decayed(1.0, anchor, anchor + 2 * step, DAY) <= later <= 1.0
