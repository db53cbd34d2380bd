"""Apply one batch of routed records to the store and say what to emit downstream.

Stateful logic that *returns* what to emit (profiles announced, tombstones,
dead letters); the Kafka side lives in ``stream/``. Per batch: one load for
what the worker's cache lacks, one commit. A commit conflict (another worker
wrote the user since we read it, e.g. during a rebalance) reloads just those
users and recomputes them from their records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

from profiles.core import handover
from profiles.core.config import ProfileConfig
from profiles.core.errors import Contention
from profiles.core.profile import EventLearner, Outcome, Profile, Record, apply
from profiles.core.stitch import merge, merged_event
from profiles.embedding.stitch import merge_blob
from profiles.pipeline.feature import (
    Batch,
    Emit,
    Feature,
    IndexOp,
    ScoreRemove,
    ScoreSet,
    SetAdd,
    SetRemove,
    Stats,
    UserResult,
    encode_all,
    stored_fields,
)
from profiles.pipeline.store import Commit, Erasure, ProfileStore
from profiles.recommend.recommender import RecsChange
from profiles.tags.event_tags import TextTagger, event_tags, needs_catalog

log = logging.getLogger(__name__)
V = TypeVar("V")

MAX_ATTEMPTS = 5
#: Longest stretch of CPU work between two yields to the event loop while computing users.
SLICE_S = 0.02


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: str
    detail: str


@dataclass(slots=True)
class BatchResult:
    """What the caller should emit, and counts for metrics."""

    updated: list[Profile] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    emits: list[Emit] = field(default_factory=list)  # the features' downstream events
    # Records for the routed topic, in order (identity stitching: profiles/core/handover.py).
    routed: list[Record] = field(default_factory=list)
    applied: int = 0
    fenced: int = 0
    duplicates: int = 0
    items: int = 0
    conflicts: int = 0
    store_seconds: float = 0.0  # time spent in store loads and commits
    counts: Counter[str] = field(default_factory=Counter)  # the features' own counters
    seconds: Counter[str] = field(default_factory=Counter)  # ... and timings

    def absorb(self, other: BatchResult) -> None:
        """Add ``other`` (a part of the same batch) to this result."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, list | Counter):
                mine += theirs
            else:
                setattr(self, f.name, mine + theirs)

    def changes(self, kind: str) -> list[Any]:
        """The features' records of the ``kind`` events emitted (for metrics and tests)."""
        return [e.change for e in self.emits if e.kind == kind]

    @property
    def recommendations(self) -> list[RecsChange]:
        return self.changes("recommendation")

    @property
    def model_changes(self) -> int:
        """Profiles whose vectors came from another model (discarded)."""
        return self.counts["model_changes"]

    @property
    def recs_seconds(self) -> float:
        return self.seconds["recs"]


