"""Customer value as a profile feature: field ``cv``, the due index, ``value_changed``.

Each written customer is scored as of its latest event and put on the due index at the time
its R score may fall with time alone; the sweep (``profiles/value/sweeper.py``) re-scores
them then, so a quiet customer's tier moves without a new event. The state lives in the
profile hash, so an erasure, which deletes the hash, removes it (and the due entry); the
compacted ``value`` topic gets the erasure's tombstone like the other outputs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import orjson

from profiles.core import indexes
from profiles.core.ownership import owner
from profiles.core.profile import Profile
from profiles.pipeline.feature import (
    Batch,
    Emit,
    Feature,
    Fields,
    FieldValue,
    ScoreRemove,
    ScoreSet,
    SetAdd,
    Stats,
    UserResult,
)
from profiles.value.scorer import ValueScorer, value_event


class ValueFields(Fields):
    names = ("cv",)

    def decode(self, profile: Profile, values: Sequence[bytes | None]) -> None:
        profile.parts["value"] = None if values[0] is None else orjson.loads(values[0])

    def encode(self, profile: Profile) -> dict[str, FieldValue]:
        state = profile.parts.get("value")
        return {} if state is None else {"cv": orjson.dumps(state)}


class ValueFeature(Feature):
    name = "value"
    fields = ValueFields()

    def __init__(self, scorer: ValueScorer, partitions: int) -> None:
        self.scorer = scorer
        self.partitions = partitions

    async def compute(self, batch: Batch, users: Sequence[UserResult], stats: Stats) -> None:
        for user in users:
            due = indexes.value_due(owner(user.user_id, self.partitions))
            if not user.write:
                if user.erasures:
                    user.ops.append(ScoreRemove(due, user.user_id))
                continue
            profile = user.profile
            change = self.scorer.update(profile, profile.last_ts or 0)
            next_ms = (profile.parts.get("value") or {}).get("next_check_ms")
            if next_ms is None:
                user.ops.append(ScoreRemove(due, user.user_id))
            else:
                user.ops.append(ScoreSet(due, user.user_id, int(next_ms)))
            if change is not None:
                build = functools.partial(value_event, change)
                user.emits.append(Emit("value", "value_changed", user.user_id, build, change))

    def indexed(self, profile: Profile) -> list[SetAdd | ScoreSet]:
        next_ms = (profile.parts.get("value") or {}).get("next_check_ms")
        if next_ms is None:
            return []
        due = indexes.value_due(owner(profile.user_id, self.partitions))
        return [ScoreSet(due, profile.user_id, int(next_ms))]

    def describe(self, profile: Profile, event: dict[str, Any]) -> None:
        state = profile.parts.get("value")
        if state is not None:
            event["value"] = {
                "tier": state["tier"],
                "expected_order_value": state["expected_order_value"],
                "expected": state["expected"],
            }
