"""Churn risk as a profile feature: field ``c``, the due and customer indexes, ``churn_risk``.

Each written user is scored as of its latest event and put on the due index at the time
its level may change with time alone; the sweep (``profiles/churn/sweeper.py``) re-scores
them then. The customer index (users with a purchase, per owner partition) is the BG/NBD
population the refit samples; it is kept even while scoring is off, so turning scoring on
later finds every customer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import orjson

from profiles.churn.tracker import ChurnTracker, churn_event
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
    SetRemove,
    Stats,
    UserResult,
)


class ChurnFields(Fields):
    names = ("c",)

    def decode(self, profile: Profile, values: Sequence[bytes | None]) -> None:
        profile.churn = None if values[0] is None else orjson.loads(values[0])

    def encode(self, profile: Profile) -> dict[str, FieldValue]:
        return {} if profile.churn is None else {"c": orjson.dumps(profile.churn)}


class ChurnFeature(Feature):
    name = "churn"
    fields = ChurnFields()

    def __init__(self, tracker: ChurnTracker | None, partitions: int) -> None:
        self.tracker = tracker  # None: scoring off, the customer index only
        self.partitions = partitions

    async def compute(self, batch: Batch, users: Sequence[UserResult], stats: Stats) -> None:
        for user in users:
            uid = user.user_id
            partition = owner(uid, self.partitions)
            if self.tracker is not None:
                self._score(user, partition, self.tracker)
            if user.write and user.profile.orders > 0:
                user.ops.append(SetAdd(indexes.churn_customers(partition), uid))
            elif user.erasures:
                user.ops.append(SetRemove(indexes.churn_customers(partition), uid))

    def indexed(self, profile: Profile) -> list[SetAdd | ScoreSet]:
        uid, partition = profile.user_id, owner(profile.user_id, self.partitions)
        out: list[SetAdd | ScoreSet] = []
        if profile.orders > 0:
            out.append(SetAdd(indexes.churn_customers(partition), uid))
        next_ms = (profile.churn or {}).get("next_check_ms")
        if self.tracker is not None and next_ms is not None:
            out.append(ScoreSet(indexes.churn_due(partition), uid, int(next_ms)))
        return out

    def _score(self, user: UserResult, partition: int, tracker: ChurnTracker) -> None:
        """Churn risk of a written user as of its latest event; plan its next check."""
        due = indexes.churn_due(partition)
        if user.erasures and not user.write:
            user.ops.append(ScoreRemove(due, user.user_id))
        if not user.write:
            return
        profile = user.profile
        change = tracker.update(profile, profile.last_ts or 0)
        next_ms = (profile.churn or {}).get("next_check_ms")
        if next_ms is None:
            user.ops.append(ScoreRemove(due, user.user_id))
        else:
            user.ops.append(ScoreSet(due, user.user_id, int(next_ms)))
        if change is not None:
            build = functools.partial(churn_event, change)
            user.emits.append(Emit("churn", "churn_risk", user.user_id, build, change))
