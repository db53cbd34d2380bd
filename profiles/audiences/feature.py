"""Audiences as a profile feature: field ``au``, the member sets and due index, and
``audience_changed`` when a user enters or leaves an audience.

Consent and language come from events (optional ``consent`` and ``language`` fields); the
latest by event time wins, so arrival order does not matter. An opted-out user is in no
audience (``profiles/audiences/definitions.py``), so no export ever lists them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import orjson

from profiles.audiences.definitions import AudienceBook
from profiles.audiences.fields import state
from profiles.audiences.membership import audience_event, decide, implied, removals
from profiles.core.profile import EventLearner, Profile, Tag
from profiles.pipeline.feature import (
    Batch,
    Emit,
    Feature,
    Fields,
    FieldValue,
    ScoreSet,
    SetAdd,
    Stats,
    UserResult,
)

KIND = "audience_changed"


class AudienceFields(Fields):
    names = ("au",)

    def decode(self, profile: Profile, values: Sequence[bytes | None]) -> None:
        profile.parts["audiences"] = None if values[0] is None else orjson.loads(values[0])

    def encode(self, profile: Profile) -> dict[str, FieldValue]:
        st = profile.parts.get("audiences")
        return {} if st is None else {"au": orjson.dumps(st)}


def learn(
    profile: Profile, event: dict[str, Any], ts: int, weight: float, tags: Sequence[Tag]
) -> None:
    """Keep the latest (by event time) consent and language an event carried."""
    for key in ("consent", "language"):
        if key not in event:
            continue
        st = profile.parts.get("audiences")
        if st is None:
            st = profile.parts["audiences"] = {}
        known = st.get(key)
        if known is None or ts >= known[0]:
            st[key] = [ts, event[key]]


class AudienceFeature(Feature):
    name = "audiences"
    fields = AudienceFields()

    def __init__(self, book: AudienceBook, partitions: int) -> None:
        self.book = book
        self.partitions = partitions

    def learner(self, batch: Batch) -> EventLearner | None:
        return learn

    def erased(self, before: Profile, user: UserResult) -> None:
        user.ops += removals(before, self.partitions)

    def indexed(self, profile: Profile) -> list[SetAdd | ScoreSet]:
        return implied(profile, self.partitions)

    async def compute(self, batch: Batch, users: Sequence[UserResult], stats: Stats) -> None:
        for user in users:
            if not user.write:
                continue
            profile = user.profile
            changes, ops = decide(self.book, profile, profile.last_ts or 0, self.partitions)
            user.ops += ops
            for change in changes:
                build = functools.partial(audience_event, change)
                user.emits.append(Emit("audiences", KIND, user.user_id, build, change))

    def describe(self, profile: Profile, event: dict[str, Any]) -> None:
        members = state(profile).get("m")
        if members:
            event["audiences"] = sorted(members)
