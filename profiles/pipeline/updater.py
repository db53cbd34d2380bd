"""Apply one batch of routed records to the store and say what to emit downstream.

Stateful logic that *returns* what to emit (profiles announced, tombstones,
dead letters); the Kafka side lives in ``stream/``. Per batch: one load for
what the worker's cache lacks, one commit. A commit conflict (another worker
wrote the user since we read it, e.g. during a rebalance) reloads just those
users and recomputes them from their records.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Generic, TypeVar

import numpy as np

from profiles.churn.tracker import ChurnChange, ChurnTracker
from profiles.core.config import ProfileConfig
from profiles.core.errors import Contention
from profiles.core.ownership import owner
from profiles.core.profile import Outcome, Profile, Record, apply
from profiles.embedding.embedder import Embedder
from profiles.embedding.feature import vector_learner
from profiles.embedding.profile import EmbeddingProfile
from profiles.embedding.text import combine, event_texts
from profiles.pipeline.store import Commit, Erasure, ProfileStore
from profiles.recommend.feature import product_lines, seen_item
from profiles.recommend.popularity import Contribution, count_field, interactions
from profiles.recommend.recommender import Recommender, RecsChange
from profiles.segments.segmenter import SegmentChange, Segmenter
from profiles.tags.event_tags import TextTagger, event_tags, needs_catalog

log = logging.getLogger(__name__)
V = TypeVar("V")

MAX_ATTEMPTS = 5


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
    applied: int = 0
    fenced: int = 0
    duplicates: int = 0
    items: int = 0
    conflicts: int = 0
    model_changes: int = 0  # profiles whose vectors came from another model (discarded)
    store_seconds: float = 0.0  # time spent in store loads and commits
    segment_changes: list[SegmentChange] = field(default_factory=list)
    churn_changes: list[ChurnChange] = field(default_factory=list)
    recommendations: list[RecsChange] = field(default_factory=list)
    recs_seconds: float = 0.0  # time spent computing recommendation lists

    def absorb(self, other: BatchResult) -> None:
        """Add ``other`` (a part of the same batch) to this result."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, list):
                mine.extend(theirs)
            else:
                setattr(self, f.name, mine + theirs)


