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

from profiles.audiences.definitions import AudienceBook
from profiles.audiences.membership import AudienceChange
from profiles.audiences.sweeper import AudienceSweeper
from profiles.churn.bgnbd import BGNBDParams
from profiles.churn.risk import RiskConfig
from profiles.churn.tracker import ChurnChange, ChurnTracker
from profiles.core.errors import Outage
from profiles.core.privacy import pseudonymizer
from profiles.core.profile import Profile
from profiles.pipeline.builtin import flagged
from profiles.pipeline.updater import LruCache
from profiles.recommend.blend import Recommendation
from profiles.redis.audiences import RedisAudienceStore
from profiles.redis.churn import RedisChurnStore
from profiles.redis.marks import MarkStore
from profiles.redis.store import RedisStore
from profiles.redis.value import RedisValueStore
from profiles.tags.extractor import TagExtractor
from profiles.value.scorer import ValueChange
from profiles.value.sweeper import ValueSweeper
from schemas.validate import Limits
from stream.security import redact_url
from stream.settings import Settings
from stream.worker.compose import (
    Models,
    build_updater,
    churn_sweeper,
    load_models,
    value_scorer,
)
from stream.worker.epochs import InputEpochs
from stream.worker.health import Health, report
from stream.worker.metrics import Metrics, Stats
from stream.worker.observe import Observer
from stream.worker.outages import OutageTracker

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


def decode_limits(settings: Settings) -> Limits:
    """The bounds ``decode`` applies, from the settings (the worker and ``stream validate``)."""
    return Limits(
        max_bytes=settings.ingest.max_message_bytes,
        max_future_ms=int(settings.ingest.max_future_s * 1000),
        earliest_ms=settings.ingest.earliest_ms,
        registry_framing=settings.ingest.registry_framing == "accept",
    )


LOOP_TICK_S = 0.1