class LruCache(Generic[V]):
    """A small LRU map; the worker's copy of profiles it owns."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: OrderedDict[str, V] = OrderedDict()

    def get(self, key: str) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: str, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def pop(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class BatchUpdater:
    """Turns routed records into committed profiles and downstream emissions.

    The base profile (counts, RFM, tags, fences) is computed here; everything else is a
    :class:`~profiles.pipeline.feature.Feature` (``profiles/pipeline/builtin.py``), run
    in order on every batch.
    """

    def __init__(
        self,
        store: ProfileStore,
        config: ProfileConfig,
        tagger: TextTagger,
        features: Sequence[Feature] = (),
        cache_users: int = 50_000,
        item_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        cache: LruCache[Profile] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.tagger = tagger
        self.features = list(features)
        self.clock = clock
        # The worker's copy of the profiles it owns (``cache``: shared with its other parts).
        self.profiles: LruCache[Profile] = cache if cache is not None else LruCache(cache_users)
        self._items: LruCache[tuple[float, dict[str, Any]]] = LruCache(100_000)
        self.item_ttl_s = item_ttl_s

    @property
    def features(self) -> list[Feature]:
        return self._features

    @features.setter
    def features(self, features: Sequence[Feature]) -> None:
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ValueError(f"two features share a name: {names}")
        stored_fields([f.fields for f in features])  # refuses two claiming one field
        self._features = list(features)

    def forget(self) -> None:
        """Drop cached profiles (on rebalance: another worker may own them now)."""
        self.profiles.clear()

    async def process(self, records: Sequence[Record]) -> BatchResult:
        """Apply ``records``; on any error nothing cached is trusted (the caller retries)."""
        try:
            return await self._process(records)
        except BaseException:
            # Cached profiles may hold changes that never reached the store (apply works in
            # place): forget them, so a retry starts from what Redis holds.
            for record in records:
                if record.event["type"] != "product":
                    self.profiles.pop(record.event["user_id"])
            raise

    async def _process(self, records: Sequence[Record]) -> BatchResult:
        result = BatchResult()
        by_user: dict[str, list[Record]] = defaultdict(list)
        products: list[dict[str, Any]] = []
        for record in records:
            if record.event["type"] == "product":
                products.append(record.event)
            else:
                by_user[record.event["user_id"]].append(record)
        result.items = len(products)
        started = time.perf_counter()
        items = await self._catalog_and_profiles(by_user, products)
        result.store_seconds += time.perf_counter() - started
        batch = Batch(records, by_user, items)
        stats = Stats()
        for feature in self.features:
            await feature.prepare(batch, stats)
        learners = [x for f in self.features if (x := f.learner(batch)) is not None]
        commit = Commit(items=products, seen_items=batch.seen_items)
        todo = dict(by_user)
        stale: dict[str, list[IndexOp]] = {}  # index ops of conflicting attempts, per user
        try:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                batch.attempt = attempt
                users = []
                slice_ends = time.perf_counter() + SLICE_S
                for uid, recs in todo.items():
                    users.append(self._compute(uid, recs, batch, learners, stats))
                    if time.perf_counter() > slice_ends:  # let the loop breathe (web, heartbeats)
                        await asyncio.sleep(0)
                        slice_ends = time.perf_counter() + SLICE_S
                for feature in self.features:
                    await feature.compute(batch, users, stats)
                for user in users:
                    if user.user_id in stale:
                        user.ops = self._repair(stale.pop(user.user_id), user)
                if attempt == 1:  # batch-level counts: the store's fences decide what is new
                    commit.counts = list(batch.counts)
                    commit.pairs = list(batch.pairs)
                written = [u for u in users if u.write]
                commit.profiles = [u.profile for u in written]
                commit.fields = {u.user_id: encode_all(self.features, u) for u in written}
                commit.erasures = [e for u in users for e in u.erasures]
                commit.ops = [op for u in users for op in u.ops]
                started = time.perf_counter()
                outcome = await self.store.commit(commit) if commit else None
                result.store_seconds += time.perf_counter() - started
                conflicts = outcome.conflicts if outcome else set()
                for user in users:
                    if user.user_id not in conflicts:
                        self._settle(user, result)
                if attempt == 1:  # the store decided which catalog entry wins: read it anew
                    for item in [*products, *batch.seen_items]:
                        self._items.pop(item["product_id"])
                if not conflicts:
                    return result
                result.conflicts += len(conflicts)
                log.info(
                    "version conflict on %d users (attempt %d); reloading", len(conflicts), attempt
                )
                todo = {uid: by_user[uid] for uid in conflicts}
                for user in users:
                    if user.user_id in conflicts:
                        stale[user.user_id] = user.ops
                commit = Commit()
                for uid in conflicts:
                    self.profiles.pop(uid)
                await self._load_profiles(list(conflicts))
        finally:
            result.counts.update(stats.counts)
            result.seconds.update(stats.seconds)
        raise Contention(f"users still conflicting after {MAX_ATTEMPTS} attempts: {sorted(todo)}")

    async def _catalog_and_profiles(
        self, by_user: dict[str, list[Record]], products: list[dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """Load missing profiles and catalog entries in one store round trip."""
        now = self.clock()
        items: dict[str, dict[str, Any]] = {}
        wanted: set[str] = set()
        for recs in by_user.values():
            for record in recs:
                wanted.update(needs_catalog(record.event))
        for pid in wanted:
            hit = self._items.get(pid)
            if hit is not None and now - hit[0] < self.item_ttl_s:
                items[pid] = hit[1]
        for product in products:  # this batch's catalog updates are the freshest we know
            items[product["product_id"]] = product
        missing_items = [pid for pid in wanted if pid not in items]
        missing_users = [uid for uid in by_user if self.profiles.get(uid) is None]
        if missing_users or missing_items:
            profiles, loaded = await self.store.load(missing_users, missing_items)
            for uid, profile in profiles.items():
                self.profiles.put(uid, profile)
            for pid, item in loaded.items():
                self._items.put(pid, (now, item))
                items[pid] = item
        return items

    async def _load_profiles(self, user_ids: list[str]) -> None:
        profiles, _ = await self.store.load(user_ids, ())
        for uid, profile in profiles.items():
            self.profiles.put(uid, profile)

    def _compute(
        self,
        user_id: str,
        records: list[Record],
        batch: Batch,
        learners: Sequence[EventLearner],
        stats: Stats,
    ) -> UserResult:
        """The base profile after the user's records (erasures start it afresh)."""
        profile = self.profiles.get(user_id)
        assert profile is not None, "profiles are loaded before computing"
        for feature in self.features:
            feature.attach(profile, stats)
        res = UserResult(profile)
        base = profile.version
        pending: list[Record] = []
        items = batch.items

        def tagger(event: dict[str, Any]) -> list[tuple[str, float]]:
            return event_tags(event, self.tagger, items)

        def flush() -> None:
            outcome = apply(res.profile, pending, self.config, tagger, learners)
            _merge(res.outcome, outcome)
            pending.clear()

        for record in records:
            kind = record.event["type"]
            if kind != "user_erasure":
                if kind in handover.CONTROL_KINDS or res.profile.merged_into is not None:
                    flush()
                    self._handover(res, record, stats)
                else:
                    pending.append(record)
                continue
            flush()
            key = handover.fence_key(record)
            if record.offset <= res.profile.fences.get(key, -1):
                res.outcome.fenced += 1
                continue
            # The anonymous profiles merged into the user hold their data too.
            res.routed += handover.cascade_records(res.profile, record)
            fences = {**res.profile.fences, key: record.offset}
            erasure = Erasure(user_id, base, fences, _receipt(record, self.clock()))
            res.erasures.append(erasure)
            before, res.profile = (
                res.profile,
                Profile(user_id, version=erasure.new_version, fences=dict(fences)),
            )
            for feature in self.features:
                feature.erased(before, res)
                feature.attach(res.profile, stats)
            res.outcome.applied = 0  # whatever came before is erased with the profile
            base = erasure.new_version
        flush()
        if res.write:
            res.profile.version = base + 1
        return res

    def _handover(self, res: UserResult, record: Record, stats: Stats) -> None:
        """One step of identity stitching (README "Identity stitching") on ``res.profile``."""
        profile, event = res.profile, record.event
        kind = event["type"]
        if kind == handover.MERGE:
            anon_id = event["anonymous_id"]
            if merge(profile, handover.snapshot_of(event), self.config):
                vectors = handover.vectors_of(event)
                if vectors is not None and profile.embedding is not None:
                    merge_blob(profile.embedding, vectors)
                res.outcome.applied += 1
                stats.counts["merges"] = stats.counts.get("merges", 0) + 1
                ts = int(event["ts"])
                res.emits.append(
                    Emit(
                        "merged",
                        "profile_merged",
                        profile.user_id,
                        lambda _now: merged_event(profile, anon_id, ts),
                        anon_id,
                    )
                )
            else:  # a redelivered merge: ``merged`` fences it
                res.outcome.fenced += 1
        elif kind == handover.SEAL:
            into = event["into"]
            fenced = record.offset <= profile.fences.get(record.source.key, -1)
            if profile.merged_into is None:
                if fenced:  # sealed and erased since: nothing to merge
                    res.outcome.fenced += 1
                    return
                profile.fences[record.source.key] = record.offset
                profile.merged_into = into
                res.outcome.applied += 1  # written in the profile's own fenced write
                res.routed.append(handover.merge_record(record, profile))
            elif profile.merged_into != into:  # first link wins
                stats.counts["links_refused"] = stats.counts.get("links_refused", 0) + 1
                log.info("%s is merged into another user already; link refused", profile.user_id)
            elif fenced:
                # A redelivered seal: its batch's first send of the merge may never have
                # left (a crash after the commit), so it goes again (``merged`` fences it).
                # A later link to the same user needs none: the seal's own batch sent it.
                res.routed.append(handover.merge_record(record, profile))
        elif kind == handover.TRAITS:
            if record.offset <= profile.fences.get(record.source.key, -1):
                res.outcome.fenced += 1
                return
            profile.fences[record.source.key] = record.offset
            profile.traits.update(event["traits"])
            res.outcome.applied += 1
        else:  # an event of a sealed anonymous profile: the user's now
            assert profile.merged_into is not None
            if record.offset <= profile.fences.get(record.source.key, -1):
                # Applied before the seal (so in the merged snapshot): a redelivery. Not
                # forwarded, or it could reach the user before a re-sent merge does.
                res.outcome.fenced += 1
            elif event["event_id"] in profile.recent_ids:
                # A retry of an event applied here before the seal: a duplicate here, where
                # the window holds it (the user's, past the merge, may have trimmed it).
                res.outcome.duplicates += 1
            else:
                res.routed.append(handover.forward(record, profile.merged_into))

    def _repair(self, stale: list[IndexOp], user: UserResult) -> list[IndexOp]:
        """``user``'s ops, plus undoing what earlier, conflicting attempts did to the indexes.

        Their ops were applied with the failed writes; any entry they touched that this
        attempt does not set again is put back as the profile's state implies (removed, or
        re-added if a stale attempt removed it).
        """
        touched = {(op.index, op.member) for op in user.ops}
        implied = {
            (op.index, op.member): op for f in self.features for op in f.indexed(user.profile)
        }
        fixes: list[IndexOp] = []
        for op in stale:
            key = (op.index, op.member)
            if key in touched:
                continue
            touched.add(key)
            if key in implied:
                fixes.append(implied[key])
            elif isinstance(op, SetAdd):
                fixes.append(SetRemove(op.index, op.member))
            elif isinstance(op, ScoreSet):
                fixes.append(ScoreRemove(op.index, op.member))
        return [*fixes, *user.ops]

    def _settle(self, user: UserResult, result: BatchResult) -> None:
        self.profiles.put(user.user_id, user.profile)
        result.applied += user.outcome.applied
        result.fenced += user.outcome.fenced
        result.duplicates += user.outcome.duplicates
        if user.outcome.unmatched_refunds:
            result.counts["refunds_unmatched"] += user.outcome.unmatched_refunds
        result.dead.extend(
            DeadLetter(
                r,
                "too_late",
                f"event time is more than {self.config.lateness_ms} ms "
                "before the user's latest event",
            )
            for r in user.outcome.late
        )
        if user.erasures:
            result.erased.append(user.user_id)
        result.emits += user.emits
        result.routed += user.routed
        profile = user.profile
        if user.write or (user.outcome.fenced > 0 and profile.last_ts is not None):
            result.updated.append(profile)


