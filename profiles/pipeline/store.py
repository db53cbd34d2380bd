"""The narrow storage interface of the profile engine, and an in-memory implementation.

A store loads profiles and catalog items, and commits a batch of changes with
optimistic concurrency: every profile write names the version it was computed
from, and a write whose base version is stale is refused (reported as a
conflict) instead of applied. Together with the per-source offset fences kept
inside each profile this makes every write idempotent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from profiles.core.profile import Profile
from profiles.pipeline.builtin import CODECS
from profiles.pipeline.feature import (
    CountsAdd,
    Fields,
    FieldValue,
    IndexOp,
    PairsAdd,
    ScoreRemove,
    ScoreSet,
    SetAdd,
    SetRemove,
    decode_all,
    stored_fields,
)
from profiles.recommend.popularity import FencedCounts
from profiles.together.counts import FencedPairs


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
    # user -> the feature hash fields written with its profile (``Feature.fields``)
    fields: dict[str, dict[str, FieldValue]] = field(default_factory=dict)
    erasures: list[Erasure] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)  # ``product`` events
    # Items known only from tracking events (title + category): stored unless catalogued.
    seen_items: list[dict[str, Any]] = field(default_factory=list)
    ops: list[IndexOp] = field(default_factory=list)  # index updates that follow profiles
    counts: list[CountsAdd] = field(default_factory=list)  # fenced by source offset
    pairs: list[PairsAdd] = field(default_factory=list)  # likewise

    def __bool__(self) -> bool:
        return bool(
            self.profiles
            or self.erasures
            or self.items
            or self.seen_items
            or self.ops
            or self.counts
            or self.pairs
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

    def __init__(self, codecs: Sequence[Fields] = CODECS) -> None:
        self.codecs = tuple(codecs)
        self._names = stored_fields(self.codecs)
        # user -> (version, base profile bytes, feature fields as Redis returns them)
        self.profiles: dict[str, tuple[int, bytes, dict[str, bytes]]] = {}
        self.erased: dict[str, tuple[int, dict[str, int], dict[str, Any]]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.sets: dict[str, set[str]] = {}
        self.scores: dict[str, dict[str, int]] = {}
        self.popularity: dict[int, FencedCounts] = {}
        # Other features' shared counters (CountsAdd.counter), by name and partition.
        self.counters: defaultdict[str, dict[int, FencedCounts]] = defaultdict(dict)
        # "i:<item>" (neighbours) or "m:<partition>" (marginals) -> pair counts
        self.together: dict[str, FencedPairs] = {}
        self.commits = 0

    def field(self, user_id: str, name: str) -> bytes | None:
        """A stored feature field of ``user_id`` (None: absent)."""
        return self.profiles[user_id][2].get(name) if user_id in self.profiles else None

    def set_field(self, user_id: str, name: str, value: FieldValue) -> None:
        """Write one feature field of a stored user (as another worker would have)."""
        self.profiles[user_id][2][name] = _stored(value)

    async def load(
        self, user_ids: Collection[str], item_ids: Collection[str]
    ) -> tuple[dict[str, Profile], dict[str, dict[str, Any]]]:
        profiles = {uid: self._load_one(uid) for uid in user_ids}
        items = {pid: self.items[pid] for pid in item_ids if pid in self.items}
        return profiles, items

    def _load_one(self, user_id: str) -> Profile:
        if user_id in self.profiles:
            version, blob, stored = self.profiles[user_id]
            profile = Profile.from_bytes(user_id, version, blob)
            decode_all(self.codecs, profile, [stored.get(n) for n in self._names])
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
            self.erased[erasure.user_id] = (erasure.new_version, erasure.fences, erasure.receipt)
            result.erased_keys[erasure.user_id] = int(existed)
        for profile in commit.profiles:
            if self._version(profile.user_id) != profile.version - 1:
                result.conflicts.add(profile.user_id)
                continue
            old = self.profiles.get(profile.user_id)
            stored = dict(old[2]) if old is not None else {}  # unwritten fields stay
            written = commit.fields.get(profile.user_id, {})
            stored.update({name: _stored(value) for name, value in written.items()})
            self.profiles[profile.user_id] = (profile.version, profile.to_bytes(), stored)
        for op in commit.ops:
            match op:
                case SetAdd(index, member):
                    self.sets.setdefault(index, set()).add(member)
                case SetRemove(index, member):
                    self.sets.get(index, set()).discard(member)
                case ScoreSet(index, member, score):
                    self.scores.setdefault(index, {})[member] = score
                case ScoreRemove(index, member):
                    self.scores.get(index, {}).pop(member, None)
        for add in commit.counts:
            shared = self.popularity if add.counter == "pop" else self.counters[add.counter]
            counts = shared.setdefault(add.partition, FencedCounts(add.half_life_ms))
            counts.add(add.entries)
        for pairs in commit.pairs:
            name = f"m:{pairs.partition}" if pairs.item is None else f"i:{pairs.item}"
            cap = 0 if pairs.item is None else pairs.cap
            kept = self.together.setdefault(name, FencedPairs(pairs.half_life_ms, cap))
            kept.add(pairs.entries)
        for item in commit.items:
            old_item = self.items.get(item["product_id"])
            if old_item is None or "seen_in" in old_item or item_wins(item, old_item):
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


def _stored(value: FieldValue) -> bytes:
    """A field value as Redis hands it back: ints and strings as their text."""
    return value if isinstance(value, bytes) else str(value).encode()
