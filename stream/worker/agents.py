"""The two Faust agents: ingest (validate, route) and update (apply, emit).

Follow one event: ``site-events`` -> :func:`ingest` (decode, validate, bundle by
owner partition) -> ``profiles-routed`` -> :func:`update` (one Redis round trip
per batch via :class:`profiles.pipeline.updater.BatchUpdater`) -> ``profile-updated``.
Invalid input goes to ``site-events-dlq`` with the reason in its headers.

Offsets are acknowledged only after a batch's sends are confirmed by the broker
and its Redis commit returned, so a crash redelivers instead of losing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
import orjson
from faust.types import TP, AgentT, EventT, StreamT, TopicT

from profiles.churn.tracker import ChurnChange, churn_event
from profiles.core.profile import Record
from profiles.pipeline.downstream import profile_updated, recommendation_event, segment_changed
from profiles.pipeline.updater import BatchResult
from stream.settings import Settings
from stream.worker import dead_letters
from stream.worker.epochs import broker_fetch, source_topic
from stream.worker.health import EXIT_CRASHED
from stream.worker.ingest import Inbound, Routed, route, unpack
from stream.worker.retry import apply_batch, kafka_outages, until_done
from stream.worker.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topics:
    """Every topic the worker reads or writes, declared once per app."""

    input: TopicT
    routed: TopicT
    profiles: TopicT
    dlq: TopicT
    segments: TopicT
    churn: TopicT
    recs: TopicT

    @classmethod
    def declare(cls, app: faust.App, settings: Settings) -> Topics:
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        # Partitions of the topics the worker writes; `declare_outputs` creates them.
        owned: dict[str, Any] = {**raw, "internal": True, "partitions": settings.partitions}
        return cls(
            input=app.topic(settings.input_topic, **raw),
            routed=app.topic(settings.routed_topic, **owned),
            profiles=app.topic(settings.profile_topic, **owned),
            dlq=app.topic(settings.dlq_topic, **{**owned, "partitions": 1}),
            segments=app.topic(settings.segment_topic, **owned),
            churn=app.topic(settings.churn_topic, **owned),
            recs=app.topic(settings.recs_topic, **owned),
        )

    async def declare_outputs(self) -> None:
        """Create the output topics at start-up (idempotent), so the first send never waits
        on a broker's auto-creation, or fails where that is off (Apache Kafka in production)."""
        outputs = (self.routed, self.profiles, self.dlq, self.segments, self.churn, self.recs)
        for topic in outputs:
            await topic.declare()