class Runtime(Service):
    """Owns the Redis connection and the batch updater of one worker."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.limits = decode_limits(settings)
        self.metrics = Metrics()
        self.stats = Stats(self.metrics)
        self.observer = Observer(self.metrics)  # per-batch metrics, positions, watermark
        self.store = RedisStore.from_url(
            settings.redis.url.get_secret_value(),
            settings.privacy.key,
            tls=settings.redis.tls,
            wait_replicas=settings.redis.wait_replicas,
            wait_ms=settings.redis.wait_ms,
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
        self.value = value_scorer(settings, self.churn)
        self.models = Models()  # loaded by ensure_ready
        # The audience definitions in use (refreshed by the audience sweep).
        self.audiences = (
            AudienceBook(settings.audiences.require_consent, settings.risk.exclude)
            if settings.audiences.enabled
            else None
        )
        # The profiles this worker owns, shared by the updater and the churn sweep.
        self.profiles: LruCache[Profile] = LruCache(settings.profiles.cache_users)
        # The base features until the models load; then built whole again.
        self.updater = build_updater(
            settings,
            self.store,
            self.tagger,
            self.models,
            self.churn,
            self.profiles,
            self.value,
            self.audiences,
        )
        self.churn_store = RedisChurnStore(self.store.client)
        self.value_store = RedisValueStore(self.store.client)
        self.sweeper = (
            None
            if self.churn is None
            else churn_sweeper(settings, self.store, self.churn, self.value, self.profiles.get)
        )
        self.value_sweeper = (
            None
            if self.value is None or self.sweeper is None  # the churn refit fits value
            else ValueSweeper(self.value, self.value_store, self.store, self.profiles.get)
        )
        # Held while a part of an update batch is applied and while the audience sweep
        # re-decides a partition, so the two never race on a user inside this worker.
        self.writes = asyncio.Lock()
        self.audience_store = RedisAudienceStore(self.store.client)
        self.audience_sweeper = (
            None
            if self.audiences is None
            else AudienceSweeper(
                self.audiences,
                self.audience_store,
                self.store,
                self.profiles.get,
                settings.kafka.partitions,
                lock=self.writes,
            )
        )
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self._loop_lag_max = 0.0
        self.outputs_declared = False  # set by the agents once every output topic exists

    @Service.task
    async def _watch_loop(self) -> None:
        """The event loop's lag: how late a short timer fires (``rtp_event_loop_lag_seconds``)."""
        while not self.should_stop:
            started = time.perf_counter()
            await asyncio.sleep(LOOP_TICK_S)
            lag = max(0.0, time.perf_counter() - started - LOOP_TICK_S)
            self.metrics.loop_lag.observe(lag)
            self._loop_lag_max = max(self._loop_lag_max, lag)
            self.metrics.loop_lag_max.set(self._loop_lag_max)

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
            await self.value_store.load_scripts()
            await self.audience_store.load_scripts()
            if self.audience_sweeper is not None:  # the definitions before the first batch
                await self.audience_sweeper.refresh(())
            await self.epochs.marks.load_scripts()
            await asyncio.to_thread(self.tagger.warm_up)
            self.models = await load_models(self.settings, self.store.client, self.tagger)
            if self.models.mirror is not None:
                self.metrics.index_items.set(len(self.models.mirror.index))
            self.updater = build_updater(
                self.settings,
                self.store,
                self.tagger,
                self.models,
                self.churn,
                self.profiles,
                self.value,
                self.audiences,
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
        exclude = self.settings.risk.exclude
        if exclude != "none" and flagged(exclude, profile):
            return profile, []  # RTP_RISK_EXCLUDE: flagged users get no list
        (items,) = await self.models.recommender.compute_many([profile], k)
        return profile, items

    async def popular_for(self, profiles: list[Profile], k: int) -> list[list[Recommendation]]:
        """The popularity lists of cold users, for these profiles (an experiment's control)."""
        if self.models.recommender is None:
            raise LookupError("recommendations are off (RTP_RECOMMEND / RTP_EMBEDDINGS)")
        return await self.models.recommender.popular_many(profiles, k)

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
        """``/health`` of this worker (:func:`~stream.worker.health.report`); sets ``rtp_ready``."""
        return report(
            self.health,
            started=self.ready,
            outputs_declared=self.outputs_declared,
            assigned=self.stats.assigned,
            gauge=self.metrics.ready,
        )

    def churn_now(self) -> int:
        """``as_of`` of sweeps: the wall clock live, the event-time watermark for replays."""
        if self.settings.churn.clock == "event":
            return self.observer.watermark_ms
        return int(time.time() * 1000)

    async def sweep_churn(
        self, owned: set[int], announce: Callable[[list[ChurnChange]], Awaitable[None]]
    ) -> list[ChurnChange]:
        """Timer body: :meth:`ChurnSweeper.sweep` of the owned partitions, now."""
        if self.sweeper is None:
            return []
        changes = await self.sweeper.sweep(owned, self.churn_now(), announce)
        self.metrics.churn_swept.inc(len(changes))
        self._export_calibration()
        return changes

    async def sweep_value(
        self, owned: set[int], announce: Callable[[list[ValueChange]], Awaitable[None]]
    ) -> list[ValueChange]:
        """Timer body after the churn sweep (which refreshed the fits): value tiers that moved
        with time alone."""
        if self.value_sweeper is None:
            return []
        return await self.value_sweeper.sweep(owned, self.churn_now(), announce)

    def _export_calibration(self) -> None:
        cal = None if self.churn is None else self.churn.calibrator
        if cal is not None:
            self.metrics.calibration(cal.auc_model, cal.auc_calibrated)

    async def sweep_audiences(
        self, owned: set[int], announce: Callable[[list[AudienceChange]], Awaitable[None]]
    ) -> list[AudienceChange]:
        """Timer body: new definitions, and memberships that changed with time alone."""
        if self.audience_sweeper is None or self.audiences is None:
            return []
        changes = await self.audience_sweeper.sweep(owned, self.churn_now(), announce)
        names = [a.name for a in self.audiences.current.audiences]
        sizes = await self.audience_store.counts(names)
        self.metrics.audience_members.clear()  # audiences no longer defined go too
        for name, size in sizes.items():
            self.metrics.audience_members.labels(name).set(size)
        return changes

    def audience_stats(self) -> dict[str, Any]:
        """The definitions version this worker uses (applied ones arrive with its next sweep)."""
        if self.audiences is None:
            return {"enabled": False}
        return {"enabled": True, "version": self.audiences.version}

    async def fit_churn(self) -> BGNBDParams | None:
        """Timer body: refit the population (one worker per interval). Also run once at
        start-up: with the event clock before any event is seen, as of the latest stored one."""
        if self.sweeper is None:
            return None
        ttl = max(1, int(self.settings.churn.fit_s * 0.9))
        now = self.churn_now()
        params = await self.sweeper.fit(now if now > 0 else None, ttl)
        self._export_calibration()
        return params

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
