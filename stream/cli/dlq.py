"""Read-only looks at topics, for the CLI and the demo: dead letters by reason."""

from __future__ import annotations

import asyncio
from collections import Counter

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


async def replay_dead(
    settings: Settings, reasons: set[str] | None = None, timeout: float = 5.0
) -> int:
    """Send dead letters (all, or those with one of ``reasons``) back to the input topic.

    For after a fix: a raised size limit, an earlier ``RTP_EARLIEST``, a corrected producer.
    The raw bytes, key and original headers go back unchanged; what fails again is
    dead-lettered again, with its new reason.
    """
    from aiokafka import AIOKafkaProducer

    consumer = AIOKafkaConsumer(
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
    await consumer.start()
    await producer.start()
    sent = 0
    try:
        await consumer.topics()
        tps = [
            TopicPartition(settings.topics.dlq, p)
            for p in sorted(consumer.partitions_for_topic(settings.topics.dlq) or ())
        ]
        if not tps:
            return 0
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        futures = []
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=300, max_records=5000)
            if not batch:
                break
            for records in batch.values():
                for record in records:
                    headers = list(record.headers or ())
                    why = dead_letters.parse(headers).get(dead_letters.REASON, "")
                    if reasons and why not in reasons:
                        continue
                    original = [(k, v) for k, v in headers if not k.startswith("dlq.")]
                    futures.append(
                        await producer.send(
                            settings.topics.input, record.value, key=record.key, headers=original
                        )
                    )
                    sent += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
        await consumer.stop()
    return sent
