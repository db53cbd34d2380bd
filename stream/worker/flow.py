"""The worker's two stages, independent of Faust: ingest (validate, route) and update
(apply, emit).

Each stage takes one batch of :class:`~stream.worker.transport.InputRecord` and writes its
outputs through a :class:`~stream.worker.transport.Sink`, so the same code runs under the
Faust agents (``stream/worker/agents.py``) and in-process over memory sinks in tests. A
stage never lets a batch fail: outages are retried until they pass
(``stream/worker/retry.py``), a refused output becomes a dead letter.

Follow one event: :meth:`IngestStage.handle` decodes and validates it, and sends it in a
bundle to the ``routed`` role, keyed by owner partition; :meth:`UpdateStage.handle` applies
the bundles (:class:`~profiles.pipeline.updater.BatchUpdater`, one Redis round trip) and sends
``profile_updated`` plus the features' events, each to its role.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson

from profiles.audiences.membership import AudienceChange, audience_event
from profiles.churn.tracker import ChurnChange, churn_event
from profiles.core.privacy import KeyedHash
from profiles.core.profile import Record
from profiles.pipeline.downstream import profile_updated
from profiles.pipeline.updater import SLICE_S, BatchResult, chunks
from profiles.value.scorer import ValueChange, value_event
from schemas.segment_identity import trait_policy
from stream.settings import Settings
from stream.worker import dead_letters
from stream.worker.delivery import Outgoing, deliver_all
from stream.worker.epochs import Fetch
from stream.worker.ingest import MAX_BUNDLE_BYTES, Routed, bundles_of, route, unpack
from stream.worker.retry import apply_batch, kafka_outages, until_done
from stream.worker.runtime import Runtime
from stream.worker.transport import InputRecord, Sink, Source, user_keyed

log = logging.getLogger(__name__)


class IngestStage:
    """Decode, validate and route one batch of input messages."""

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        privacy = settings.privacy
        hasher = KeyedHash(privacy.key, "identify-traits") if privacy.pseudonymize else None
        self.traits = trait_policy(privacy.kept_traits, privacy.identify_pii, hasher)

    async def handle(self, messages: list[InputRecord], source: Source, sink: Sink) -> Routed:
        runtime, settings = self.runtime, self.settings
        fetch: Fetch = source.fetch
        sources = await until_done(
            functools.partial(runtime.epochs.sources, messages, source.highwater, fetch),
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
            traits=self.traits,
            # Half a request: a bundle must fit in one (a single record too large for
            # that is refused and dead-lettered as output_rejected, see delivery.py).
            max_bundle_bytes=min(MAX_BUNDLE_BYTES, settings.ingest.max_request_bytes // 2),
        )
        outgoing = ingest_outgoing(routed, settings.ingest.max_message_bytes)
        refused = await until_done(
            functools.partial(_deliver, outgoing, sink), "routing sends", runtime
        )
        advance = functools.partial(runtime.epochs.advance, messages)
        await until_done(advance, "input marks", runtime)
        runtime.observer.ingest(messages, routed)
        _count_refusals(runtime, "ingest", refused)
        runtime.health.alive("ingest")
        return routed


class UpdateStage:
    """Apply one batch of bundles and announce what changed."""

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime

    async def handle(self, bundles: list[InputRecord], sink: Sink) -> BatchResult:
        runtime = self.runtime
        records: list[Record] = []
        bad: list[tuple[InputRecord, Exception]] = []
        slice_ends = time.perf_counter() + SLICE_S
        for bundle in bundles:
            try:
                records.extend(unpack(bundle.value or b""))
            except (ValueError, KeyError, TypeError) as exc:
                bad.append((bundle, exc))
            if time.perf_counter() > slice_ends:  # a batch of big bundles: let the loop run
                await asyncio.sleep(0)
                slice_ends = time.perf_counter() + SLICE_S
        started = time.perf_counter()
        result = BatchResult()
        # A backlog makes big batches: apply them in parts, so no single stretch of work
        # (load, compute, commit) holds the event loop for long.
        for part in chunks(records, self.settings.ingest.update_chunk):
            async with runtime.writes:  # one writer of the owned profiles at a time (sweeps)
                result.absorb(await apply_batch(runtime.updater, part, runtime))
        elapsed = time.perf_counter() - started
        now_ms = int(time.time() * 1000)
        outgoing = update_outgoing(self.settings, runtime, records, result, bad, now_ms)
        refused = await until_done(
            functools.partial(_deliver, outgoing, sink), "output sends", runtime
        )
        runtime.observer.update(bundles, records, result, elapsed, runtime.models.embedder)
        _count_refusals(runtime, "update", refused)
        runtime.health.alive("update")
        return result


C = TypeVar("C")


async def announce(
    sink: Sink,
    role: str,
    changes: Sequence[C],
    user: Callable[[C], str],
    event: Callable[[C, int], dict[str, Any]],
) -> None:
    """A sweep's changes (what moved with time alone) to ``role``, keyed by user, confirmed."""
    now_ms = int(time.time() * 1000)

    def build() -> list[Awaitable[Awaitable[object]]]:
        return [sink.send(role, user(c).encode(), orjson.dumps(event(c, now_ms))) for c in changes]

    await send_confirmed(build)


async def announce_churn(sink: Sink, changes: Sequence[ChurnChange]) -> None:
    """The churn sweep's changes (risk moved with time alone) to the ``churn`` role."""
    await announce(sink, "churn", changes, lambda c: c.profile.user_id, churn_event)


