"""Tolerant record decoding: a record aiokafka cannot parse must not crash the fetcher.

Kafka header names are strings on the wire, but nothing checks that they are UTF-8: a
producer can write any bytes there and the broker (Tansu, Apache Kafka alike) stores them.
aiokafka decodes each header name with ``bytes.decode("utf-8")`` while it iterates a fetched
record batch (``DefaultRecordBatch.__next__``, compiled in ``aiokafka/record/_crecords``,
same in the pure-Python ``default_records.py``). The ``UnicodeDecodeError`` escapes the
fetcher's routine (``PartitionRecords._unpack_records``), Faust's consumer dies, the worker
exits, and on every restart it fetches the same record again: a crash loop, and the
partition never moves past it.

The narrowest point we can patch is the one place the fetcher builds its record batches:
``aiokafka.consumer.fetcher.MemoryRecords``. :func:`install` replaces that name with
:class:`TolerantMemoryRecords`, which hands out the very same fast (compiled) batches, only
wrapped: iterating one runs the compiled parser as before, and only when it raises
``UnicodeDecodeError`` (or ``CorruptRecordException`` for a record body that does not parse)
does the wrapper parse that one batch again with :func:`read_batch`, in Python, from the
records it has not yet yielded. There, a header name that is not UTF-8 is decoded with
``surrogateescape``: the record reaches the worker with its raw bytes recoverable
(``name.encode("utf-8", "surrogateescape")``), and ingest dead-letters it as
``undecodable_record`` (:func:`undecodable`; a valid UTF-8 string never holds a lone
surrogate, so the mark cannot be forged). A record whose body does not parse at all is
skipped with an ERROR log naming its partition and offsets, and counted in :data:`SKIPPED`
and by the worker's listener (``rtp_skipped_records_total{reason="unparseable_record"}``,
see :func:`listen`). CRC checks and everything else
stay aiokafka's.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiokafka.consumer.fetcher as fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import _DefaultRecordBatchPy
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import decode_varint

log = logging.getLogger(__name__)

_LOG_OVERHEAD = struct.calcsize(">qi")  # base offset, batch length
_MAGIC_AT = struct.calcsize(">qii")  # base offset, batch length, partition leader epoch


#: ``(reason, topic, partition, offset, detail)`` of a skipped record, to the worker.
SkipListener = Callable[[str, str, int, int, str], None]


class _Skipped:
    """Records skipped because not even the tolerant parser could read them (process-wide,
    like the patch), and who is told: the running worker, which counts and logs them."""

    def __init__(self) -> None:
        self.count = 0
        self.listener: SkipListener | None = None


SKIPPED = _Skipped()


def listen(listener: SkipListener | None) -> None:
    """Tell ``listener`` of every record skipped from now on (one listener: the worker's)."""
    SKIPPED.listener = listener


@dataclass(frozen=True, slots=True)
class TolerantRecord:
    """A record as aiokafka's fetcher reads it (same attribute names)."""

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    checksum: None = None


def undecodable(headers: Sequence[tuple[str, Any]]) -> str | None:
    """Why a consumed record cannot be taken as it is (a header name that was not UTF-8 on
    the wire), or None."""
    for i, (name, _) in enumerate(headers):
        try:
            name.encode()
        except UnicodeEncodeError:
            raw = name.encode("utf-8", "surrogateescape")
            return f"header {i} name is not UTF-8: {raw[:64]!r}"
    return None


def read_batch(batch: bytes | memoryview, tp: Any = None) -> Iterator[TolerantRecord]:
    """The records of one v2 record batch, header names decoded with ``surrogateescape``;
    a record whose body does not parse is skipped (ERROR log, :data:`SKIPPED`)."""
    parsed = _DefaultRecordBatchPy(batch)
    parsed._maybe_uncompress()  # aiokafka's own decompression
    buffer, pos = parsed._buffer, parsed._pos
    log_append = parsed.timestamp_type == parsed.LOG_APPEND_TIME
    for index in range(parsed._num_records):
        try:
            length, body = decode_varint(buffer, pos)
        except (ValueError, IndexError):
            _skip(tp, parsed, index, "record length unreadable; rest of the batch skipped")
            return
        end = body + length
        try:
            record = _read_record(buffer, body, end, parsed, log_append)
        except (ValueError, IndexError, CorruptRecordException) as exc:
            _skip(tp, parsed, index, f"{type(exc).__name__}: {exc}")
        else:
            yield record
        pos = end


def _read_record(
    buffer: bytearray, pos: int, end: int, batch: _DefaultRecordBatchPy, log_append: bool
) -> TolerantRecord:
    """One record's body (Kafka's DefaultRecord layout), as aiokafka reads it."""
    _, pos = decode_varint(buffer, pos)  # attributes: unused in v2
    ts_delta, pos = decode_varint(buffer, pos)
    offset_delta, pos = decode_varint(buffer, pos)
    key, pos = _nullable(buffer, pos)
    value, pos = _nullable(buffer, pos)
    count, pos = decode_varint(buffer, pos)
    if count < 0:
        raise CorruptRecordException(f"invalid number of record headers {count}")
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(count):
        name, pos = _nullable(buffer, pos)
        if name is None:
            raise CorruptRecordException("negative header name size")
        header_value, pos = _nullable(buffer, pos)
        headers.append((name.decode("utf-8", "surrogateescape"), header_value))
    if pos != end:
        raise CorruptRecordException(f"record size {end - pos} bytes off")
    timestamp = batch.max_timestamp if log_append else batch.first_timestamp + ts_delta
    return TolerantRecord(
        batch.base_offset + offset_delta, timestamp, batch.timestamp_type, key, value, headers
    )


def _nullable(buffer: bytearray, pos: int) -> tuple[bytes | None, int]:
    size, pos = decode_varint(buffer, pos)
    if size < 0:
        return None, pos
    if pos + size > len(buffer):
        raise IndexError("field runs past the record batch")
    return bytes(buffer[pos : pos + size]), pos + size


def _skip(tp: Any, batch: _DefaultRecordBatchPy, index: int, why: str) -> None:
    SKIPPED.count += 1
    where = f"record {index} of the batch at offsets {batch.base_offset}-{batch.next_offset - 1}"
    if SKIPPED.listener is not None:
        topic, partition = getattr(tp, "topic", "?"), getattr(tp, "partition", -1)
        SKIPPED.listener(
            "unparseable_record", topic, partition, batch.base_offset, f"{where}: {why}"
        )
        return
    log.error("skipped an unreadable record: %s, %s: %s", tp, where, why)


class TolerantBatch:
    """A compiled aiokafka record batch; iteration falls back to :func:`read_batch`."""

    def __init__(self, inner: Any, raw: memoryview, tp: Any) -> None:
        self._inner = inner
        self._raw = raw
        self._tp = tp

    def __getattr__(self, name: str) -> Any:  # base_offset, validate_crc, next_offset, ...
        return getattr(self._inner, name)

    def __iter__(self) -> Iterator[Any]:
        yielded = 0
        try:
            for record in self._inner:
                yield record
                yielded += 1
            return
        except (UnicodeDecodeError, CorruptRecordException) as exc:
            log.warning(
                "record batch at offset %d failed to parse (%s: %s); reading it tolerantly",
                self._inner.base_offset,
                type(exc).__name__,
                exc,
            )
        for i, record in enumerate(read_batch(self._raw, self._tp)):
            if i >= yielded:
                yield record


class TolerantMemoryRecords:
    """aiokafka's ``MemoryRecords`` whose v2 batches are :class:`TolerantBatch` es."""

    def __init__(self, data: bytes) -> None:
        self._inner = MemoryRecords(data)
        self._view = memoryview(data)
        self._pos = 0
        self.tp: Any = None  # set by _PartitionRecords, for the logs

    def size_in_bytes(self) -> int:
        return int(self._inner.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._inner.has_next())

    def next_batch(self) -> Any:
        batch = self._inner.next_batch()
        if batch is None:
            return None
        # Batches lie back to back: the one just returned starts where the last one ended.
        start = self._pos
        (length,) = struct.unpack_from(">i", self._view, start + _LOG_OVERHEAD - 4)
        self._pos = start + _LOG_OVERHEAD + length
        if self._view[start + _MAGIC_AT] < 2:
            return batch  # legacy message sets carry no headers
        return TolerantBatch(batch, self._view[start : self._pos], self.tp)


class _PartitionRecords(fetcher.PartitionRecords):  # type: ignore[misc]
    """aiokafka's, telling our records which partition they are (for the logs)."""

    def __init__(self, tp: Any, records: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(records, TolerantMemoryRecords):
            records.tp = tp
        super().__init__(tp, records, *args, **kwargs)


def install() -> None:
    """Make aiokafka's fetcher build :class:`TolerantMemoryRecords` (idempotent)."""
    fetcher.MemoryRecords = TolerantMemoryRecords
    fetcher.PartitionRecords = _PartitionRecords
