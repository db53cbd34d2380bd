"""Read-only looks at topics, for the CLI and the demo: dead letters by reason."""

from __future__ import annotations

import asyncio
from collections import Counter

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream import dead_letters
from stream.settings import Settings


async def dlq_counts(settings: Settings, timeout: float = 3.0) -> Counter[str]:
    """Count every dead letter on the DLQ topic by its ``dlq.reason`` header."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.broker_hosts, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    counts: Counter[str] = Counter()
    try:
        await consumer.topics()  # loads metadata
        parts = consumer.partitions_for_topic(settings.dlq_topic)
        if not parts:
            return counts
        tps = [TopicPartition(settings.dlq_topic, p) for p in parts]
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