def _inbound(event: EventT[Any]) -> Inbound:
    msg = event.message
    raw = msg.headers or ()
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    headers = [
        (str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in pairs if v is not None
    ]
    stamp = int((msg.timestamp or 0) * 1000)  # Faust gives seconds
    return Inbound(msg.topic, msg.partition, msg.offset, msg.key, msg.value, headers, stamp)


async def _confirm(sends: Sequence[Awaitable[Any]]) -> None:
    """Queue sends in order (bundles of one partition must stay ordered), then wait
    until the broker has confirmed every message."""
    futures = [await send for send in sends]
    await asyncio.gather(*futures)


def register(app: faust.App, settings: Settings, runtime: Runtime, topics: Topics) -> None:
    """Attach the agents to ``app``."""
    stats = runtime.stats
    declared = asyncio.Lock()
    done: list[bool] = []

    async def start() -> None:
        await runtime.ensure_ready()
        async with declared:
            if not done:
                with kafka_outages():  # start-up is retried through an outage too
                    await topics.declare_outputs()
                done.append(True)

    def watch(agent: AgentT[Any], name: str) -> None:
        """Record the agent's crash (Faust's own handler, kept, only tells the consumer)."""
        original = agent._on_error  # type: ignore[attr-defined]

        async def on_error(crashed: AgentT[Any], exc: BaseException) -> None:
            runtime.health.crash(name, exc)
            if original is not None:
                await original(crashed, exc)

        agent._on_error = on_error  # type: ignore[attr-defined]

    def highwater(topic: str, partition: int) -> int | None:
        return cast(int | None, app.consumer.highwater(TP(topic, partition)))

    fetch = broker_fetch(settings)

    @app.agent(topics.input, name="ingest")
    async def ingest(stream: StreamT[Any]) -> None:
        await until_done(start, "start-up", runtime)
        async for events in cast(faust.Stream[Any], stream).take_events(
            settings.batch_max, settings.batch_within_s
        ):
            messages = [_inbound(e) for e in events]
            sources = await until_done(
                functools.partial(runtime.epochs.sources, messages, highwater, fetch),
                "input marks",
                runtime,
            )
            routed = route(
                messages,
                runtime.limits,
                settings.partitions,
                int(time.time() * 1000),
                runtime.pseudonyms,
                sources,
            )
            sends = functools.partial(_ingest_sends, topics, routed)
            await until_done(functools.partial(_send, sends), "routing sends", runtime)
            advance = functools.partial(runtime.epochs.advance, messages)
            await until_done(advance, "input marks", runtime)
            runtime.observe_ingest(messages, routed)
            runtime.health.alive("ingest")

    @app.agent(topics.routed, name="update")
    async def update(stream: StreamT[Any]) -> None:
        await until_done(start, "start-up", runtime)
        async for events in cast(faust.Stream[Any], stream).take_events(
            settings.bundle_max, settings.batch_within_s
        ):
            records: list[Record] = []
            bad: list[tuple[EventT[Any], Exception]] = []
            for event in events:
                try:
                    records.extend(unpack(event.message.value or b""))
                except (ValueError, KeyError, TypeError) as exc:
                    bad.append((event, exc))
            started = time.perf_counter()
            result = await apply_batch(runtime.updater, records, runtime)
            elapsed = time.perf_counter() - started
            now_ms = int(time.time() * 1000)
            outputs = functools.partial(
                _update_sends, topics, settings, runtime, result, bad, now_ms
            )
            await until_done(functools.partial(_send, outputs), "output sends", runtime)
            runtime.observe_update([_inbound(e) for e in events], records, result, elapsed)
            runtime.health.alive("update")

    watch(ingest, "ingest")
    watch(update, "update")

    @app.on_partitions_revoked.connect
    def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Users of revoked partitions may be written by another worker from now on.
        runtime.updater.forget()
        runtime.epochs.forget()
        stats.rebalances += 1
        runtime.metrics.rebalances.inc()

    @app.on_partitions_assigned.connect
    def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = args[0] if args else kwargs.get("assigned", ())
        stats.assigned = sum(1 for tp in assigned if tp.topic == settings.routed_topic)
        runtime.metrics.assigned.set(stats.assigned)
        runtime.keep_positions({(tp.topic, tp.partition) for tp in assigned})

    @app.timer(interval=settings.segment_sync_s)  # type: ignore[untyped-decorator]
    async def merge_segments() -> None:
        await runtime.tick("segment merge", runtime.sync_segments)

    @app.timer(interval=settings.churn_sweep_s)  # type: ignore[untyped-decorator]
    async def sweep_churn() -> None:
        """Users whose risk level changed with time alone (churn is the absence of events)."""
        owned = {
            tp.partition for tp in app.consumer.assignment() if tp.topic == settings.routed_topic
        }

        async def announce(changes: list[ChurnChange]) -> None:
            now_ms = int(time.time() * 1000)
            await _send(lambda: [_churn_send(topics, c, now_ms) for c in changes])
            runtime.metrics.emitted.labels("churn_risk").inc(len(changes))

        # A failure waits for the next tick: the due index still holds the users.
        await runtime.tick("churn sweep", lambda: runtime.sweep_churn(owned, announce))

    @app.timer(interval=settings.churn_fit_s)  # type: ignore[untyped-decorator]
    async def fit_churn() -> None:
        await runtime.tick("churn model fit", runtime.fit_churn)  # keeps the previous model

    @app.timer(interval=settings.catalog_poll_s)  # type: ignore[untyped-decorator]
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
        runtime.update_lag(
            {(tp.topic, tp.partition): consumer.highwater(tp) for tp in consumer.assignment()}
        )


async def _send(build: Callable[[], list[Awaitable[Any]]]) -> None:
    """Build the sends (anew on each try: a send coroutine runs once) and confirm them; a
    transient broker error is a :class:`~stream.worker.retry.KafkaOutage`."""
    with kafka_outages():
        await _confirm(build())


def _ingest_sends(topics: Topics, routed: Routed) -> list[Awaitable[Any]]:
    """Bundles to the owner partitions, dead letters with their reason (built anew per try)."""
    sends: list[Awaitable[Any]] = [
        topics.routed.send(key=str(p).encode(), value=bundle, partition=p)
        for p, bundles in routed.bundles.items()
        for bundle in bundles
    ]
    sends += [
        topics.dlq.send(
            key=d.message.key,
            value=d.message.value,
            headers=dead_letters.headers(
                d.reason,
                d.detail,
                d.message.topic,
                d.message.partition,
                d.message.offset,
                "ingest",
                d.message.headers,
            ),
        )
        for d in routed.dead
    ]
    return sends


def _update_sends(
    topics: Topics,
    settings: Settings,
    runtime: Runtime,
    result: BatchResult,
    bad: Sequence[tuple[EventT[Any], Exception]],
    now_ms: int,
) -> list[Awaitable[Any]]:
    """Everything one update batch announces (built anew per try; ids are deterministic)."""
    sends: list[Awaitable[Any]] = [_dead_bundle(topics, event, exc) for event, exc in bad]
    for user_id in result.erased:
        # A tombstone on every user-keyed output: compacted topics forget the user too.
        for topic in (topics.profiles, topics.segments, topics.churn, topics.recs):
            sends.append(topic.send(key=user_id.encode(), value=None))
    half_life = settings.profile.half_life_ms
    for profile in result.updated:
        payload = orjson.dumps(profile_updated(profile, half_life, now_ms, settings.emit_vector))
        sends.append(topics.profiles.send(key=profile.user_id.encode(), value=payload))
    for change in result.segment_changes:
        payload = orjson.dumps(segment_changed(change, now_ms))
        sends.append(topics.segments.send(key=change.profile.user_id.encode(), value=payload))
    for churn in result.churn_changes:
        sends.append(_churn_send(topics, churn, now_ms))
    model = runtime.embedder.config.model_id if runtime.embedder else ""
    for recs in result.recommendations:
        payload = orjson.dumps(recommendation_event(recs, model, now_ms))
        sends.append(topics.recs.send(key=recs.profile.user_id.encode(), value=payload))
    for dead in result.dead:
        origin, partition = source_topic(dead.record.source)
        sends.append(
            topics.dlq.send(
                key=dead.record.event["user_id"].encode(),
                value=orjson.dumps(dead.record.event),
                headers=dead_letters.headers(
                    dead.reason,
                    dead.detail,
                    origin,
                    partition,
                    dead.record.offset,
                    "update",
                ),
            )
        )
    return sends


def _churn_send(topics: Topics, change: ChurnChange, now_ms: int) -> Awaitable[Any]:
    payload = orjson.dumps(churn_event(change, now_ms))
    return topics.churn.send(key=change.profile.user_id.encode(), value=payload)


def _dead_bundle(topics: Topics, event: EventT[Any], exc: Exception) -> Awaitable[Any]:
    msg = event.message
    log.error("undecodable bundle at %s:%s@%s: %s", msg.topic, msg.partition, msg.offset, exc)
    return topics.dlq.send(
        key=msg.key,
        value=msg.value,
        headers=dead_letters.headers(
            "internal_error", f"bad bundle: {exc}", msg.topic, msg.partition, msg.offset, "update"
        ),
    )
