"""The narrow storage interface of the profile engine, and an in-memory implementation.

A store loads profiles and catalog items, and commits a batch of changes with
optimistic concurrency: every profile write names the version it was computed
from, and a write whose base version is stale is refused (reported as a
conflict) instead of applied. Together with the per-source offset fences kept
inside each profile this makes every write idempotent.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from profiles.core.profile import Profile
from profiles.recommend.popularity import Contribution, FencedCounts


@dataclass(slots=True)
class Erasure:
    """Delete a user's data; keep only the fences so redelivered events stay applied-once."""

    user_id: str
    expected_version: int
    fences: dict[str, int]
    receipt: dict[str, Any]

    @property
    def new_version(self) -> int:
        return self.expected_version + 1


@dataclass(slots=True)
class Commit:
    """Everything one batch writes; applied in a single round trip by the Redis store."""

    profiles: list[Profile] = field(default_factory=list)  # version already bumped by one
    erasures: list[Erasure] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)  # ``product`` events
    # Items known only from tracking events (title + category): stored unless catalogued.
    seen_items: list[dict[str, Any]] = field(default_factory=list)
    # (user, previous segment, new segment): membership sets follow the profiles.
    moves: list[tuple[str, int | None, int | None]] = field(default_factory=list)
    # (user, owner partition, next churn check ms or None to drop from the due index)
    due: list[tuple[str, int, int | None]] = field(default_factory=list)
    customers: list[tuple[str, int, bool]] = field(default_factory=list)  # add (True) / remove
    # user -> (last recommendation state, its long-term vector): written with the profile.
    recs: dict[str, tuple[dict[str, Any], bytes]] = field(default_factory=dict)
    # owner partition -> item popularity contributions (fenced by source offset in the store)
    popularity: dict[int, list[Contribution]] = field(default_factory=dict)
    popularity_half_life_ms: int = 7 * 86_400_000

    def __bool__(self) -> bool:
        return bool(
            self.profiles or self.erasures or self.items or self.seen_items or self.popularity
        )


@dataclass(slots=True)
class CommitResult:
    conflicts: set[str] = field(default_factory=set)  # users whose base version was stale
    erased_keys: dict[str, int] = field(default_factory=dict)  # user -> keys deleted


class ProfileStore(Protocol):
    """Where profiles live. Implementations: :class:`MemoryStore`, ``RedisStore``."""

    async def load(
        self, user_ids: Collection[str], item_ids: Collection[str]
    ) -> tuple[dict[str, Profile], dict[str, dict[str, Any]]]:
        """Profiles for every id (fresh ones for unknown users) and the known items."""
        ...

    async def commit(self, commit: Commit) -> CommitResult: ...

    async def get(self, user_id: str) -> Profile | None: ...

    async def close(self) -> None: ...


def item_wins(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Catalog upserts: the later event time wins; ties go to the larger event id."""
    if old is None:
        return True
    return (new["ts"], new["event_id"]) >= (old["ts"], old["event_id"])


class MemoryStore:
    """Dict-backed store with the same semantics as the Redis one, for unit tests."""

    def __init__(self) -> None:
        self.profiles: dict[str, tuple[int, bytes, bytes | None]] = {}
        self.erased: dict[str, tuple[int, dict[str, int], dict[str, Any]]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.segments: dict[str, int] = {}
        self.churn: dict[str, dict[str, Any]] = {}
        self.due: dict[int, dict[str, int]] = {}
        self.members: dict[int, set[str]] = {}
        self.recs: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.popularity: dict[int, FencedCounts] = {}
        self.commits = 0

    async def load(
        self, user_ids: Collection[str], item_ids: Collection[str]
    ) -> tuple[dict[str, Profile], dict[str, dict[str, Any]]]:
        profiles = {uid: self._load_one(uid) for uid in user_ids}
        items = {pid: self.items[pid] for pid in item_ids if pid in self.items}
        return profiles, items

    def _load_one(self, user_id: str) -> Profile:
        if user_id in self.profiles:
            version, blob, vectors = self.profiles[user_id]
            profile = Profile.from_bytes(user_id, version, blob)
            profile.embedding_blob = vectors
            profile.segment = self.segments.get(user_id)
            profile.churn = self.churn.get(user_id)
            if user_id in self.recs:
                profile.recs, profile.recs_vector = self.recs[user_id]
            return profile
        if user_id in self.erased:
            version, fences, _ = self.erased[user_id]
            return Profile(user_id, version=version, fences=dict(fences))
        return Profile(user_id)

    def _version(self, user_id: str) -> int:
        if user_id in self.profiles:
            return self.profiles[user_id][0]
        if user_id in self.erased:
            return self.erased[user_id][0]
        return 0

    async def commit(self, commit: Commit) -> CommitResult:
        self.commits += 1
        result = CommitResult()
        # Erasures first: a user erased and active again in one batch is written after.
        for erasure in commit.erasures:
            if self._version(erasure.user_id) != erasure.expected_version:
                result.conflicts.add(erasure.user_id)
                continue
            existed = self.profiles.pop(erasure.user_id, None) is not None
            self.recs.pop(erasure.user_id, None)
            old_segment = self.segments.pop(erasure.user_id, None)
            if old_segment is not None:
                self.members.get(old_segment, set()).discard(erasure.user_id)
            self.erased[erasure.user_id] = (erasure.new_version, erasure.fences, erasure.receipt)
            result.erased_keys[erasure.user_id] = int(existed)
        for profile in commit.profiles:
            if self._version(profile.user_id) != profile.version - 1:
                result.conflicts.add(profile.user_id)
                continue
            vectors = (
                profile.embedding.to_bytes()
                if profile.embedding is not None
                else self.profiles.get(profile.user_id, (0, b"", None))[2]
            )
            self.profiles[profile.user_id] = (profile.version, profile.to_bytes(), vectors)
            if profile.segment is not None:
                self.segments[profile.user_id] = profile.segment
            if profile.churn is not None:
                self.churn[profile.user_id] = dict(profile.churn)
            if profile.user_id in commit.recs:
                state, vector = commit.recs[profile.user_id]
                self.recs[profile.user_id] = (dict(state), vector)
        for user, previous, segment in commit.moves:
            if previous is not None:
                self.members.get(previous, set()).discard(user)
            if segment is not None:
                self.members.setdefault(segment, set()).add(user)
        for user, partition, next_ms in commit.due:
            index = self.due.setdefault(partition, {})
            if next_ms is None:
                index.pop(user, None)
            else:
                index[user] = next_ms
        for partition, entries in commit.popularity.items():
            counts = self.popularity.setdefault(
                partition, FencedCounts(commit.popularity_half_life_ms)
            )
            counts.add(entries)
        for item in commit.items:
            old = self.items.get(item["product_id"])
            if old is None or "seen_in" in old or item_wins(item, old):
                self.items[item["product_id"]] = orjson.loads(orjson.dumps(item))
        for item in commit.seen_items:
            if item["product_id"] not in self.items:
                self.items[item["product_id"]] = orjson.loads(orjson.dumps(item))
        return result

    async def get(self, user_id: str) -> Profile | None:
        if user_id not in self.profiles:
            return None
        return self._load_one(user_id)

    async def close(self) -> None:
        return None
