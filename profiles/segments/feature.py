"""Segments as a profile feature: field ``s``, the membership sets, ``segment_changed``."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from profiles.core import indexes
from profiles.core.profile import Profile
from profiles.pipeline.feature import (
    Batch,
    Emit,
    Feature,
    Fields,
    FieldValue,
    IndexOp,
    ScoreSet,
    SetAdd,
    SetRemove,
    Stats,
    UserResult,
)
from profiles.segments.segmenter import SegmentChange, Segmenter


def segment_changed(change: SegmentChange, now_ms: int) -> dict[str, Any]:
    """The ``segment_changed`` event; the id names the profile version that moved."""
    profile = change.profile
    return {
        "type": "segment_changed",
        "schema_version": 1,
        "event_id": f"{profile.user_id}:{profile.version}:segment",
        "user_id": profile.user_id,
        "segment": change.segment,
        "previous": change.previous,
        "model_version": change.model_version,
        "profile_version": profile.version,
        "ts": profile.last_ts,
        "processed_at": now_ms,
    }


def moves(user: str, previous: int | None, segment: int | None) -> list[IndexOp]:
    """Membership follows the profile: out of the old set, into the new one."""
    ops: list[IndexOp] = []
    if previous is not None:
        ops.append(SetRemove(indexes.segment_members(previous), user))
    if segment is not None:
        ops.append(SetAdd(indexes.segment_members(segment), user))
    return ops


class SegmentFields(Fields):
    names = ("s",)

    def decode(self, profile: Profile, values: Sequence[bytes | None]) -> None:
        profile.segment = None if values[0] is None else int(values[0])

    def encode(self, profile: Profile) -> dict[str, FieldValue]:
        return {} if profile.segment is None else {"s": profile.segment}


class SegmentsFeature(Feature):
    name = "segment"
    fields = SegmentFields()

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter

    def erased(self, before: Profile, user: UserResult) -> None:
        user.ops += moves(user.user_id, before.segment, None)

    def indexed(self, profile: Profile) -> list[SetAdd | ScoreSet]:
        if profile.segment is None:
            return []
        return [SetAdd(indexes.segment_members(profile.segment), profile.user_id)]

    async def compute(self, batch: Batch, users: Sequence[UserResult], stats: Stats) -> None:
        """Segments of the users written in this batch, as of the batch's latest event time."""
        if not batch.records:
            return
        by_id = {u.user_id: u for u in users}
        written = [u.profile for u in users if u.write]
        for change in self.segmenter.assign(written, batch.as_of):
            user = by_id[change.profile.user_id]
            user.ops += moves(user.user_id, change.previous, change.segment)
            user.emits.append(
                Emit(
                    "segments",
                    "segment_changed",
                    user.user_id,
                    functools.partial(segment_changed, change),
                    change,
                )
            )

    def describe(self, profile: Profile, event: dict[str, Any]) -> None:
        if profile.segment is not None:
            event["segment"] = profile.segment