def _merge(total: Outcome, part: Outcome) -> None:
    total.applied += part.applied
    total.fenced += part.fenced
    total.duplicates += part.duplicates
    total.unmatched_refunds += part.unmatched_refunds
    total.late.extend(part.late)
    total.counted.extend(part.counted)


def _receipt(record: Record, now: float) -> dict[str, Any]:
    event = record.event
    return {
        "user_id": event["user_id"],
        "requested_by": event["requested_by"],
        "reason": event.get("reason", ""),
        "event_id": event["event_id"],
        "requested_ts": event["ts"],
        "erased_at_ms": int(now * 1000),
        "source": f"{record.source.key}@{record.offset}",
    }


def chunks(records: Sequence[Record], size: int) -> list[list[Record]]:
    """``records`` in parts of about ``size`` (more only for one user's records), each
    user's records in one part and in order, catalog events first: applied part after part,
    they give what the whole would, with a bounded stretch of work per part.

    >>> from profiles.core.partition import InputPartition
    >>> src = InputPartition("in", 0)
    >>> evs = [{"type": "click", "user_id": u} for u in "abab"] + [{"type": "product"}]
    >>> parts = chunks([Record(src, i, e) for i, e in enumerate(evs)], 2)
    >>> [[r.offset for r in part] for part in parts]
    [[4, 0, 2], [1, 3]]
    """
    catalog = [r for r in records if r.event["type"] == "product"]
    users: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        if record.event["type"] != "product":
            users[record.event["user_id"]].append(record)
    parts: list[list[Record]] = [catalog]
    for group in users.values():
        if len(parts[-1]) >= size:
            parts.append([])
        parts[-1] += group
    return [part for part in parts if part]
