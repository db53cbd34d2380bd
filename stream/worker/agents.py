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
from profiles.pipeline.downstream import profile_updated
from profiles.pipeline.updater import BatchResult
from stream.settings import Settings
from stream.worker import dead_letters, topics
from stream.worker.delivery import Outgoing, deliver_all
from stream.worker.epochs import broker_fetch, source_topic
from stream.worker.health import EXIT_CRASHED
from stream.worker.ingest import MAX_BUNDLE_BYTES, Inbound, Routed, route, unpack
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
        specs = {spec.role: spec for spec in topics.layout(settings)}

        def output(role: str) -> TopicT:
            # The worker creates its outputs with the same layout as `stream topics create`.
            spec = specs[role]
            return app.topic(
                spec.name,
                **raw,
                internal=True,
                partitions=spec.partitions,
                replicas=spec.replication,
                config=dict(spec.config),
            )

        return cls(
            input=app.topic(settings.topics.input, **raw),
            routed=output("routed"),
            profiles=output("profiles"),
            dlq=output("dlq"),
            segments=output("segments"),
            churn=output("churn"),
            recs=output("recs"),
        )

    def by_role(self, role: str) -> TopicT:
        """The user-keyed output of ``role`` (what a feature's emit names)."""
        if role not in topics.COMPACTED:
            raise KeyError(f"no user-keyed output topic for role {role!r}")
        return cast(TopicT, getattr(self, role))

    def user_keyed(self) -> tuple[TopicT, ...]:
        """The compacted per-user outputs: an erasure tombstones the user on each."""
        return tuple(self.by_role(role) for role in topics.ROLES if role in topics.COMPACTED)

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
                runtime.outputs_declared = True

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
            settings.ingest.batch_max, settings.ingest.batch_within_s
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
                settings.kafka.partitions,
                int(time.time() * 1000),
                runtime.pseudonyms,
                sources=sources,
                # Half a request: a bundle must fit in one (a single record too large for
                # that is refused and dead-lettered as output_rejected, see delivery.py).
                max_bundle_bytes=min(MAX_BUNDLE_BYTES, settings.ingest.max_request_bytes // 2),
            )
            outgoing = _ingest_outgoing(topics, routed, settings.ingest.max_message_bytes)
            refused = await until_done(
                functools.partial(_deliver, outgoing, topics.dlq), "routing sends", runtime
            )
            advance = functools.partial(runtime.epochs.advance, messages)
            await until_done(advance, "input marks", runtime)
            runtime.observe_ingest(messages, routed)
            _count_refusals(runtime, "ingest", refused)
            runtime.health.alive("ingest")

    @app.agent(topics.routed, name="update")
    async def update(stream: StreamT[Any]) -> None:
        await until_done(start, "start-up", runtime)
        async for events in cast(faust.Stream[Any], stream).take_events(
            settings.ingest.bundle_max, settings.ingest.batch_within_s
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
            outgoing = _update_outgoing(topics, settings, runtime, records, result, bad, now_ms)
            refused = await until_done(
                functools.partial(_deliver, outgoing, topics.dlq), "output sends", runtime
            )
            runtime.observe_update([_inbound(e) for e in events], records, result, elapsed)
            _count_refusals(runtime, "update", refused)
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
        stats.assigned = sum(1 for tp in assigned if tp.topic == settings.topics.routed)
        runtime.metrics.assigned.set(stats.assigned)
        runtime.keep_positions({(tp.topic, tp.partition) for tp in assigned})

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
            now_ms = int(time.time() * 1000)
            await _send(lambda: [_churn_send(topics, c, now_ms) for c in changes])
            runtime.metrics.emitted.labels("churn_risk").inc(len(changes))

        # A failure waits for the next tick: the due index still holds the users.
        await runtime.tick("churn sweep", lambda: runtime.sweep_churn(owned, announce))

    @app.timer(interval=settings.churn.fit_s)  # type: ignore[untyped-decorator]
    async def fit_churn() -> None:
        await runtime.tick("churn model fit", runtime.fit_churn)  # keeps the previous model

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
        runtime.update_lag(
            {(tp.topic, tp.partition): consumer.highwater(tp) for tp in consumer.assignment()}
        )


def _count_refusals(runtime: Runtime, stage: str, refused: int) -> None:
    if refused:
        runtime.stats.dead["output_rejected"] += refused
        runtime.metrics.dead.labels("output_rejected", stage).inc(refused)


async def _deliver(outgoing: list[Outgoing], dlq: TopicT) -> int:
    """Every output once, refused ones as dead letters; a transient broker error is a
    :class:`~stream.worker.retry.KafkaOutage` (the caller retries the whole batch)."""
    with kafka_outages():
        return await deliver_all(outgoing, dlq)


async def _send(build: Callable[[], list[Awaitable[Any]]]) -> None:
    """Build the sends (anew on each try: a send coroutine runs once) and confirm them; a
    transient broker error is a :class:`~stream.worker.retry.KafkaOutage`."""
    with kafka_outages():
        await _confirm(build())


def _ingest_outgoing(topics: Topics, routed: Routed, value_max: int) -> list[Outgoing]:
    """Bundles to the owner partitions, then dead letters with their reason, bounded."""
    out = [
        Outgoing(
            topics.routed,
            str(p).encode(),
            bundle,
            "bundle",
            "ingest",
            None,  # a refused bundle is dead-lettered record by record, each with its own
            partition=p,
            parts=functools.partial(_bundle_parts, topics, bundle),
        )
        for p, bundles in routed.bundles.items()
        for bundle in bundles
    ]
    for d in routed.dead:
        m = d.message
        schema = (
            [] if d.schema_id is None else [(dead_letters.SCHEMA_ID, str(d.schema_id).encode())]
        )
        letter = dead_letters.letter(
            d.reason,
            d.detail,
            m.topic,
            m.partition,
            m.offset,
            "ingest",
            m.key,
            m.value,
            m.headers,
            value_max=value_max,
            extra=schema,
        )
        out.append(
            Outgoing(
                topics.dlq,
                letter.key,
                letter.value,
                "dead_letter",
                "ingest",
                (m.topic, m.partition, m.offset),
                letter.headers,
            )
        )
    return out


def _coordinates(record: Record) -> tuple[str, int, int]:
    topic, partition = source_topic(record.source)  # whatever the fence epoch
    return topic, partition, record.offset


def _bundle_parts(topics: Topics, bundle: bytes) -> list[Outgoing]:
    """The records of a refused bundle, each as its own small dead letter to be."""
    return [
        Outgoing(
            topics.routed,
            str(r.event.get("user_id", "")).encode(),
            orjson.dumps(r.event),
            "bundle record",
            "ingest",
            _coordinates(r),
        )
        for r in unpack(bundle)
    ]


def _update_outgoing(
    topics: Topics,
    settings: Settings,
    runtime: Runtime,
    records: Sequence[Record],
    result: BatchResult,
    bad: Sequence[tuple[EventT[Any], Exception]],
    now_ms: int,
) -> list[Outgoing]:
    """Everything one update batch announces (ids are deterministic, so a retry re-sends the
    same); each output names the input coordinates of its user's last event, for a refusal."""
    origin = {r.event["user_id"]: _coordinates(r) for r in records if "user_id" in r.event}
    out = [
        _dead_bundle(topics, event, exc, settings.ingest.max_message_bytes) for event, exc in bad
    ]

    def add(topic: TopicT, user_id: str, kind: str, payload: bytes | None) -> None:
        where = origin.get(user_id, (topic.get_topic_name(), 0, 0))
        out.append(Outgoing(topic, user_id.encode(), payload, kind, "update", where))

    for user_id in result.erased:
        # A tombstone on every user-keyed output: compacted topics forget the user too.
        for topic in topics.user_keyed():
            add(topic, user_id, "tombstone", None)
    half_life, features = settings.profile.half_life_ms, runtime.updater.features
    for profile in result.updated:
        payload = orjson.dumps(profile_updated(profile, half_life, now_ms, features))
        add(topics.profiles, profile.user_id, "profile_updated", payload)
    for emit in result.emits:
        payload = orjson.dumps(emit.build(now_ms))
        add(topics.by_role(emit.role), emit.user_id, emit.kind, payload)
    for dead in result.dead:
        where = _coordinates(dead.record)
        letter = dead_letters.letter(
            dead.reason,
            dead.detail,
            *where,
            "update",
            dead.record.event["user_id"].encode(),
            orjson.dumps(dead.record.event),
            value_max=settings.ingest.max_message_bytes,
        )
        out.append(
            Outgoing(
                topics.dlq,
                letter.key,
                letter.value,
                "dead_letter",
                "update",
                where,
                letter.headers,
            )
        )
    return out


def _churn_send(topics: Topics, change: ChurnChange, now_ms: int) -> Awaitable[Any]:
    payload = orjson.dumps(churn_event(change, now_ms))
    return topics.churn.send(key=change.profile.user_id.encode(), value=payload)


def _dead_bundle(topics: Topics, event: EventT[Any], exc: Exception, value_max: int) -> Outgoing:
    msg = event.message
    log.error("undecodable bundle at %s:%s@%s: %s", msg.topic, msg.partition, msg.offset, exc)
    where = (msg.topic, msg.partition, msg.offset)
    letter = dead_letters.letter(
        "internal_error",
        f"bad bundle: {exc}",
        *where,
        "update",
        msg.key,
        msg.value,
        value_max=value_max,
    )
    return Outgoing(
        topics.dlq, letter.key, letter.value, "dead_letter", "update", where, letter.headers
    )
