"""Fence epochs: new events of a re-created input topic are applied, not skipped as fenced.

The ingest stage names each record's fence source. Normally that is ``<topic>:<partition>``;
after the partition's offsets started again it is ``<topic>#<epoch>:<partition>``
(:mod:`profiles.redis.marks`). A partition is checked when this worker first reads it and
whenever its offsets go backwards (a reset after ``OffsetOutOfRange``, a rebalance, a restart);
otherwise the check costs nothing. A check compares the first offset read with the mark:

* above the mark: new offsets of the same log, nothing to decide;
* at or below it, the message at the mark's offset decides: the same fingerprint is the same
  log (a redelivery, or a replay after an offset reset: fenced as before), a different one is a
  new log. That message is in the batch itself, or (when the batch stops short of it) fetched
  from the broker; a log that ends at or before the mark's offset is a new log without asking.

A new log starts a new epoch (compare-and-set in Redis, so two workers cannot start two), is
logged at WARNING with what was seen, and counted in ``rtp_fence_epochs_total{topic}``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from profiles.core.partition import InputPartition
from profiles.redis.marks import MarkStore, fingerprint
from stream.security import kafka_client_kwargs
from stream.settings import Settings
from stream.worker.ingest import Inbound
from stream.worker.retry import kafka_outages

log = logging.getLogger(__name__)

TP = tuple[str, int]
#: (topic, partition, offset) -> (key, value) of the message there, or None if unavailable.
Fetch = Callable[[str, int, int], Awaitable[tuple[bytes | None, bytes | None] | None]]


class InputEpochs:
    """The fence epoch of every input partition this worker reads, kept with Redis."""

    def __init__(self, marks: MarkStore, on_new_epoch: Callable[[str], None] | None = None):
        self.marks = marks
        self.on_new_epoch = on_new_epoch
        self._epoch: dict[TP, int] = {}
        self._next: dict[TP, int] = {}  # next offset expected, since the last check

    def forget(self) -> None:
        """After a rebalance: check every partition again on its first batch."""
        self._next.clear()

    async def sources(
        self,
        messages: Sequence[Inbound],
        highwater: Callable[[str, int], int | None],
        fetch: Fetch,
    ) -> list[InputPartition]:
        """The fence source of each message (in order), starting new epochs where needed."""
        out = []
        current: dict[TP, InputPartition] = {}  # one value per partition and epoch, not per message
        for i, m in enumerate(messages):
            tp = (m.topic, m.partition)
            expected = self._next.get(tp)
            if expected is None or m.offset < expected:
                await self._check(tp, m.offset, messages[i:], highwater, fetch)
                current.pop(tp, None)
            self._next[tp] = m.offset + 1
            source = current.get(tp)
            if source is None:
                source = current[tp] = InputPartition(m.topic, m.partition, self._epoch[tp])
            out.append(source)
        return out

    async def advance(self, messages: Sequence[Inbound]) -> None:
        """Raise the marks to the last message routed per partition (after its sends)."""
        last: dict[TP, Inbound] = {}
        for m in messages:
            tp = (m.topic, m.partition)
            if tp not in last or m.offset > last[tp].offset:
                last[tp] = m
        await self.marks.advance(
            {
                tp: (self._epoch.get(tp, 0), m.offset, fingerprint(m.key, m.value))
                for tp, m in last.items()
            }
        )

    async def _check(
        self,
        tp: TP,
        first: int,
        rest: Sequence[Inbound],
        highwater: Callable[[str, int], int | None],
        fetch: Fetch,
    ) -> None:
        topic, partition = tp
        mark = await self.marks.get(topic, partition)
        self._epoch[tp] = mark.epoch
        if first > mark.high:
            return
        there = next(
            (
                m
                for m in rest
                if m.partition == partition and m.topic == topic and m.offset == mark.high
            ),
            None,
        )
        end = highwater(topic, partition)
        if there is not None:
            same = fingerprint(there.key, there.value) == mark.fingerprint
            how = "the message at that offset differs"
        elif end is not None and end <= mark.high:
            same, how = False, f"the log ends at {end}"
        else:
            found = await fetch(topic, partition, mark.high)
            if found is None:
                log.warning(
                    "%s:%s: cannot read offset %d to compare with the mark; assuming the same log",
                    topic,
                    partition,
                    mark.high,
                )
                return
            same = fingerprint(*found) == mark.fingerprint
            how = "the message at that offset differs"
        if same:
            return
        epoch = await self.marks.new_epoch(topic, partition, mark.epoch)
        self._epoch[tp] = epoch
        log.warning(
            "offsets of %s:%s started again: read offset %d, but offsets up to %d were routed "
            "before and %s (the topic was re-created, or the broker lost its storage); "
            "fencing its events in epoch %d from now on",
            topic,
            partition,
            first,
            mark.high,
            how,
            epoch,
        )
        if self.on_new_epoch is not None:
            self.on_new_epoch(topic)


def broker_fetch(settings: Settings) -> Fetch:
    """A :data:`Fetch` reading one message with a short-lived consumer outside the group
    (only when a partition's offsets went back and the batch stops short of the mark)."""

    async def fetch(
        topic: str, partition: int, offset: int
    ) -> tuple[bytes | None, bytes | None] | None:
        reader = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka.broker_hosts,
            **kafka_client_kwargs(settings.kafka),
            group_id=None,
            enable_auto_commit=False,
        )
        tp = TopicPartition(topic, partition)
        try:
            with kafka_outages():
                await reader.start()
                reader.assign([tp])
                reader.seek(tp, offset)
                for _ in range(3):
                    got = await reader.getmany(tp, timeout_ms=2000, max_records=1)
                    for record in got.get(tp, []):
                        if record.offset == offset:
                            return record.key, record.value
                        return None  # compacted away or below the log start: cannot tell
            return None
        finally:
            await reader.stop()

    return fetch
