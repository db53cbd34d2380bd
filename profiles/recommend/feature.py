"""Recommendations as a profile feature: fields ``r`` / ``rv``, popularity, seen items and
the ``recommendation`` event.

Per batch: products the index lacks but a tracking event describes join the catalog as
*seen* items; every interaction counts into the shared popularity (fenced by offset in the
store); users whose change matters (throttled by event time) get a fresh list.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from profiles.core.ownership import owner
from profiles.core.profile import Profile
from profiles.pipeline.feature import (
    Batch,
    CountsAdd,
    Emit,
    Feature,
    Fields,
    Stats,
    UserResult,
)
from profiles.recommend.popularity import Contribution, count_field, interactions
from profiles.recommend.recommender import Recommender, RecsChange
from schemas.kinds import product_lines as product_lines  # re-exported: the lines seen_item takes


def recommendation_event(change: RecsChange, model: str, now_ms: int) -> dict[str, Any]:
    """The ``recommendation`` output event (contract: ``schemas/outputs``); its id names the
    profile version, so a redelivered batch's repeat is recognisable downstream.

    >>> from profiles.recommend.blend import Recommendation
    >>> p = Profile("u1", version=4, last_ts=7)
    >>> r = Recommendation("tea", 0.9, {"source": "popularity", "scope": "global"})
    >>> e = recommendation_event(RecsChange(p, (r,), "first"), "m", now_ms=9)
    >>> e["event_id"], e["items"][0]["rank"], e["items"][0]["product_id"]
    ('u1:4:recs', 1, 'tea')
    """
    profile = change.profile
    return {
        "type": "recommendation",
        "schema_version": 1,
        "event_id": f"{profile.user_id}:{profile.version}:recs",
        "user_id": profile.user_id,
        "profile_version": profile.version,
        "model": model,
        "trigger": change.trigger,
        "ts": profile.last_ts,
        "processed_at": now_ms,
        "items": [
            {
                "product_id": r.product_id,
                "rank": rank,
                "score": round(float(r.score), 6),
                "reason": r.reason,
            }
            for rank, r in enumerate(change.items, start=1)
        ],
    }


def seen_item(line: Mapping[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
    """A catalog entry made from a tracking event's product fields (``seen_in`` says so)."""
    item = {
        "type": "product",
        "product_id": line["product_id"],
        "title": line["title"],
        "category": list(line["category"]),
        "ts": event["ts"],
        "event_id": event["event_id"],
        "seen_in": event["type"],
    }
    if "price" in line:
        item["price"] = float(line["price"])
    return item


class RecsFields(Fields):
    """The last list's state and its long-term vector; written only with a fresh list."""

    names = ("r", "rv")

    def decode(self, profile: Profile, values: Sequence[bytes | None]) -> None:
        recs, vector = values
        profile.recs = None if recs is None else orjson.loads(recs)
        profile.recs_vector = vector


class RecommendFeature(Feature):
    name = "recommend"
    fields = RecsFields()

    def __init__(
        self,
        recommender: Recommender,
        kind_weights: dict[str, float],
        partitions: int,
        model_id: str,
        skip: Callable[[Profile], bool] | None = None,
    ) -> None:
        self.recommender = recommender
        self.skip = skip  # users who get no list (flagged by the risk feature)
        self.kind_weights = kind_weights
        self.partitions = partitions
        self.model_id = model_id

    async def prepare(self, batch: Batch, stats: Stats) -> None:
        batch.seen_items += self._seen_items(batch)

    def _seen_items(self, batch: Batch) -> list[dict[str, Any]]:
        """Products the index lacks but a tracking event names with title and category: they
        join the catalog as *seen* items (a later ``product`` event replaces them)."""
        index = self.recommender.index
        seen: dict[str, dict[str, Any]] = {}
        for recs in batch.by_user.values():
            for record in recs:
                event = record.event
                for line in product_lines(event):
                    pid = line["product_id"]
                    if pid in index or pid in batch.items or pid in seen:
                        continue
                    if line.get("title") and line.get("category"):
                        seen[pid] = seen_item(line, event)
        return list(seen.values())

    async def compute(self, batch: Batch, users: Sequence[UserResult], stats: Stats) -> None:
        if batch.attempt == 1:
            batch.counts += self._popularity(users)
        started = time.perf_counter()
        if await self._recommend(users):
            stats.seconds["recs"] = stats.seconds.get("recs", 0.0) + (time.perf_counter() - started)

    def _popularity(self, users: Sequence[UserResult]) -> list[CountsAdd]:
        """Item interactions of the batch, per owner partition, for the shared popularity.

        Taken once per batch (first attempt) from the records applied now or before, whatever
        the commit's conflicts: the store's per-source fences decide what is new. Each
        interaction counts for everyone and, when the user has a segment, for that segment.
        """
        out: dict[int, list[Contribution]] = defaultdict(list)
        for user in users:
            entries = out[owner(user.user_id, self.partitions)]
            # The segment the user is in after this batch: counts follow people as they move.
            segment = user.profile.segment
            for r in user.outcome.counted:
                ts = int(r.event["ts"])
                for pid, w in interactions(r.event, self.kind_weights):
                    entries.append((r.source.key, r.offset, ts, count_field(pid), w))
                    if segment is not None:
                        entries.append((r.source.key, r.offset, ts, count_field(pid, segment), w))
        half_life = self.recommender.index.popularity_half_life_ms
        return [CountsAdd(p, e, half_life) for p, e in out.items() if e]

    async def _recommend(self, users: Sequence[UserResult]) -> bool:
        """Fresh lists for written users whose change matters (throttled by event time)."""
        rec = self.recommender
        skip = self.skip
        due = [
            (u, why)
            for u in users
            if u.write and not (skip and skip(u.profile)) and (why := rec.trigger(u.profile))
        ]
        if not due:
            return False
        lists = await rec.compute_many([u.profile for u, _ in due])
        for (user, why), items in zip(due, lists, strict=True):
            if not items:  # nothing to recommend yet (an empty catalog): ask again next time
                continue
            rec.remember(user.profile, items, why)
            assert user.profile.recs is not None and user.profile.recs_vector is not None
            user.writes["r"] = orjson.dumps(user.profile.recs)
            user.writes["rv"] = user.profile.recs_vector
            change = RecsChange(user.profile, tuple(items), why)
            build = functools.partial(recommendation_event, change, self.model_id)
            user.emits.append(Emit("recs", "recommendation", user.user_id, build, change))
        return True
