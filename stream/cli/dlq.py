"""Read-only looks at topics, for the CLI and the demo: dead letters by reason."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.security import kafka_client_kwargs
from stream.settings import Settings
from stream.worker import dead_letters


async def dlq_counts(settings: Settings, timeout: float = 3.0) -> Counter[str]:
    """Count every dead letter on the DLQ topic by its ``dlq.reason`` header."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.broker_hosts,
        **kafka_client_kwargs(settings.kafka),
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    counts: Counter[str] = Counter()
    try:
        await consumer.topics()  # loads metadata
        parts = consumer.partitions_for_topic(settings.topics.dlq)
        if not parts:
            return counts
        tps = [TopicPartition(settings.topics.dlq, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= ends[tp] for tp in tps):
                break
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for record in records:
                    headers = dead_letters.parse(list(record.headers or ()))
                    counts[headers.get(dead_letters.REASON, "unknown")] += 1
    finally:
        await consumer.stop()
    return counts


#: Dead letters sent (and acknowledged) between two saves of the replay position.
REPLAY_CHUNK = 500


def replay_group(settings: Settings, reason: str | None) -> str:
    """The consumer group whose committed offsets remember how far a replay got: one for
    "every reason", one per reason (``--reason``)."""
    base = f"{settings.kafka.app_id}-dlq-replay"
    if reason is None:
        return base
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", reason)[:100]
    return f"{base}.{safe}"


@dataclass
class PartitionReplay:
    partition: int
    start: int  # first offset read this run
    end: int  # end of the partition when the run began
    reached: int  # next offset to examine when the run stopped


@dataclass
class ReplayReport:
    """What one ``dlq --replay`` did; ``complete`` when every partition reached its end."""

    sent: int = 0
    already: int = 0  # replayed by an earlier run (skipped)
    other_reasons: int = 0  # not selected by ``--reason`` (left for another run)
    partitions: list[PartitionReplay] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems and all(p.reached >= p.end for p in self.partitions)

    @property
    def total(self) -> int:
        return sum(max(0, p.end - p.start) for p in self.partitions)


class _Positions:
    """Committed replay positions of one group per selection, read lazily, saved by commit.

    A dead letter of reason R at offset o was replayed before iff o is below the position
    of the "every reason" group or below R's own group, whichever runs did it."""

    def __init__(self, settings: Settings, tps: list[TopicPartition]) -> None:
        self.settings, self.tps = settings, tps
        self._groups: dict[str | None, AIOKafkaConsumer] = {}
        self._at: dict[str | None, dict[TopicPartition, int]] = {}

    async def of(self, reason: str | None) -> dict[TopicPartition, int]:
        if reason not in self._at:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka.broker_hosts,
                **kafka_client_kwargs(self.settings.kafka),
                group_id=replay_group(self.settings, reason),
                enable_auto_commit=False,
            )
            await consumer.start()
            consumer.assign(self.tps)
            consumer.pause(*self.tps)  # only for its committed offsets: no fetching
            self._groups[reason] = consumer
            found = {}
            for tp in self.tps:
                offset = await consumer.committed(tp)
                found[tp] = offset if offset is not None and offset >= 0 else 0
            self._at[reason] = found
        return self._at[reason]

    async def done(self, tp: TopicPartition, offset: int, reason: str) -> bool:
        return offset < (await self.of(None))[tp] or offset < (await self.of(reason))[tp]

    async def save(self, reason: str | None, reached: dict[TopicPartition, int]) -> None:
        at = await self.of(reason)
        moved = {tp: o for tp, o in reached.items() if o > at[tp]}
        if moved:
            await self._groups[reason].commit(moved)
            at.update(moved)

    async def close(self) -> None:
        for consumer in self._groups.values():
            await consumer.stop()


