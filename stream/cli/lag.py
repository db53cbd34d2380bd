"""Consumer lag of the worker's groups, read from the broker (for ops without Prometheus)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.security import kafka_client_kwargs
from stream.settings import Settings
from stream.worker.topics import group_of


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed here
    end: int
    lag: int
    age_s: float | None  # how old the first unconsumed message is


async def group_lag(settings: Settings, topics: list[str] | None = None) -> list[PartitionLag]:
    """Committed offset, end offset, lag and lag age for each partition of ``topics``."""
    wanted = topics or [settings.topics.input, settings.topics.routed]
    # A consumer named after the group, never subscribed, so it never joins the group: it
    # only asks the coordinator for committed offsets (OffsetFetch). Tansu answers that,
    # but not the admin client's ListConsumerGroupOffsets request.
    groups = {
        name: AIOKafkaConsumer(
            bootstrap_servers=settings.kafka.broker_hosts,
            **kafka_client_kwargs(settings.kafka),
            group_id=name,
            enable_auto_commit=False,
        )
        for name in {group_of(settings, t) for t in wanted}
    }
    reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.broker_hosts,
        **kafka_client_kwargs(settings.kafka),
        group_id=None,
        enable_auto_commit=False,
    )
    for group in groups.values():
        await group.start()
    await reader.start()
    try:
        metadata = await reader._client.fetch_all_metadata()
        tps = [
            TopicPartition(t, p)
            for t in wanted
            for p in sorted(metadata.partitions_for_topic(t) or ())
        ]
        if not tps:
            return []
        listed = await reader.end_offsets(tps)
        ends = {tp: await true_end(reader, tp, listed[tp]) for tp in tps}
        rows = []
        for tp in tps:
            offset = await groups[group_of(settings, tp.topic)].committed(tp)
            done = offset if offset is not None and offset >= 0 else None
            behind = ends[tp] - (done or 0)
            age = await _age(reader, tp, done or 0) if behind > 0 else 0.0
            rows.append(PartitionLag(tp.topic, tp.partition, done, ends[tp], behind, age))
        return rows
    finally:
        await reader.stop()
        for group in groups.values():
            await group.stop()


async def true_end(reader: AIOKafkaConsumer, tp: TopicPartition, listed: int) -> int:
    """The end offset, checked by reading the last batch.

    Tansu (seen with v0.6.0) answers ListOffsets(latest) with the last record *batch*'s
    base offset + 1, which undercounts when that batch holds several records. Reading
    from ``listed - 1`` returns the whole last batch; on Apache Kafka it is one record.
    """
    if listed <= 0:
        return listed
    reader.assign([tp])
    reader.seek(tp, listed - 1)
    end = listed
    while True:
        batch = await reader.getmany(tp, timeout_ms=1000, max_records=10_000)
        records = batch.get(tp) or []
        if not records:
            return end
        end = max(end, records[-1].offset + 1)


async def _age(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> float | None:
    """Seconds since the broker received the first message the group has not consumed."""
    consumer.assign([tp])
    consumer.seek(tp, offset)
    batch = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
    records = batch.get(tp) or []
    if not records:
        return None
    stamp_ms: int = records[0].timestamp
    return max(0.0, time.time() - stamp_ms / 1000)


def table(rows: list[PartitionLag]) -> str:
    """Plain-text table, one line per partition plus a total."""
    lines = [f"{'topic':32} {'part':>4} {'committed':>10} {'end':>10} {'lag':>8} {'lag age':>9}"]
    for r in rows:
        committed = "-" if r.committed is None else str(r.committed)
        age = "?" if r.age_s is None else f"{r.age_s:.1f}s"
        lines.append(
            f"{r.topic:32} {r.partition:>4} {committed:>10} {r.end:>10} {r.lag:>8} {age:>9}"
        )
    lines.append(f"{'total':32} {'':>4} {'':>10} {'':>10} {sum(r.lag for r in rows):>8}")
    return "\n".join(lines)
