"""What the agents share inside one worker process: Redis, the updater, counters.

Built from :class:`~stream.settings.Settings` by :func:`stream.worker.app.create_app`;
started lazily by the first agent that needs it and closed with the app.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from mode import Service

from profiles.churn.bgnbd import BGNBDParams
from profiles.churn.calibration import Calibrator
from profiles.churn.population import fit_population
from profiles.churn.risk import RiskConfig
from profiles.churn.tracker import ChurnChange, ChurnTracker
from profiles.core.errors import Outage
from profiles.core.privacy import pseudonymizer
from profiles.core.profile import Profile
from profiles.embedding.cache import EmbeddingCache, TextEncoder
from profiles.embedding.channel import ChannelEncoder
from profiles.embedding.embedder import Embedder
from profiles.embedding.profile import EmbeddingConfig
from profiles.encoder.encoder import Encoder, EncoderConfig
from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.feature import Feature
from profiles.pipeline.updater import BatchUpdater
from profiles.recommend.blend import BlendConfig, Recommendation
from profiles.recommend.index import DAY_MS, ItemIndex
from profiles.recommend.mirror import ItemMirror
from profiles.recommend.recommender import Recommender, RecsConfig
from profiles.redis import keys
from profiles.redis.catalog import RedisCatalog
from profiles.redis.marks import MarkStore
from profiles.redis.segments import CentroidStore
from profiles.redis.store import RedisStore
from profiles.redis.tier import RedisVectorTier
from profiles.segments.features import BEHAVIOUR_FEATURES, FeatureConfig
from profiles.segments.kmeans import MiniBatchKMeans
from profiles.segments.segmenter import Segmenter
from profiles.tags.extractor import TagExtractor
from schemas.validate import Limits
from stream.security import redact_url
from stream.settings import Settings
from stream.worker.epochs import InputEpochs
from stream.worker.health import Health
from stream.worker.ingest import Inbound, Routed
from stream.worker.metrics import Metrics
from stream.worker.outages import OutageTracker

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from profiles.core.profile import Record
    from profiles.pipeline.updater import BatchResult

log = logging.getLogger(__name__)


@dataclass
class Stats:
    """Counters shown by ``/stats`` and the demo view (Prometheus comes from these too)."""

    started_at: float = field(default_factory=time.time)
    consumed: int = 0
    routed: int = 0
    applied: int = 0
    fenced: int = 0
    duplicates: int = 0
    items: int = 0
    conflicts: int = 0
    profiles_emitted: int = 0
    tombstones: int = 0
    batches: int = 0
    bundles: int = 0
    last_batch: int = 0
    last_commit_ms: float = 0.0
    rebalances: int = 0
    assigned: int = 0  # partitions this worker owns now
    model_changes: int = 0
    churn_swept: int = 0
    recommendations: int = 0
    retries: int = 0
    lag: dict[str, int] = field(default_factory=dict)  # topic -> messages behind (last measure)
    kinds: Counter[str] = field(default_factory=Counter)
    dead: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if not isinstance(v, Counter)}
        out["lag"] = dict(self.lag)
        out["kinds"] = dict(self.kinds)
        out["dead"] = dict(self.dead)
        out["uptime_s"] = round(time.time() - self.started_at, 3)
        return out


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
        self.stats = Stats()
        self.metrics = Metrics()
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
        # The model version whose change last put every customer back on the due index.
        self._churn_requeued: str | None = None
        self.watermark_ms = 0  # latest event time seen by this worker
        self.embedder: Embedder | None = None
        self.segmenter: Segmenter | None = None
        self.recommender: Recommender | None = None
        self.mirror: ItemMirror | None = None
        self._tier: RedisVectorTier | None = None
        self.updater = BatchUpdater(
            self.store,
            settings.profile,
            self.tagger,
            self._features(),
            cache_users=settings.profiles.cache_users,
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
            await self.epochs.marks.load_scripts()
            await asyncio.to_thread(self.tagger.warm_up)
            if self.settings.embedding.enabled:
                self.embedder = await asyncio.to_thread(self._load_embedder)
                if self.settings.segments.enabled:
                    self.segmenter = self._segmenter(self.embedder.config.dim)
                    await self.segmenter.start()
                if self.settings.recommend.enabled:
                    await self._start_recommendations(self.embedder)
            self.updater.features = self._features()
            self._ready.set()
            log.info(
                "runtime ready: redis %s", redact_url(self.settings.redis.url.get_secret_value())
            )

    def _features(self) -> list[Feature]:
        """The enabled features with what is loaded so far (the model: ``ensure_ready``)."""
        return builtin_features(
            partitions=self.settings.kafka.partitions,
            embedder=self.embedder,
            emit_vector=self.settings.embedding.emit_vector,
            segmenter=self.segmenter,
            churn=self.churn,
            recommender=self.recommender,
            config=self.settings.profile,
        )

    def _load_embedder(self) -> Embedder:
        """Load the model (seconds; in a thread) and wire the two-tier vector cache."""
        s = self.settings
        encoder = Encoder(
            EncoderConfig(
                model=s.encoder.model,
                device=s.encoder.device,
                max_length=s.encoder.max_tokens,
                batch_size=s.encoder.batch,
            )
        )
        # The channel wraps the encoder below the cache, so every consumer of text vectors
        # (profiles, interests, segments, the item index) gets the same mixed vectors, under
        # the mixed model id.
        vectors: TextEncoder = ChannelEncoder(encoder) if s.embedding.text_channel else encoder
        self._tier = RedisVectorTier(s.redis.url.get_secret_value(), tls=s.redis.tls)
        cache = EmbeddingCache(vectors, capacity=s.encoder.vector_cache, tier=self._tier)
        config = EmbeddingConfig(
            model_id=vectors.model_id,
            dim=encoder.dim,
            long_half_life_ms=s.profile.half_life_ms,
            short_half_life_ms=int(s.embedding.short_half_life_min * 60_000),
            interests=s.embedding.interests,
        )
        log.info(
            "encoder %s (dim %d, %s, %s, pooling %s)",
            vectors.model_id,
            encoder.dim,
            encoder.device,
            encoder.dtype,
            encoder.pooling,
        )
        return Embedder(cache, config)

    async def _start_recommendations(self, embedder: Embedder) -> None:
        """Build the item index from the stored catalog; the update stage then recommends."""
        s = self.settings
        device = str(getattr(embedder.cache.encoder, "device", "cpu"))
        index = ItemIndex(
            embedder.config.dim,
            device=device,
            popularity_half_life_ms=int(s.recommend.popularity_half_life_days * DAY_MS),
        )
        self.mirror = ItemMirror(
            index,
            RedisCatalog(self.store.client),
            embedder,
            self.tagger,
            s.kafka.partitions,
            popularity_every=max(1, round(10.0 / s.recommend.catalog_poll_s)),
        )
        blend = BlendConfig(
            k=s.recommend.k,
            w_vector=s.recommend.w_vector,
            w_tags=s.recommend.w_tags,
            w_popularity=s.recommend.w_popularity,
            diversity=s.recommend.diversity,
        )
        self.recommender = Recommender(
            index,
            RecsConfig(blend, int(s.recommend.interval_s * 1000), s.recommend.shift),
            s.profile.half_life_ms,
            embedder.config,
            lock=self.mirror.lock,
        )
        await self.mirror.load()
        self.metrics.index_items.set(len(index))

    async def poll_catalog(self) -> None:
        """Timer body: follow catalog changes and popularity (the log position is kept on a
        failure: the next tick resumes from it)."""
        if self.mirror is None or not self.mirror.loaded:
            return
        try:
            await self.mirror.poll()
        finally:
            self.metrics.index_items.set(len(self.mirror.index))

    async def recommend_for(
        self, user_id: str, k: int
    ) -> tuple[Profile, list[Recommendation]] | None:
        """A fresh list for one user from the stored profile (None: unknown user)."""
        if self.recommender is None:
            raise LookupError("recommendations are off (RTP_RECOMMEND / RTP_EMBEDDINGS)")
        profile = await self.store.get(user_id)
        if profile is None:
            return None
        (items,) = await self.recommender.compute_many([profile], k)
        return profile, items

    def recs_stats(self) -> dict[str, Any]:
        if self.mirror is None:
            return {"enabled": False}
        return {
            "enabled": True,
            "items": len(self.mirror.index),
            "index_device": self.mirror.index.device,
            "catalog_updates": self.mirror.updates,
            "recommendations": self.stats.recommendations,
        }

    def failed(self, what: str, exc: Outage) -> None:
        """An outage made ``what`` fail; it is retried (see :mod:`stream.worker.retry`)."""
        self.stats.retries += 1
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
        s, m = self.stats, self.metrics
        s.consumed += len(messages)
        s.routed += routed.events
        s.kinds.update(routed.kinds)
        s.dead.update(d.reason for d in routed.dead)
        s.batches += 1
        s.last_batch = len(messages)
        for kind, n in routed.kinds.items():
            m.events.labels(kind).inc(n)
        for d in routed.dead:
            m.dead.labels(d.reason, "ingest").inc()
        m.batch_size.labels("ingest").observe(len(messages))
        self._advance(messages)

    def observe_update(
        self, bundles: list[Inbound], records: list[Record], result: BatchResult, elapsed: float
    ) -> None:
        s, m = self.stats, self.metrics
        s.bundles += len(bundles)
        s.applied += result.applied
        s.fenced += result.fenced
        s.duplicates += result.duplicates
        s.items += result.items
        s.conflicts += result.conflicts
        s.profiles_emitted += len(result.updated)
        s.tombstones += len(result.erased)
        s.model_changes += result.model_changes
        s.dead.update(d.reason for d in result.dead)
        s.last_commit_ms = elapsed * 1000
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
        s.recommendations += len(result.recommendations)
        if result.recs_seconds:
            m.recommend_seconds.observe(result.recs_seconds)
        for r in records:
            self.watermark_ms = max(self.watermark_ms, int(r.event["ts"]))
        m.observe_latency([r.produced_ms for r in records], [int(r.event["ts"]) for r in records])
        self._observe_encoder()
        self._advance(bundles)

    def _observe_encoder(self) -> None:
        if self.embedder is None:
            return
        cache, m = self.embedder.cache, self.metrics
        now = (cache.hits, cache.tier_hits, cache.misses)
        for source, new, old in zip(
            ("memory", "redis", "encoded"), now, self._cache_seen, strict=True
        ):
            m.texts.labels(source).inc(new - old)
        self._cache_seen = now
        m.encode_seconds.observe(self.embedder.stats.last_ms / 1000)
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
        totals: dict[str, int] = {}
        for (topic, partition), end in highwaters.items():
            if end is None:
                continue
            position, stamp = self.positions.get((topic, partition), (None, 0))
            if position is None:
                continue  # nothing consumed yet here: the group's committed offset says more
            behind = max(0, end - position)
            age = (now_ms - stamp) / 1000 if behind and stamp else 0.0
            self.metrics.set_lag(topic, partition, behind, max(0.0, age))
            totals[topic] = totals.get(topic, 0) + behind
        self.stats.lag = totals

    def encoder_stats(self) -> dict[str, Any]:
        if self.embedder is None:
            return {"enabled": False}
        cache, enc = self.embedder.cache, self.embedder.stats
        encoder = cache.encoder
        return {
            "enabled": True,
            "model": self.embedder.config.model_id,
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

    def _segmenter(self, dim: int) -> Segmenter:
        s = self.settings
        # A small reservoir: the model blob (rewritten at every merge) stays ~1 MiB.
        kmeans = MiniBatchKMeans(
            s.segments.k, dim + len(BEHAVIOUR_FEATURES), forgetting=0.01, reservoir=500
        )
        return Segmenter(
            kmeans,
            CentroidStore(self.store.client),
            FeatureConfig(),
            margin=s.segments.margin,
            seed_after_users=s.segments.seed_users,
        )

    def churn_now(self) -> int:
        """``as_of`` of sweeps: the wall clock live, the event-time watermark for replays."""
        if self.settings.churn.clock == "event":
            return self.watermark_ms
        return int(time.time() * 1000)

    async def sweep_churn(
        self, owned: set[int], announce: Callable[[list[ChurnChange]], Awaitable[None]]
    ) -> list[ChurnChange]:
        """Re-score the owned users whose level may have changed; ``announce`` the changes of
        each partition, then store the new levels, and return the changes.

        Announce first: if the send fails, nothing is stored and the next sweep finds the same
        users due again (a stored level whose event was never sent would be lost for good).
        A level that is not stored after all (the user changed meanwhile) was announced anyway;
        ``churn_risk`` events are at least once."""
        if self.churn is None:
            return []
        await self._refresh_churn_params()
        version = self.churn.version()
        if self.churn.params is not None and version != self._churn_requeued:
            # A new fit can change any customer's level, also of those the due index dropped
            # (already "high", or scored before the first fit): re-check them all once.
            await self.store.requeue_customers(sorted(owned))
            self._churn_requeued = version
        as_of = self.churn_now()
        changes: list[ChurnChange] = []
        for partition in sorted(owned):
            users = await self.store.due(partition, as_of)
            if not users:
                continue
            profiles, _ = await self.store.load(users, ())
            updates = []
            found = []
            # Erased meanwhile (or a sweep raced an erasure and re-indexed them): drop them, or
            # the index would name an erased user for ever.
            gone = [p.user_id for p in profiles.values() if p.last_ts is None]
            if gone:
                await self.store.forget_due(partition, gone)
            for profile in profiles.values():
                if profile.last_ts is None:
                    continue
                change = self.churn.update(profile, as_of)
                updates.append((profile, partition))
                if change is not None:
                    found.append(change)
            await announce(found)
            await self.store.save_churn(updates)  # a user changed meanwhile keeps its level
            for profile, _ in updates:
                cached = self.updater.profiles.get(profile.user_id)
                if cached is not None and cached.version == profile.version:
                    cached.churn = profile.churn
            changes += found  # announced, stored or not
        self.stats.churn_swept += len(changes)
        return changes

    async def _refresh_churn_params(self) -> None:
        raw = await self.store.client.get(keys.CHURN_PARAMS)
        if raw is not None and self.churn is not None:
            state = orjson.loads(raw)
            self.churn.params = BGNBDParams(
                state["r"], state["alpha"], state["a"], state["b"], state["variant"]
            )
            cal = state.get("calibrator")
            self.churn.calibrator = None if cal is None else Calibrator.from_dict(cal)

    async def fit_churn(self) -> BGNBDParams | None:
        """Refit the population (one worker per interval, under a Redis lock)."""
        if self.churn is None:
            return None
        ttl = max(1, int(self.settings.churn.fit_s * 0.9))
        client = self.store.client
        if not await client.set(keys.CHURN_FIT_LOCK, b"1", nx=True, ex=ttl):
            return None
        # A deterministic sample (the customers with the smallest hashes), large enough that
        # refits on the same data agree within 2% (EVALUATION.md).
        partitions = self.settings.kafka.partitions
        per_partition = max(1000, 50_000 // max(partitions, 1))
        users = await self.store.sample_customers(partitions, per_partition)
        profiles, _ = await self.store.load(users, ())
        as_of = self.churn_now()
        params = await asyncio.to_thread(
            fit_population, list(profiles.values()), as_of, 50, init=self.churn.params
        )
        if params is not None:
            state = {
                "r": params.r,
                "alpha": params.alpha,
                "a": params.a,
                "b": params.b,
                "variant": params.variant,
                "as_of": as_of,
                "customers": len(profiles),
            }
            await client.set(keys.CHURN_PARAMS, orjson.dumps(state))
            self.churn.params = params
            log.info("churn model refit on %d customers: %s", len(profiles), params)
        return params

    def segment_stats(self) -> dict[str, Any]:
        if self.segmenter is None:
            return {"enabled": False}
        model = self.segmenter.model
        return {
            "enabled": True,
            "model_version": model.version,
            "seeded": model.seeded,
            "ids": list(model.ids),
            "next_id": model.next_id,
            "merges": self.segmenter.merges,
        }

    async def sync_segments(self) -> None:
        """Timer body: merge this worker's statistics (a failed merge loses nothing: the next
        tick merges them)."""
        if self.segmenter is None:
            return
        await self.segmenter.sync()

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
        if self._tier is not None:
            self._tier.close()
