"""The Faust side of the worker: the input consumer and the update agent over the stages
of ``stream/worker/flow.py``, and the timers.

Follow one event: ``site-events`` -> :class:`~stream.worker.consumer.BatchInput` (or, with
``RTP_INGEST_CONSUMER=faust``, the :func:`ingest` agent) ->
:class:`~stream.worker.flow.IngestStage` (decode, validate, bundle by owner partition) ->
``profiles-routed`` -> :func:`update` (:class:`~stream.worker.flow.UpdateStage`: one Redis
round trip per batch via :class:`profiles.pipeline.updater.BatchUpdater`) ->
``profile-updated`` and the features' topics. Invalid input goes to ``site-events-dlq`` with
the reason in its headers.

Offsets are acknowledged only after a batch's sends are confirmed by the broker
and its Redis commit returned, so a crash redelivers instead of losing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, cast

import faust
from faust.types import TP, AgentT, StreamT

from profiles.audiences.membership import AudienceChange
from profiles.churn.tracker import ChurnChange
from profiles.value.scorer import ValueChange
from stream.settings import Settings
from stream.worker.consumer import BatchInput
from stream.worker.epochs import Fetch, broker_fetch
from stream.worker.flow import (
    IngestStage,
    UpdateStage,
    announce_audiences,
    announce_churn,
    announce_value,
)
from stream.worker.health import EXIT_CRASHED
from stream.worker.retry import kafka_outages, until_done
from stream.worker.runtime import Runtime
from stream.worker.transport import KafkaSink, Topics, inbound

log = logging.getLogger(__name__)


class _KafkaSource:
    """The input's end offsets from the app's consumer, earlier messages from the broker."""

    def __init__(self, app: faust.App, fetch: Fetch) -> None:
        self.app = app
        self._fetch = fetch

    def highwater(self, topic: str, partition: int) -> int | None:
        return cast(int | None, self.app.consumer.highwater(TP(topic, partition)))

    async def fetch(
        self, topic: str, partition: int, offset: int
    ) -> tuple[bytes | None, bytes | None] | None:
        return await self._fetch(topic, partition, offset)


def register(app: faust.App, settings: Settings, runtime: Runtime, topics: Topics) -> None:
    """Attach the agents and timers to ``app``."""
    declared = asyncio.Lock()
    done: list[bool] = []
    sink = KafkaSink(topics)
    fetch = broker_fetch(settings)
    source = _KafkaSource(app, fetch)
    ingest_stage, update_stage = IngestStage(settings, runtime), UpdateStage(settings, runtime)

    async def start() -> None:
        await runtime.ensure_ready()
        async with declared:
            if not done:
                with kafka_outages():  # start-up is retried through an outage too
                    await topics.declare_outputs()
                done.append(True)
                runtime.outputs_declared = True

    def watch(agent: AgentT[Any], name: str) -> None:
        """Record the agent's crash (Faust's own handler, kept, only tells the consumer)."""
        original = agent._on_error  # type: ignore[attr-defined]

        async def on_error(crashed: AgentT[Any], exc: BaseException) -> None:
            runtime.health.crash(name, exc)
            if original is not None:
                await original(crashed, exc)

        agent._on_error = on_error  # type: ignore[attr-defined]

    batch_input: BatchInput | None = None
    if settings.ingest.paused:
        log.warning("RTP_INGEST_PAUSED: applying routed bundles only; the input is not read")
    elif settings.ingest.consumer == "batch":
        batch_input = BatchInput(settings, runtime, ingest_stage, sink, fetch, start)
        app.add_dependency(batch_input)  # started and stopped with the worker
    else:

        @app.agent(topics.input, name="ingest")
        async def ingest(stream: StreamT[Any]) -> None:
            await until_done(start, "start-up", runtime)
            async for events in cast(faust.Stream[Any], stream).take_events(
                settings.ingest.batch_max, settings.ingest.batch_within_s
            ):
                await ingest_stage.handle([inbound(e) for e in events], source, sink)

        watch(ingest, "ingest")
    faust_ingest = not settings.ingest.paused and batch_input is None
    faust_topics = {settings.topics.routed} | ({settings.topics.input} if faust_ingest else set())

    @app.agent(topics.routed, name="update")
    async def update(stream: StreamT[Any]) -> None:
        await until_done(start, "start-up", runtime)
        async for events in cast(faust.Stream[Any], stream).take_events(
            settings.ingest.bundle_max, settings.ingest.batch_within_s
        ):
            await update_stage.handle([inbound(e) for e in events], sink)

    watch(update, "update")

    @app.on_partitions_revoked.connect
    def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Users of revoked partitions may be written by another worker from now on.
        runtime.updater.forget()
        if batch_input is None:  # the batch consumer's own rebalances forget its epochs
            runtime.epochs.forget()
        runtime.metrics.rebalances.inc()

    @app.on_partitions_assigned.connect
    def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = args[0] if args else kwargs.get("assigned", ())
        owned = sum(1 for tp in assigned if tp.topic == settings.topics.routed)
        runtime.metrics.assigned.set(owned)
        runtime.observer.keep({(tp.topic, tp.partition) for tp in assigned}, faust_topics)

    @app.timer(interval=settings.segments.sync_s)  # type: ignore[untyped-decorator]
    async def merge_segments() -> None:
        await runtime.tick("segment merge", runtime.sync_segments)

    @app.timer(interval=settings.churn.sweep_s)  # type: ignore[untyped-decorator]
    async def sweep_churn() -> None:
        """Users whose risk level changed with time alone (churn is the absence of events)."""
        owned = {
            tp.partition for tp in app.consumer.assignment() if tp.topic == settings.topics.routed
        }

        async def announce(changes: list[ChurnChange]) -> None:
            await announce_churn(sink, changes)
            runtime.metrics.emitted.labels("churn_risk").inc(len(changes))

        async def announce_tiers(changes: list[ValueChange]) -> None:
            await announce_value(sink, changes)
            runtime.metrics.emitted.labels("value_changed").inc(len(changes))

        # A failure waits for the next tick: the due indexes still hold the users.
        await runtime.tick("churn sweep", lambda: runtime.sweep_churn(owned, announce))
        await runtime.tick("value sweep", lambda: runtime.sweep_value(owned, announce_tiers))

    @app.timer(interval=settings.audiences.sweep_s)  # type: ignore[untyped-decorator]
    async def sweep_audiences() -> None:
        """New audience definitions; memberships that changed with time alone."""
        owned = {
            tp.partition for tp in app.consumer.assignment() if tp.topic == settings.topics.routed
        }

        async def announce(changes: list[AudienceChange]) -> None:
            await announce_audiences(sink, changes)
            runtime.metrics.emitted.labels("audience_changed").inc(len(changes))

        await runtime.tick("audience sweep", lambda: runtime.sweep_audiences(owned, announce))

    @app.timer(interval=settings.churn.fit_s)  # type: ignore[untyped-decorator]
    async def fit_churn() -> None:
        await runtime.tick("churn model fit", runtime.fit_churn)  # keeps the previous model

    @app.task  # type: ignore[untyped-decorator]
    async def first_churn_fit() -> None:
        """A fit at start-up: the timer's first tick is a whole RTP_CHURN_FIT_S away."""
        await until_done(start, "start-up", runtime)
        await runtime.tick("churn model fit", runtime.fit_churn)

    @app.timer(interval=settings.recommend.catalog_poll_s)  # type: ignore[untyped-decorator]
    async def follow_catalog() -> None:
        """Catalog changes and popularity into this worker's item index."""
        await runtime.tick("catalog poll", runtime.poll_catalog)

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def watchdog() -> None:
        """Crashed Faust services into /health and metrics; exit once a crash has lasted."""
        for name, service in (("fetcher", app._fetcher), ("consumer", app.consumer)):
            reason = service.crash_reason if service.crashed else None
            if reason is not None and not isinstance(reason, asyncio.CancelledError):
                runtime.health.crash(name, reason)  # CancelledError: a rebalance restart
            else:
                runtime.health.alive(name)
        runtime.health_report()  # keeps rtp_ready current between scrapes of /health
        why = runtime.health.give_up()
        if why is not None:
            log.critical(
                "exiting (status %d) so that a supervisor restarts the worker: %s",
                EXIT_CRASHED,
                why,
            )
            logging.shutdown()
            # Like a SIGKILL, which the fault tests show loses nothing: uncommitted offsets
            # are redelivered and the fences absorb what was already written.
            os._exit(EXIT_CRASHED)

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def measure_lag() -> None:
        """Lag per owned partition: the fetcher's end offset minus our position."""
        consumer = app.consumer
        ends: dict[tuple[str, int], int | None] = {
            (tp.topic, tp.partition): consumer.highwater(tp) for tp in consumer.assignment()
        }
        if batch_input is not None:
            ends.update({tp: batch_input.highwater(*tp) for tp in batch_input.owned})
        runtime.observer.lag(ends)