async def replay_dead(
    settings: Settings,
    reasons: set[str] | None = None,
    timeout: float = 10.0,
    from_start: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Send dead letters (all, or those with one of ``reasons``) back to the input topic,
    each once: resumable and idempotent across runs.

    For after a fix: a raised size limit, an earlier ``RTP_EARLIEST``, a corrected producer.
    The raw bytes, key and original headers go back unchanged; what fails again is
    dead-lettered again, with its new reason. A run reads every partition up to the end it
    had when the run began; how far it got is committed (consumer groups of
    :func:`replay_group`) after every :data:`REPLAY_CHUNK` acknowledged sends, so a second
    run sends only what is new, and an interrupted one resumes (re-sending at most the
    chunk in flight). ``timeout``: give up after this many seconds without a record (the
    report then says where it stopped). ``from_start`` ignores what earlier runs did.
    ``on_progress(examined, total)`` is called as records are examined.
    """
    from aiokafka import AIOKafkaProducer

    from stream.cli.lag import true_end

    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.broker_hosts,
        **kafka_client_kwargs(settings.kafka),
        enable_auto_commit=False,
        group_id=None,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.broker_hosts,
        **kafka_client_kwargs(settings.kafka),
        acks="all",
    )
    await reader.start()
    await producer.start()
    report = ReplayReport()
    positions: _Positions | None = None
    try:
        metadata = await reader._client.fetch_all_metadata()
        tps = [
            TopicPartition(settings.topics.dlq, p)
            for p in sorted(metadata.partitions_for_topic(settings.topics.dlq) or ())
        ]
        if not tps:
            return report
        listed = await reader.end_offsets(tps)
        ends = {tp: await true_end(reader, tp, listed[tp]) for tp in tps}
        positions = _Positions(settings, tps)
        selections: list[str | None] = []
        selections.extend(sorted(reasons or ()))  # None: the "every reason" position
        if not selections:
            selections.append(None)
        starts: dict[TopicPartition, int] = {}
        for tp in tps:
            if from_start:
                starts[tp] = 0
                continue
            everything = (await positions.of(None))[tp]
            own = [max(everything, (await positions.of(r))[tp]) for r in selections if r]
            starts[tp] = min(own) if own else everything
        for tp in tps:
            if starts[tp] > ends[tp]:
                report.problems.append(
                    f"partition {tp.partition}: replayed up to offset {starts[tp]}, but the "
                    f"topic ends at {ends[tp]}: was {settings.topics.dlq} re-created? "
                    "Run with --from-start to replay it all"
                )
        live = [tp for tp in tps if starts[tp] < ends[tp]]
        report.partitions = [
            PartitionReplay(tp.partition, starts[tp], ends[tp], starts[tp]) for tp in tps
        ]
        by_partition = {p.partition: p for p in report.partitions}
        if not live:
            return report
        reader.assign(live)
        for tp in live:
            reader.seek(tp, starts[tp])
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        examined = 0
        pending = set(live)
        while pending:
            batch = await reader.getmany(*pending, timeout_ms=500, max_records=REPLAY_CHUNK)
            if not any(batch.values()):
                for tp in list(pending):  # past the end already (a gap: control records)
                    if await reader.position(tp) >= ends[tp]:
                        by_partition[tp.partition].reached = ends[tp]
                        pending.discard(tp)
                if pending and loop.time() - idle_since > timeout:
                    for tp in pending:
                        at = by_partition[tp.partition]
                        report.problems.append(
                            f"partition {tp.partition}: no record for {timeout:g}s at offset "
                            f"{at.reached} of {at.end}; run again to resume"
                        )
                    break
                continue
            idle_since = loop.time()
            futures = []
            reached: dict[TopicPartition, int] = {}
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        reached[tp] = ends[tp]
                        break  # arrived after this run began: the next run's
                    examined += 1
                    reached[tp] = record.offset + 1
                    headers = list(record.headers or ())
                    why = dead_letters.parse(headers).get(dead_letters.REASON, "unknown")
                    if reasons and why not in reasons:
                        report.other_reasons += 1
                        continue
                    if not from_start and await positions.done(tp, record.offset, why):
                        report.already += 1
                        continue
                    original = [(k, v) for k, v in headers if not k.startswith("dlq.")]
                    futures.append(
                        await producer.send(
                            settings.topics.input, record.value, key=record.key, headers=original
                        )
                    )
            await asyncio.gather(*futures)  # acknowledged (acks=all) before it is remembered
            report.sent += len(futures)
            for selection in selections:
                await positions.save(selection, reached)
            for tp, offset in reached.items():
                by_partition[tp.partition].reached = offset
            for tp in list(pending):
                if by_partition[tp.partition].reached >= ends[tp]:
                    pending.discard(tp)
                    reader.pause(tp)
            if on_progress is not None:
                on_progress(examined, report.total)
    finally:
        if positions is not None:
            await positions.close()
        await producer.stop()
        await reader.stop()
    return report
