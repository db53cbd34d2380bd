"""The input topic read in batches, off Faust's per-message path (``RTP_INGEST_CONSUMER=batch``).

Faust turns every consumed message into an event with its own bookkeeping (~77 µs each on
our machines, more than all of our own work per event). Ingest needs none of it: it takes a
batch, routes it into a few bundles, and acknowledges the batch once the broker confirmed the
bundles. So the input is read by an aiokafka consumer of its own, in its own group
(``<app id>-ingest``), inside the same worker process and lifecycle:

* ``getmany`` hands out up to ``RTP_BATCH_MAX`` messages (what the fetcher already holds,
  waiting at most ``RTP_BATCH_WITHIN`` for the first);
* the batch goes through the same :class:`~stream.worker.flow.IngestStage` as under Faust
  (which retries outages until its sends are confirmed);
* then, and only then, its offsets are committed: a crash before that redelivers the batch,
  and the update stage's offset fences absorb the bundles sent twice;
* a rebalance waits for the batch in hand (the revocation takes the same lock), so a
  partition moves with everything before it committed.

A group has its own committed offsets, so on first use the consumer starts each partition
where the Faust agent's group (``<app id>``) left it, if it had been there: switching
``RTP_INGEST_CONSUMER`` from ``faust`` loses nothing and repeats nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from mode import Service

from stream.security import kafka_client_kwargs
from stream.settings import Settings
from stream.worker.epochs import Fetch
from stream.worker.fetch_wait import wait_ms
from stream.worker.flow import IngestStage
from stream.worker.ingest import Inbound
from stream.worker.retry import kafka_outages, until_done
from stream.worker.runtime import Runtime
from stream.worker.topics import ingest_group
from stream.worker.transport import Sink

log = logging.getLogger(__name__)


def inbound(record: Any) -> Inbound:
    """An aiokafka ``ConsumerRecord`` as the stages see it."""
    headers = [(str(k), bytes(v)) for k, v in record.headers or () if v is not None]
    return Inbound(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value,
        headers,
        int(record.timestamp or 0),
    )


class BatchInput(Service):
    """The input topic's consumer: batches into the ingest stage, offsets after its sends."""

    def __init__(
        self,
        settings: Settings,
        runtime: Runtime,
        stage: IngestStage,
        sink: Sink,
        fetch: Fetch,
        ready: Callable[[], Awaitable[None]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings, self.runtime, self.stage, self.sink = settings, runtime, stage, sink
        self._fetch = fetch
        self._ready = ready
        self._lock = asyncio.Lock()  # one batch at a time; a revocation waits for it
        self.owned: set[tuple[str, int]] = set()
        self._consumer: AIOKafkaConsumer | None = None  # made in the running loop

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the ingest consumer is not started")
        return self._consumer

    def _make_consumer(self) -> AIOKafkaConsumer:
        kafka = self.settings.kafka
        session_ms = int(kafka.session_timeout_s * 1000)
        return AIOKafkaConsumer(
            bootstrap_servers=kafka.broker_hosts,
            **kafka_client_kwargs(kafka),
            group_id=ingest_group(self.settings),
            client_id=f"{kafka.app_id}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(500, session_ms // 10),
            rebalance_timeout_ms=max(2 * session_ms, 20_000),
            max_poll_records=self.settings.ingest.batch_max,
            fetch_max_wait_ms=wait_ms(self.settings.ingest.batch_within_s),  # see fetch_wait.py
        )

    # -- Source (what the ingest stage asks beyond the batch) ---------------------------------

    def highwater(self, topic: str, partition: int) -> int | None:
        if self._consumer is None:
            return None
        end: int | None = self._consumer.highwater(TopicPartition(topic, partition))
        return end

    async def fetch(
        self, topic: str, partition: int, offset: int
    ) -> tuple[bytes | None, bytes | None] | None:
        return await self._fetch(topic, partition, offset)

    # -- lifecycle --------------------------------------------------------------------------

    async def on_start(self) -> None:
        self._consumer = self._make_consumer()
        self.consumer.subscribe([self.settings.topics.input], listener=_Listener(self))
        await until_done(self._start_consumer, "ingest consumer start", self.runtime)

    async def _start_consumer(self) -> None:
        with kafka_outages():
            await self.consumer.start()

    async def on_stop(self) -> None:
        # An unfinished batch is not committed: the next owner routes it again (fenced).
        if self._consumer is not None:
            await self._consumer.stop()

    @Service.task
    async def _run(self) -> None:
        await self.consume()

    async def consume(self) -> None:
        """Route batches until stopped, or until a bug crashes the loop (told to /health)."""
        await until_done(self._ready, "start-up", self.runtime)
        within_ms = int(self.settings.ingest.batch_within_s * 1000)
        try:
            while not self.should_stop:
                poll = functools.partial(self._poll, within_ms)
                batch = await until_done(poll, "ingest fetch", self.runtime)
                if batch:
                    async with self._lock:
                        await self._handle(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: crashed like a Faust agent, /health and exit tell
            log.exception("the ingest consumer crashed")
            self.runtime.health.crash("ingest", exc)

    async def _poll(self, within_ms: int) -> dict[TopicPartition, list[Any]]:
        with kafka_outages():
            batch: dict[TopicPartition, list[Any]] = await self.consumer.getmany(
                timeout_ms=within_ms, max_records=self.settings.ingest.batch_max
            )
        return batch

    async def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        messages = [inbound(r) for records in batch.values() for r in records]
        await self.stage.handle(messages, self, self.sink)
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on (a rebalance) or the broker is away: the next owner of the
            # partition routes the batch again, and the update stage's fences absorb it.
            log.warning("ingest offsets not committed (%s: %s)", type(exc).__name__, exc)

    # -- rebalances -------------------------------------------------------------------------

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # the batch in hand commits before the partitions go
            self.runtime.epochs.forget()
            self.runtime.metrics.rebalances.inc()

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        self.owned = {(tp.topic, tp.partition) for tp in assigned}
        self.runtime.observer.keep(self.owned, topics={self.settings.topics.input})
        if assigned:
            await self._continue_from_faust(assigned)

    async def _continue_from_faust(self, assigned: set[TopicPartition]) -> None:
        """Partitions this group never committed start where the Faust agent's group left."""
        fresh = [tp for tp in assigned if await self.consumer.committed(tp) is None]
        if not fresh:
            return
        legacy = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.broker_hosts,
            **kafka_client_kwargs(self.settings.kafka),
            group_id=self.settings.kafka.app_id,  # never subscribed: it only reads offsets
            enable_auto_commit=False,
        )
        try:
            await legacy.start()
            for tp in fresh:
                offset = await legacy.committed(tp)
                if offset is not None and offset >= 0:
                    log.info("ingest starts %s:%d at %d (the Faust group's)", *tp, offset)
                    self.consumer.seek(tp, offset)
        except KafkaError as exc:  # no old offsets to be had: start at the earliest
            log.warning("could not read the Faust group's input offsets: %s", exc)
        finally:
            await legacy.stop()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchInput) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.owner.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.owner.assigned(assigned)
