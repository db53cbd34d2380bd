"""Customer value as a profile feature: field ``cv``, and ``value_changed`` on a tier change.

The state lives in the profile hash only (no index), so an erasure, which deletes the hash,
removes it; the compacted ``value`` topic gets the erasure's tombstone like the other outputs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import orjson

from profiles.core.profile import Profile
from profiles.pipeline.feature import Batch, Emit, Feature, Fields, FieldValue, Stats, UserResult
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

    def __init__(self, scorer: ValueScorer) -> None:
        self.scorer = scorer

    async def compute(self, batch: Batch, users: Sequence[UserResult], stats: Stats) -> None:
        for user in users:
            if not user.write:
                continue
            profile = user.profile
            change = self.scorer.update(profile, profile.last_ts or 0)
            if change is not None:
                build = functools.partial(value_event, change)
                user.emits.append(Emit("value", "value_changed", user.user_id, build, change))

    def describe(self, profile: Profile, event: dict[str, Any]) -> None:
        state = profile.parts.get("value")
        if state is not None:
            event["value"] = {
                "tier": state["tier"],
                "expected_order_value": state["expected_order_value"],
                "expected": state["expected"],
            }
