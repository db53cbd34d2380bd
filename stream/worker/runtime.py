"""What the agents share inside one worker process: Redis, the updater, counters.

Built from :class:`~stream.settings.Settings` by :func:`stream.worker.app.create_app`;
started lazily by the first agent that needs it and closed with the app.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from mode import Service

from profiles.churn.bgnbd import BGNBDParams
from profiles.churn.risk import RiskConfig
from profiles.churn.sweeper import ChurnSweeper
from profiles.churn.tracker import ChurnChange, ChurnTracker
from profiles.core.errors import Outage
from profiles.core.privacy import pseudonymizer
from profiles.core.profile import Profile
from profiles.pipeline.updater import LruCache
from profiles.recommend.blend import Recommendation
from profiles.redis.churn import RedisChurnStore
from profiles.redis.marks import MarkStore
from profiles.redis.store import RedisStore
from profiles.tags.extractor import TagExtractor
from schemas.validate import Limits
from stream.security import redact_url
from stream.settings import Settings
from stream.worker.compose import Models, build_updater, load_models
from stream.worker.epochs import InputEpochs
from stream.worker.health import Health
from stream.worker.ingest import Inbound, Routed
from stream.worker.metrics import Metrics, Stats
from stream.worker.outages import OutageTracker

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from profiles.core.profile import Record
    from profiles.pipeline.updater import BatchResult

log = logging.getLogger(__name__)


def decode_limits(settings: Settings) -> Limits:
    """The bounds ``decode`` applies, from the settings (the worker and ``stream validate``)."""
    return Limits(
        max_bytes=settings.ingest.max_message_bytes,
        max_future_ms=int(settings.ingest.max_future_s * 1000),
        earliest_ms=settings.ingest.earliest_ms,
        registry_framing=settings.ingest.registry_framing == "accept",
    )


class Runtime(Service):
    """Owns the Redis connection and the batch updater of one worker."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.limits = decode_limits(settings)
        self.metrics = Metrics()
        self.stats = Stats(self.metrics)
        # (topic, partition) -> (next offset to process, broker timestamp ms of the last one)
        self.positions: dict[tuple[str, int], tuple[int, int]] = {}
        self._cache_seen = (0, 0, 0)
        self.store = RedisStore.from_url(
            settings.redis.url.get_secret_value(), settings.privacy.key, tls=settings.redis.tls
        )
        self.outages = OutageTracker(self.metrics.outages, self.metrics.outage_active)
        self.health = Health(self.metrics.crashes, self.outages, settings.worker.crash_exit_s)
        self.epochs = InputEpochs(
            MarkStore(self.store.client),
            on_new_epoch=lambda topic: self.metrics.fence_epochs.labels(topic).inc(),
        )
        # User ids -> pseudonyms at ingestion (RTP_PSEUDONYMIZE), and for lookups by clear id.
        self.pseudonyms = pseudonymizer(settings.privacy.pseudonymize, settings.privacy.key)
        self.tagger = TagExtractor()
        horizon = RiskConfig(horizon_days=settings.churn.horizon_days)
        self.churn = ChurnTracker(horizon) if settings.churn.enabled else None
        self.watermark_ms = 0  # latest event time seen by this worker
        self.models = Models()  # loaded by ensure_ready
        # The profiles this worker owns, shared by the updater and the churn sweep.
        self.profiles: LruCache[Profile] = LruCache(settings.profiles.cache_users)
        # The base features until the models load; then built whole again.
        self.updater = build_updater(
            settings, self.store, self.tagger, self.models, self.churn, self.profiles
        )
        self.churn_store = RedisChurnStore(self.store.client)
        self.sweeper = (
            None
            if self.churn is None
            else ChurnSweeper(
                self.churn,
                self.churn_store,
                self.store,
                self.profiles.get,
                settings.kafka.partitions,
            )
        )
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self.outputs_declared = False  # set by the agents once every output topic exists

    async def ensure_ready(self) -> None:
        """Connect to Redis and warm up; safe to call from every agent."""
        if self._ready.is_set():
            return
        async with self._lock:
            if self._ready.is_set():
                return
            await self.store.client.ping()
            await self.store.load_scripts()
            await self.churn_store.load_scripts()
            await self.epochs.marks.load_scripts()
            await asyncio.to_thread(self.tagger.warm_up)
            self.models = await load_models(self.settings, self.store.client, self.tagger)
            if self.models.mirror is not None:
                self.metrics.index_items.set(len(self.models.mirror.index))
            self.updater = build_updater(
                self.settings, self.store, self.tagger, self.models, self.churn, self.profiles
            )
            self._ready.set()
            log.info(
                "runtime ready: redis %s", redact_url(self.settings.redis.url.get_secret_value())
            )

    async def poll_catalog(self) -> None:
        """Timer body: follow catalog changes and popularity (the log position is kept on a
        failure: the next tick resumes from it)."""
        if self.models.mirror is None or not self.models.mirror.loaded:
            return
        try:
            await self.models.mirror.poll()
        finally:
            self.metrics.index_items.set(len(self.models.mirror.index))

    async def recommend_for(
        self, user_id: str, k: int
    ) -> tuple[Profile, list[Recommendation]] | None:
        """A fresh list for one user from the stored profile (None: unknown user)."""
        if self.models.recommender is None:
            raise LookupError("recommendations are off (RTP_RECOMMEND / RTP_EMBEDDINGS)")
        profile = await self.store.get(user_id)
        if profile is None:
            return None
        (items,) = await self.models.recommender.compute_many([profile], k)
        return profile, items

    def recs_stats(self) -> dict[str, Any]:
        if self.models.mirror is None:
            return {"enabled": False}
        return {
            "enabled": True,
            "items": len(self.models.mirror.index),
            "index_device": self.models.mirror.index.device,
            "catalog_updates": self.models.mirror.updates,
            "recommendations": self.stats.recommendations,
        }

    def failed(self, what: str, exc: Outage) -> None:
        """An outage made ``what`` fail; it is retried (see :mod:`stream.worker.retry`)."""
        cause = exc.__cause__ or exc
        self.metrics.retries.labels(type(cause).__name__).inc()
        self.outages.failed(what, exc)

    def ok(self, what: str) -> None:
        self.outages.ok(what)

    def note_skipped(
        self, reason: str, topic: str, partition: int, offset: int, detail: str
    ) -> None:
        """An input record skipped without a dead letter (it could not even be sent as one)."""
        self.metrics.skipped.labels(reason).inc()
        log.error("skipped %s:%s@%s (%s): %s", topic, partition, offset, reason, detail)

    def health_report(self) -> tuple[bool, dict[str, Any]]:
        """``/health``: ready once Redis answered and partitions are owned, and while nothing
        crashed, no dependency is down and no partition is refused; the reasons if not."""
        problems = self.health.problems()
        if not self.ready:
            problems.insert(0, "starting: Redis not answered or the model not loaded yet")
        elif not self.outputs_declared:
            problems.insert(0, "starting: output topics not declared yet")
        if self.stats.assigned <= 0:
            problems.append("no partitions assigned (yet)")
        ready = not problems
        self.metrics.ready.set(1 if ready else 0)
        body: dict[str, Any] = {"alive": True, "ready": ready, "assigned": self.stats.assigned}
        if problems:
            body["problems"] = problems
        return ready, body

    def observe_ingest(self, messages: list[Inbound], routed: Routed) -> None:
        m = self.metrics
        m.consumed.labels("ingest").inc(len(messages))
        m.batches.labels("ingest").inc()
        m.last_batch.labels("ingest").set(len(messages))
        for kind, n in routed.kinds.items():
            m.events.labels(kind).inc(n)
        for d in routed.dead:
            m.dead.labels(d.reason, "ingest").inc()
        m.batch_size.labels("ingest").observe(len(messages))
        self._advance(messages)

    def observe_update(
        self, bundles: list[Inbound], records: list[Record], result: BatchResult, elapsed: float
    ) -> None:
        m = self.metrics
        m.consumed.labels("update").inc(len(bundles))
        m.batches.labels("update").inc()
        m.last_batch.labels("update").set(len(bundles))
        m.catalog_items.inc(result.items)
        m.conflicts.inc(result.conflicts)
        m.model_changes.inc(result.model_changes)
        m.last_update_seconds.set(elapsed)
        m.batch_size.labels("update").observe(len(records))
        m.batch_seconds.observe(elapsed)
        m.redis_seconds.observe(result.store_seconds)
        for outcome, n in (
            ("applied", result.applied),
            ("fenced", result.fenced),
            ("duplicate", result.duplicates),
            ("late", len(result.dead)),
        ):
            m.applied.labels(outcome).inc(n)
        for d in result.dead:
            m.dead.labels(d.reason, "update").inc()
        m.emitted.labels("profile_updated").inc(len(result.updated))
        m.emitted.labels("tombstone").inc(len(result.erased))
        m.emitted.labels("segment_changed").inc(len(result.segment_changes))
        m.emitted.labels("churn_risk").inc(len(result.churn_changes))
        m.emitted.labels("recommendation").inc(len(result.recommendations))
        if result.recs_seconds:
            m.recommend_seconds.observe(result.recs_seconds)
        for r in records:
            self.watermark_ms = max(self.watermark_ms, int(r.event["ts"]))
        m.observe_latency([r.produced_ms for r in records], [int(r.event["ts"]) for r in records])
        self._observe_encoder()
        self._advance(bundles)

    def _observe_encoder(self) -> None:
        if self.models.embedder is None:
            return
        cache, m = self.models.embedder.cache, self.metrics
        now = (cache.hits, cache.tier_hits, cache.misses)
        for source, new, old in zip(
            ("memory", "redis", "encoded"), now, self._cache_seen, strict=True
        ):
            m.texts.labels(source).inc(new - old)
        self._cache_seen = now
        m.encode_seconds.observe(self.models.embedder.stats.last_ms / 1000)
        m.unk_rate.set(float(getattr(cache.encoder, "last_unk_rate", 0.0)))

    def _advance(self, messages: list[Inbound]) -> None:
        for msg in messages:
            self.positions[(msg.topic, msg.partition)] = (msg.offset + 1, msg.timestamp_ms)

    def keep_positions(self, owned: set[tuple[str, int]]) -> None:
        for tp in set(self.positions) - owned:
            del self.positions[tp]
            self.metrics.forget_partition(*tp)

    def update_lag(self, highwaters: dict[tuple[str, int], int | None]) -> None:
        now_ms = time.time() * 1000
        for (topic, partition), end in highwaters.items():
            if end is None:
                continue
            position, stamp = self.positions.get((topic, partition), (None, 0))
            if position is None:
                continue  # nothing consumed yet here: the group's committed offset says more
            behind = max(0, end - position)
            age = (now_ms - stamp) / 1000 if behind and stamp else 0.0
            self.metrics.set_lag(topic, partition, behind, max(0.0, age))

    def encoder_stats(self) -> dict[str, Any]:
        if self.models.embedder is None:
            return {"enabled": False}
        cache, enc = self.models.embedder.cache, self.models.embedder.stats
        encoder = cache.encoder
        return {
            "enabled": True,
            "model": self.models.embedder.config.model_id,
            "device": getattr(encoder, "device", "?"),
            "dtype": getattr(encoder, "dtype", "?"),
            "calls": enc.calls,
            "texts": enc.texts,
            "seconds": round(enc.seconds, 3),
            "last_ms": round(enc.last_ms, 1),
            "cache_hits": cache.hits,
            "tier_hits": cache.tier_hits,
            "encoded": cache.misses,
            "unk_rate": round(float(getattr(encoder, "last_unk_rate", 0.0)), 4),
        }

    def churn_now(self) -> int:
        """``as_of`` of sweeps: the wall clock live, the event-time watermark for replays."""
        if self.settings.churn.clock == "event":
            return self.watermark_ms
        return int(time.time() * 1000)

    async def sweep_churn(
        self, owned: set[int], announce: Callable[[list[ChurnChange]], Awaitable[None]]
    ) -> list[ChurnChange]:
        """Timer body: :meth:`ChurnSweeper.sweep` of the owned partitions, now."""
        if self.sweeper is None:
            return []
        changes = await self.sweeper.sweep(owned, self.churn_now(), announce)
        self.metrics.churn_swept.inc(len(changes))
        return changes

    async def fit_churn(self) -> BGNBDParams | None:
        """Timer body: refit the population (one worker per interval)."""
        if self.sweeper is None:
            return None
        ttl = max(1, int(self.settings.churn.fit_s * 0.9))
        return await self.sweeper.fit(self.churn_now(), ttl)

    def segment_stats(self) -> dict[str, Any]:
        if self.models.segmenter is None:
            return {"enabled": False}
        model = self.models.segmenter.model
        return {
            "enabled": True,
            "model_version": model.version,
            "seeded": model.seeded,
            "ids": list(model.ids),
            "next_id": model.next_id,
            "merges": self.models.segmenter.merges,
        }

    async def sync_segments(self) -> None:
        """Timer body: merge this worker's statistics (a failed merge loses nothing: the next
        tick merges them)."""
        if self.models.segmenter is None:
            return
        await self.models.segmenter.sync()

    async def tick(self, what: str, call: Callable[[], Awaitable[object]]) -> bool:
        """Run one timer body; a failure waits for the next tick. An outage is logged once
        (:class:`~stream.worker.outages.OutageTracker`), any other error with its traceback."""
        try:
            await call()
        except Outage as exc:
            self.failed(what, exc)
            return False
        except Exception:
            log.exception("%s failed; retrying at the next tick", what)
            return False
        self.ok(what)
        return True

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def on_stop(self) -> None:
        await self.store.close()
        self.models.close()
