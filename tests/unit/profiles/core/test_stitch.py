"""Identity stitching: merging an anonymous profile equals one profile fed both ids' events."""

from __future__ import annotations

import math
import random
from typing import Any

from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record, apply
from profiles.core.stitch import anon_user_id, merge, merge_id, merged_event

CONFIG = ProfileConfig(half_life_ms=3_600_000)
SRC = InputPartition("site-events", 0)
DAY0 = 1_700_000_000_000


def tagger(event: dict[str, Any]) -> list[tuple[str, float]]:
    return [(f"t{event['n'] % 7}", 1.0), (f"k{event['type']}", 0.5)]


def event(user: str, n: int, rng: random.Random) -> dict[str, Any]:
    ts = DAY0 + rng.randrange(0, 6 * 3_600_000)
    kind = rng.choice(["click", "search", "purchase", "add_to_cart"])
    base: dict[str, Any] = {"event_id": f"e{n}", "type": kind, "user_id": user, "ts": ts, "n": n}
    if kind == "purchase":
        item = {"product_id": f"p{n % 5}", "quantity": 2, "price": 6.25}
        base |= {"order_id": f"o{n}", "items": [item], "amount": 12.5}
        base["currency"] = rng.choice(["USD", "EUR"])
    return base


def traffic(seed: int) -> tuple[list[Record], list[Record]]:
    """Interleaved records of one user and one anonymous id on one input partition."""
    rng = random.Random(seed)
    anon: list[Record] = []
    user: list[Record] = []
    for offset in range(120):
        owner = anon_user_id("a1") if rng.random() < 0.4 else "u1"
        record = Record(SRC, offset, event(owner, offset, rng))
        (anon if owner.startswith("anon:") else user).append(record)
    return anon, user


def one_profile(records: list[Record]) -> Profile:
    profile = Profile("u1")
    events = sorted(records, key=lambda r: r.offset)
    apply(profile, [Record(r.source, r.offset, r.event) for r in events], CONFIG, tagger)
    return profile


def assert_same_behaviour(got: Profile, want: Profile) -> None:
    assert got.counts == want.counts
    assert (got.orders, got.items_bought, got.spend_cents) == (
        want.orders,
        want.items_bought,
        want.spend_cents,
    )
    assert got.rfm() == want.rfm()
    assert (got.first_ts, got.last_ts) == (want.first_ts, want.last_ts)
    assert set(got.purchased) == set(want.purchased)
    assert want.last_ts is not None
    mine = dict(got.top_tags(50, CONFIG.half_life_ms, as_of=want.last_ts))
    theirs = dict(want.top_tags(50, CONFIG.half_life_ms, as_of=want.last_ts))
    assert mine.keys() == theirs.keys()
    for tag, score in theirs.items():
        assert math.isclose(mine[tag], score, rel_tol=1e-9, abs_tol=1e-9), tag


def test_merge_equals_one_profile_fed_both_ids() -> None:
    for seed in range(5):
        anon_records, user_records = traffic(seed)
        anon = Profile(anon_user_id("a1"))
        apply(anon, anon_records, CONFIG, tagger)
        user = Profile("u1")
        apply(user, user_records, CONFIG, tagger)
        assert merge(user, anon, CONFIG)
        assert_same_behaviour(user, one_profile(anon_records + user_records))
        assert user.merged == [anon.user_id]


def test_a_redelivered_merge_is_a_no_op() -> None:
    anon_records, user_records = traffic(1)
    anon = Profile(anon_user_id("a1"))
    apply(anon, anon_records, CONFIG, tagger)
    user = Profile("u1")
    apply(user, user_records, CONFIG, tagger)
    merge(user, anon, CONFIG)
    before = user.to_bytes()
    assert not merge(user, anon, CONFIG)
    assert user.to_bytes() == before


def test_events_racing_the_merge_on_both_ids_count_once() -> None:
    """The seal falls mid-stream: the anonymous id's later events are forwarded to the user.

    The user's own events ran ahead on the same input partition, so the user's offset fence is
    past the forwarded events' offsets: they must not be dropped, and a redelivery of them
    must not count twice.
    """
    anon_records, user_records = traffic(2)
    cut = len(anon_records) // 2
    anon = Profile(anon_user_id("a1"))
    apply(anon, anon_records[:cut], CONFIG, tagger)  # before the seal
    user = Profile("u1")
    apply(user, user_records, CONFIG, tagger)  # the user's side is ahead
    assert user.fences[SRC.key] > anon_records[cut].offset
    merge(user, anon, CONFIG)
    forwarded = anon_records[cut:]
    out = apply(user, forwarded, CONFIG, tagger)
    assert out.applied == len(forwarded)
    again = apply(user, anon_records, CONFIG, tagger)  # redelivery of the whole anon stream
    assert (again.applied, again.fenced) == (0, len(anon_records))
    assert_same_behaviour(user, one_profile(anon_records + user_records))