@dataclass(slots=True)
class _UserResult:
    profile: Profile
    erasures: list[Erasure] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)
    moves: list[tuple[str, int | None, int | None]] = field(default_factory=list)
    segment_change: SegmentChange | None = None
    churn_change: ChurnChange | None = None
    due: list[tuple[str, int, int | None]] = field(default_factory=list)
    recs: RecsChange | None = None

    @property
    def write(self) -> bool:
        return self.outcome.applied > 0


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
    """Turns routed records into committed profiles and downstream emissions."""

    def __init__(
        self,
        store: ProfileStore,
        config: ProfileConfig,
        tagger: TextTagger,
        cache_users: int = 50_000,
        item_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        embedder: Embedder | None = None,
        segmenter: Segmenter | None = None,
        churn: ChurnTracker | None = None,
        partitions: int = 1,
        recommender: Recommender | None = None,
        popularity_half_life_ms: int = 7 * 86_400_000,
    ) -> None:
        self.store = store
        self.config = config
        self.tagger = tagger
        self.clock = clock
        self.profiles: LruCache[Profile] = LruCache(cache_users)
        self._items: LruCache[tuple[float, dict[str, Any]]] = LruCache(100_000)
        self.item_ttl_s = item_ttl_s
        self.embedder = embedder
        self.segmenter = segmenter
        self.churn = churn
        self.partitions = partitions
        self.recommender = recommender
        self.popularity_half_life_ms = popularity_half_life_ms

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
        commit = Commit()
        for record in records:
            if record.event["type"] == "product":
                commit.items.append(record.event)
            else:
                by_user[record.event["user_id"]].append(record)
        result.items = len(commit.items)
        started = time.perf_counter()
        items = await self._catalog_and_profiles(by_user, commit.items)
        result.store_seconds += time.perf_counter() - started
        vectors = await self._vectors(records, items)
        commit.seen_items = self._seen_items(by_user, items)
        todo = dict(by_user)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            computed = {
                uid: self._compute(uid, recs, items, vectors, result) for uid, recs in todo.items()
            }
            commit.profiles = [r.profile for r in computed.values() if r.write]
            commit.erasures = [e for r in computed.values() for e in r.erasures]
            self._segment(computed, records)
            self._score_churn(computed)
            if attempt == 1:
                commit.popularity = self._popularity(computed)
                commit.popularity_half_life_ms = self.popularity_half_life_ms
            result.recs_seconds += await self._recommend(computed, commit)
            commit.moves = [m for r in computed.values() for m in r.moves]
            commit.due = [d for r in computed.values() for d in r.due]
            commit.customers = [
                (uid, owner(uid, self.partitions), r.write and r.profile.orders > 0)
                for uid, r in computed.items()
                if (r.write and r.profile.orders > 0) or r.erasures
            ]
            started = time.perf_counter()
            outcome = await self.store.commit(commit) if commit else None
            result.store_seconds += time.perf_counter() - started
            conflicts = outcome.conflicts if outcome else set()
            for uid, res in computed.items():
                if uid not in conflicts:
                    self._settle(uid, res, result)
            if not conflicts:
                return result
            result.conflicts += len(conflicts)
            log.info(
                "version conflict on %d users (attempt %d); reloading", len(conflicts), attempt
            )
            todo = {uid: by_user[uid] for uid in conflicts}
            commit = Commit()
            for uid in conflicts:
                self.profiles.pop(uid)
            await self._load_profiles(list(conflicts))
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

    def _segment(self, computed: dict[str, _UserResult], records: Sequence[Record]) -> None:
        """Segments of the users written in this batch, as of the batch's latest event time."""
        if self.segmenter is None or not records:
            return
        written = [r.profile for r in computed.values() if r.write]
        as_of = max(int(r.event["ts"]) for r in records)
        for change in self.segmenter.assign(written, as_of):
            res = computed[change.profile.user_id]
            res.segment_change = change
            res.moves.append((change.profile.user_id, change.previous, change.segment))

    def _score_churn(self, computed: dict[str, _UserResult]) -> None:
        """Churn risk of each written user as of its latest event; plan its next check."""
        if self.churn is None:
            return
        for res in computed.values():
            user = res.profile.user_id
            if res.erasures and not res.write:
                res.due.append((user, owner(user, self.partitions), None))
            if not res.write:
                continue
            res.churn_change = self.churn.update(res.profile, res.profile.last_ts or 0)
            next_ms = (res.profile.churn or {}).get("next_check_ms")
            res.due.append((user, owner(user, self.partitions), next_ms))

    def _seen_items(
        self, by_user: dict[str, list[Record]], items: dict[str, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Products the index lacks but a tracking event names with title and category: they
        join the catalog as *seen* items (a later ``product`` event replaces them)."""
        if self.recommender is None:
            return []
        index = self.recommender.index
        seen: dict[str, dict[str, Any]] = {}
        for recs in by_user.values():
            for record in recs:
                event = record.event
                for line in product_lines(event):
                    pid = line["product_id"]
                    if pid in index or pid in items or pid in seen:
                        continue
                    if line.get("title") and line.get("category"):
                        seen[pid] = seen_item(line, event)
        return list(seen.values())

    def _popularity(self, computed: dict[str, _UserResult]) -> dict[int, list[Contribution]]:
        """Item interactions of the batch, per owner partition, for the shared popularity.

        Taken once per batch (first attempt) from the records applied now or before, whatever
        the commit's conflicts: the store's per-source fences decide what is new. Each
        interaction counts for everyone and, when the user has a segment, for that segment.
        """
        if self.recommender is None:
            return {}
        weights = self.config.kind_weights
        out: dict[int, list[Contribution]] = defaultdict(list)
        for uid, res in computed.items():
            entries = out[owner(uid, self.partitions)]
            # The segment the user is in after this batch: counts follow people as they move.
            segment = res.profile.segment
            for r in res.outcome.counted:
                ts = int(r.event["ts"])
                for pid, w in interactions(r.event, weights):
                    entries.append((r.source, r.offset, ts, count_field(pid), w))
                    if segment is not None:
                        entries.append((r.source, r.offset, ts, count_field(pid, segment), w))
        return {p: e for p, e in out.items() if e}

    async def _recommend(self, computed: dict[str, _UserResult], commit: Commit) -> float:
        """Fresh lists for written users whose change matters (throttled by event time)."""
        rec = self.recommender
        if rec is None:
            return 0.0
        due = [
            (res, why)
            for res in computed.values()
            if res.write and (why := rec.trigger(res.profile))
        ]
        if not due:
            return 0.0
        started = time.perf_counter()
        lists = await rec.compute_many([res.profile for res, _ in due])
        for (res, why), items in zip(due, lists, strict=True):
            if not items:  # nothing to recommend yet (an empty catalog): ask again next time
                continue
            rec.remember(res.profile, items, why)
            assert res.profile.recs is not None and res.profile.recs_vector is not None
            commit.recs[res.profile.user_id] = (res.profile.recs, res.profile.recs_vector)
            res.recs = RecsChange(res.profile, tuple(items), why)
        return time.perf_counter() - started

    async def _vectors(
        self, records: Sequence[Record], items: dict[str, dict[str, Any]]
    ) -> dict[str, np.ndarray]:
        """One encoder call for every distinct text of the batch (catalog items included,
        so a product's vector is ready before anyone clicks it)."""
        if self.embedder is None:
            return {}
        texts = [text for r in records for text, _ in event_texts(r.event, items)]
        return await self.embedder.vectors(texts)

    async def _load_profiles(self, user_ids: list[str]) -> None:
        profiles, _ = await self.store.load(user_ids, ())
        for uid, profile in profiles.items():
            self.profiles.put(uid, profile)

    def _compute(
        self,
        user_id: str,
        records: list[Record],
        items: dict[str, dict[str, Any]],
        vectors: dict[str, np.ndarray],
        result: BatchResult,
    ) -> _UserResult:
        profile = self.profiles.get(user_id)
        assert profile is not None, "profiles are loaded before computing"
        self._attach_embedding(profile, result)
        res = _UserResult(profile)
        base = profile.version
        pending: list[Record] = []

        def tagger(event: dict[str, Any]) -> list[tuple[str, float]]:
            return event_tags(event, self.tagger, items)

        def embed(event: dict[str, Any]) -> np.ndarray | None:
            return combine(event_texts(event, items), vectors)

        def flush() -> None:
            learners = [vector_learner(embed)] if self.embedder else []
            outcome = apply(res.profile, pending, self.config, tagger, learners)
            _merge(res.outcome, outcome)
            pending.clear()

        for record in records:
            if record.event["type"] != "user_erasure":
                pending.append(record)
                continue
            flush()
            if record.offset <= res.profile.fences.get(record.source, -1):
                res.outcome.fenced += 1
                continue
            fences = {**res.profile.fences, record.source: record.offset}
            if res.profile.segment is not None:
                res.moves.append((user_id, res.profile.segment, None))
            erasure = Erasure(user_id, base, fences, _receipt(record, self.clock()))
            res.erasures.append(erasure)
            res.profile = Profile(user_id, version=erasure.new_version, fences=dict(fences))
            self._attach_embedding(res.profile, result)
            res.outcome.applied = 0  # whatever came before is erased with the profile
            base = erasure.new_version
        flush()
        if res.write:
            res.profile.version = base + 1
        return res

    def _attach_embedding(self, profile: Profile, result: BatchResult) -> None:
        """Decode the stored vectors once per cached profile; another model's are dropped."""
        if self.embedder is None or profile.embedding is not None:
            return
        profile.embedding, changed = EmbeddingProfile.load(
            profile.embedding_blob, self.embedder.config
        )
        profile.embedding_blob = None
        if changed:
            result.model_changes += 1
            log.warning(
                "user %s: stored vectors are from another model; starting afresh with %s",
                profile.user_id,
                self.embedder.config.model_id,
            )

    def _settle(self, user_id: str, res: _UserResult, result: BatchResult) -> None:
        self.profiles.put(user_id, res.profile)
        result.applied += res.outcome.applied
        result.fenced += res.outcome.fenced
        result.duplicates += res.outcome.duplicates
        result.dead.extend(
            DeadLetter(
                r,
                "too_late",
                f"event time is more than {self.config.lateness_ms} ms "
                "before the user's latest event",
            )
            for r in res.outcome.late
        )
        if res.erasures:
            result.erased.append(user_id)
        if res.segment_change is not None:
            result.segment_changes.append(res.segment_change)
        if res.churn_change is not None:
            result.churn_changes.append(res.churn_change)
        if res.recs is not None:
            result.recommendations.append(res.recs)
        announce = res.write or (res.outcome.fenced > 0 and res.profile.last_ts is not None)
        if announce:
            result.updated.append(res.profile)


def _merge(total: Outcome, part: Outcome) -> None:
    total.applied += part.applied
    total.fenced += part.fenced
    total.duplicates += part.duplicates
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
        "source": f"{record.source}@{record.offset}",
    }
