"""The feature interface's built-in pieces: field codecs, index operations, emits."""

from __future__ import annotations

import orjson
import pytest

from profiles.churn.feature import ChurnFeature, ChurnFields
from profiles.churn.tracker import ChurnTracker
from profiles.core.config import ProfileConfig
from profiles.core.ownership import owner
from profiles.core.profile import Outcome, Profile
from profiles.pipeline.builtin import CODECS
from profiles.pipeline.feature import (
    Batch,
    Fields,
    ScoreSet,
    SetAdd,
    SetRemove,
    Stats,
    UserResult,
    decode_all,
    stored_fields,
)
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.redis import keys
from profiles.segments.feature import SegmentFields, SegmentsFeature, moves
from tests.unit.profiles.pipeline.test_updater import Words


def test_index_names_are_the_redis_keys_without_prefix() -> None:
    assert keys.index("seg:members:4") == keys.segment_members(4) == "rtp:seg:members:4"
    assert keys.churn_due(2) == "rtp:churn:due:2"
    assert keys.churn_customers(2) == "rtp:churn:customers:2"


def test_segment_moves_leave_the_old_set_and_join_the_new() -> None:
    assert moves("u", 1, 2) == [SetRemove("seg:members:1", "u"), SetAdd("seg:members:2", "u")]
    assert moves("u", None, 2) == [SetAdd("seg:members:2", "u")]
    assert moves("u", 3, None) == [SetRemove("seg:members:3", "u")]


def test_codecs_round_trip_through_the_stored_fields() -> None:
    codecs: list[Fields] = [SegmentFields(), ChurnFields()]
    assert stored_fields(codecs) == ("s", "c")
    assert stored_fields(CODECS) == ("e", "s", "c", "r", "rv", "cv", "sn", "rk", "au", "tg", "xp")
    p = Profile("u")
    p.segment, p.churn = 3, {"level": "low"}
    written = {k: v for c in codecs for k, v in c.encode(p).items()}
    back = Profile("u")
    stored = [str(written["s"]).encode(), written["c"]]
    decode_all(codecs, back, [v if isinstance(v, bytes) else None for v in stored])
    assert (back.segment, back.churn) == (3, {"level": "low"})
    assert orjson.loads(written["c"]) == {"level": "low"}


def test_two_features_cannot_claim_one_field() -> None:
    with pytest.raises(ValueError, match="fields already taken"):
        stored_fields([ChurnFields(), ChurnFields()])
    with pytest.raises(ValueError, match="share a name"):
        BatchUpdater(MemoryStore(), ProfileConfig(), Words(), [ChurnFeature(None, 1)] * 2)


async def test_churn_plans_the_next_check_and_indexes_customers() -> None:
    feature = ChurnFeature(ChurnTracker(), partitions=4)
    p = Profile("buyer", version=1, last_ts=1_000, orders=1, last_purchase_ts=1_000)
    p.counts = {"purchase": 1}
    user = UserResult(p, outcome=Outcome(applied=1))
    await feature.compute(Batch([], {}, {}), [user], Stats())
    part = owner("buyer", 4)
    assert p.churn is not None and p.churn["level"] == "low"
    assert ScoreSet(f"churn:due:{part}", "buyer", p.churn["next_check_ms"]) in user.ops
    assert SetAdd(f"churn:customers:{part}", "buyer") in user.ops
    assert user.emits == []  # a new user starts at "low" silently


async def test_churn_without_scoring_still_keeps_the_population() -> None:
    feature = ChurnFeature(None, partitions=1)
    p = Profile("buyer", version=1, last_ts=5, orders=2)
    user = UserResult(p, outcome=Outcome(applied=1))
    await feature.compute(Batch([], {}, {}), [user], Stats())
    assert user.ops == [SetAdd("churn:customers:0", "buyer")] and p.churn is None


@pytest.mark.parametrize("tracker", [ChurnTracker(), None])
async def test_churn_says_which_index_entries_a_profile_keeps(tracker: ChurnTracker | None) -> None:
    # What a write maintains is what `indexed` claims: the updater's repair after a
    # commit conflict relies on the two agreeing.
    feature = ChurnFeature(tracker, partitions=4)
    p = Profile("buyer", version=1, last_ts=1_000, orders=1, last_purchase_ts=1_000)
    p.counts = {"purchase": 1}
    user = UserResult(p, outcome=Outcome(applied=1))
    await feature.compute(Batch([], {}, {}), [user], Stats())
    kept = [op for op in user.ops if isinstance(op, SetAdd | ScoreSet)]
    assert sorted(map(repr, feature.indexed(p))) == sorted(map(repr, kept)) != []
    assert feature.indexed(Profile("browser")) == []


def test_segments_say_which_index_entries_a_profile_keeps() -> None:
    feature = SegmentsFeature(None)  # type: ignore[arg-type]  # indexed reads the profile only
    p = Profile("u")
    assert feature.indexed(p) == []
    p.segment = 2
    assert feature.indexed(p) == [op for op in moves("u", 1, 2) if isinstance(op, SetAdd)]