def test_unmerged_profiles_serialise_as_before() -> None:
    profile = Profile("u1", counts={"click": 1})
    assert b"merged" not in profile.to_bytes()
    restored = Profile.from_bytes("u1", 0, profile.to_bytes())
    assert restored == profile
    merge(profile, Profile(anon_user_id("a")), CONFIG)
    restored = Profile.from_bytes("u1", 1, profile.to_bytes())
    assert restored.merged == ["anon:a"]


def test_profile_merged_event_is_deterministic() -> None:
    user = Profile("u1", version=3)
    first, second = merged_event(user, "anon:a", 5), merged_event(user, "anon:a", 5)
    assert first == second
    assert first["merge_id"] == merge_id("anon:a", "u1")
    assert first["user_id"] == "u1"


def test_handover_with_traffic_on_both_ids_and_redelivery_matches_the_oracle() -> None:
    """The two-step handover simulated per owner: seal on the anon side, merge on the user's.

    Several users and anonymous ids over two input partitions; each anonymous stream is sealed
    at a random point (its link), the snapshot merged into the user at a random point of the
    user's stream, the anon id's later events forwarded after the merge record (same routed
    partition, so in order), and every step redelivered once. The result must equal the
    oracle's (all events of both ids, merged once).
    """
    from tests.integration.oracle import behaviour, expected_stitched

    rng = random.Random(7)
    parts = [InputPartition("site-events", p) for p in (0, 1)]
    links = {anon_user_id(f"a{i}"): f"u{i}" for i in range(4)}
    owners = [*links, *links.values(), "u9"]
    by_user: dict[str, list[Record]] = {o: [] for o in owners}
    offsets = dict.fromkeys(parts, 0)
    for n in range(600):
        owner, part = rng.choice(owners), rng.choice(parts)
        by_user[owner].append(Record(part, offsets[part], event(owner, n, rng)))
        offsets[part] += 1
    want = expected_stitched(by_user, links, CONFIG, tagger)

    got: dict[str, Profile] = {}
    for user in [*links.values(), "u9"]:
        got[user] = Profile(user)
    for anon, user in links.items():
        stream, mine = by_user[anon], by_user[user]
        seal, at = rng.randrange(len(stream) + 1), rng.randrange(len(mine) + 1)
        sealed = Profile(anon)
        for _ in range(2):  # the anon side, redelivered: only the first pass applies
            apply(sealed, stream[:seal], CONFIG, tagger)
        apply(got[user], mine[:at], CONFIG, tagger)
        for _ in range(2):  # the merge record, redelivered
            merge(got[user], sealed, CONFIG)
        for _ in range(2):  # forwarded anon events and the user's own, redelivered
            apply(got[user], stream[seal:], CONFIG, tagger)
            apply(got[user], mine[at:], CONFIG, tagger)
    apply(got["u9"], by_user["u9"], CONFIG, tagger)

    assert set(got) == set(want)
    for user, profile in want.items():
        mine_b, want_b = behaviour(got[user], CONFIG), behaviour(profile, CONFIG)
        mine_tags, want_tags = mine_b.pop("tags"), want_b.pop("tags")
        assert mine_b == want_b, user
        assert mine_tags.keys() == want_tags.keys()
        for tag, score in want_tags.items():
            assert math.isclose(mine_tags[tag], score, abs_tol=2e-6), (user, tag)


def test_erasing_a_user_erases_the_anonymous_profiles_merged_into_it() -> None:
    from profiles.core.stitch import cascade_erasures

    user = Profile("u1")
    merge(user, Profile(anon_user_id("a")), CONFIG)
    merge(user, Profile(anon_user_id("b")), CONFIG)
    erasure = {"event_id": "x1", "type": "user_erasure", "schema_version": 1, "user_id": "u1"}
    erasure |= {"ts": 9, "requested_by": "dpo"}
    first, again = cascade_erasures(user, erasure), cascade_erasures(user, erasure)
    assert [e["user_id"] for e in first] == ["anon:a", "anon:b"]
    assert first == again  # redelivery resends the same ids
    assert len({e["event_id"] for e in first}) == 2
    assert all(e["type"] == "user_erasure" and e["ts"] == 9 for e in first)
    assert cascade_erasures(Profile("u2"), erasure) == []


def test_profile_merged_event_meets_its_contract() -> None:
    import pytest

    from schemas.validate import validate_output

    user = Profile("u1", version=3)
    validate_output("profile_merged", merged_event(user, anon_user_id("a-1"), 5))
    with pytest.raises(ValueError, match="anonymous_profile"):
        validate_output("profile_merged", {**merged_event(user, "a-1", 5)})