async def announce_value(sink: Sink, changes: Sequence[ValueChange]) -> None:
    """The value sweep's tier changes (recency moved with time alone) to the ``value`` role."""
    await announce(sink, "value", changes, lambda c: c.profile.user_id, value_event)


async def announce_audiences(sink: Sink, changes: Sequence[AudienceChange]) -> None:
    """The audience sweep's membership changes to the ``audiences`` role."""
    await announce(sink, "audiences", changes, lambda c: c.user_id, audience_event)


async def send_confirmed(build: Callable[[], list[Awaitable[Awaitable[object]]]]) -> None:
    """Queue the sends in order (built anew on each try: a send coroutine runs once) and wait
    until the broker confirmed each; a transient broker error is a
    :class:`~stream.worker.retry.KafkaOutage`."""
    with kafka_outages():
        futures = [await send for send in build()]
        for future in futures:
            await future


def _count_refusals(runtime: Runtime, stage: str, refused: int) -> None:
    if refused:
        runtime.metrics.dead.labels("output_rejected", stage).inc(refused)


async def _deliver(outgoing: list[Outgoing], sink: Sink) -> int:
    """Every output once, refused ones as dead letters; a transient broker error is a
    :class:`~stream.worker.retry.KafkaOutage` (the caller retries the whole batch)."""
    with kafka_outages():
        return await deliver_all(outgoing, sink)


def _bundles_outgoing(bundles: dict[int, list[bytes]], stage: str) -> list[Outgoing]:
    return [
        Outgoing(
            "routed",
            str(p).encode(),
            bundle,
            "bundle",
            stage,
            None,  # a refused bundle is dead-lettered record by record, each with its own
            partition=p,
            parts=functools.partial(_bundle_parts, bundle, stage),
        )
        for p, parts in bundles.items()
        for bundle in parts
    ]


def ingest_outgoing(routed: Routed, value_max: int) -> list[Outgoing]:
    """Bundles to the owner partitions, then dead letters with their reason, bounded."""
    out = _bundles_outgoing(routed.bundles, "ingest")
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
        where = (m.topic, m.partition, m.offset)
        out.append(
            Outgoing(
                "dlq", letter.key, letter.value, "dead_letter", "ingest", where, letter.headers
            )
        )
    return out


def _coordinates(record: Record) -> tuple[str, int, int]:
    return record.source.topic, record.source.partition, record.offset  # whatever the epoch


def _bundle_parts(bundle: bytes, stage: str = "ingest") -> list[Outgoing]:
    """The records of a refused bundle, each as its own small dead letter to be."""
    return [
        Outgoing(
            "routed",
            str(r.event.get("user_id", "")).encode(),
            orjson.dumps(r.event),
            "bundle record",
            stage,
            _coordinates(r),
        )
        for r in unpack(bundle)
    ]


def update_outgoing(
    settings: Settings,
    runtime: Runtime,
    records: Sequence[Record],
    result: BatchResult,
    bad: Sequence[tuple[InputRecord, Exception]],
    now_ms: int,
) -> list[Outgoing]:
    """Everything one update batch announces (ids are deterministic, so a retry re-sends the
    same); each output names the input coordinates of its user's last event, for a refusal."""
    origin = {r.event["user_id"]: _coordinates(r) for r in records if "user_id" in r.event}
    value_max = settings.ingest.max_message_bytes
    out = [_dead_bundle(bundle, exc, value_max) for bundle, exc in bad]
    # Identity stitching's handover (merges, forwarded events, cascaded erasures): to the
    # routed topic, from the same confirmed sends as the rest, before the offsets move.
    max_bundle = min(MAX_BUNDLE_BYTES, settings.ingest.max_request_bytes // 2)
    out += _bundles_outgoing(
        bundles_of(result.routed, settings.kafka.partitions, max_bundle), "update"
    )

    def add(role: str, user_id: str, kind: str, payload: bytes | None) -> None:
        where = origin.get(user_id, (role, 0, 0))
        out.append(Outgoing(role, user_id.encode(), payload, kind, "update", where))

    for user_id in result.erased:
        # A tombstone on every user-keyed output: compacted topics forget the user too.
        for role in user_keyed():
            add(role, user_id, "tombstone", None)
    half_life, features = settings.profile.half_life_ms, runtime.updater.features
    for profile in result.updated:
        payload = orjson.dumps(profile_updated(profile, half_life, now_ms, features))
        add("profiles", profile.user_id, "profile_updated", payload)
    for emit in result.emits:
        add(emit.role, emit.user_id, emit.kind, orjson.dumps(emit.build(now_ms)))
    for dead in result.dead:
        where = _coordinates(dead.record)
        letter = dead_letters.letter(
            dead.reason,
            dead.detail,
            *where,
            "update",
            dead.record.event["user_id"].encode(),
            orjson.dumps(dead.record.event),
            value_max=value_max,
        )
        out.append(
            Outgoing(
                "dlq", letter.key, letter.value, "dead_letter", "update", where, letter.headers
            )
        )
    return out


def _dead_bundle(bundle: InputRecord, exc: Exception, value_max: int) -> Outgoing:
    where = (bundle.topic, bundle.partition, bundle.offset)
    log.error("undecodable bundle at %s:%s@%s: %s", *where, exc)
    letter = dead_letters.letter(
        "internal_error",
        f"bad bundle: {exc}",
        *where,
        "update",
        bundle.key,
        bundle.value,
        value_max=value_max,
    )
    return Outgoing("dlq", letter.key, letter.value, "dead_letter", "update", where, letter.headers)
