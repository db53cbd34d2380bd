"""Tolerant record decoding: aiokafka's own fetcher code over record batches with header names
that are not UTF-8, and with a record body that does not parse."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from schemas.validate import Limits
from stream.worker import records
from stream.worker.dead_letters import RAW_HEADER_KEY, letter
from stream.worker.ingest import Inbound, route

TP = TopicPartition("in", 0)


class RawName(str):
    """A header name that encodes to any bytes: how a hostile producer writes one."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawName:
        made = super().__new__(cls, "x" * len(raw))
        made.raw = raw
        return made

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return self.raw


def batch(base: int, rows: list[tuple[bytes, list[tuple[str, bytes]]]]) -> bytes:
    builder = _DefaultRecordBatchBuilderPy(
        2,
        0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=10**7,
    )
    for i, (value, headers) in enumerate(rows):
        assert builder.append(i, 1_700_000_000_000 + i, key=b"k", value=value, headers=headers)
    raw = bytearray(builder.build())
    raw[0:8] = base.to_bytes(8, "big")  # base offset (outside the CRC)
    return bytes(raw)


def fetch(data: bytes, tolerant: bool) -> list[Any]:
    """What aiokafka's fetcher yields for one fetched partition's bytes."""
    memory = records.TolerantMemoryRecords(data) if tolerant else MemoryRecords(data)
    parts = PartitionRecords(TP, memory, [], 0, None, None, True, 0)
    return list(parts)


BAD = RawName(b"\xff\xfe-name")
ROWS = [
    (b"good-0", [("a", b"1")]),
    (b"bad-1", [("trace", b"t"), (BAD, b"v")]),
    (b"good-2", []),
]


def test_aiokafka_alone_crashes_on_a_non_utf8_header_name() -> None:
    with pytest.raises(UnicodeDecodeError):
        fetch(batch(0, ROWS), tolerant=False)


def test_tolerant_fetch_yields_every_record_once_with_raw_bytes_recoverable() -> None:
    data = batch(0, ROWS) + batch(3, [(b"good-3", [("b", b"2")])])
    got = fetch(data, tolerant=True)
    assert [(r.offset, r.value) for r in got] == [
        (0, b"good-0"),
        (1, b"bad-1"),
        (2, b"good-2"),
        (3, b"good-3"),
    ]
    assert got[0].headers == (("a", b"1"),) and got[3].headers == (("b", b"2"),)
    name, value = got[1].headers[1]
    assert name.encode("utf-8", "surrogateescape") == b"\xff\xfe-name" and value == b"v"
    assert records.undecodable(got[1].headers) is not None
    assert all(records.undecodable(r.headers) is None for r in (got[0], got[2], got[3]))
    assert got[1].timestamp == 1_700_000_000_001 and got[1].key == b"k"


def test_the_fast_path_is_untouched_for_clean_batches() -> None:
    data = batch(10, [(b"a", [("h", b"1")]), (b"b", [])])
    assert [(r.offset, r.value, r.headers) for r in fetch(data, tolerant=True)] == [
        (r.offset, r.value, r.headers) for r in fetch(data, tolerant=False)
    ]


def test_a_record_body_that_does_not_parse_is_skipped_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = [(b"first", []), (b"second", [("h", b"x")]), (b"third", [])]
    data = bytearray(batch(0, good))
    # Break the second record's header count (CRC checks are aiokafka's; skip them here).
    at = data.index(b"second") + len(b"second")
    data[at] = 0x7F  # varint -64: a negative header count
    before = records.SKIPPED.count
    memory = records.TolerantMemoryRecords(bytes(data))
    parts = PartitionRecords(TP, memory, [], 0, None, None, False, 0)
    with caplog.at_level(logging.ERROR):
        got = list(parts)
    assert [r.value for r in got] == [b"first", b"third"]
    assert records.SKIPPED.count == before + 1
    # With a worker listening, the worker is told (it counts and logs with coordinates).
    told: list[tuple[str, str, int, int, str]] = []
    records.listen(lambda *skipped: told.append(skipped))
    try:
        memory = records.TolerantMemoryRecords(bytes(data))
        memory.tp = TP  # what the fetcher's patched PartitionRecords sets
        parts = PartitionRecords(TP, memory, [], 0, None, None, False, 0)
        assert [r.value for r in parts] == [b"first", b"third"]
    finally:
        records.listen(None)
    assert [(t[0], t[2], t[3]) for t in told] == [("unparseable_record", TP.partition, 0)]
    assert "offsets 0-2" in told[0][4]
    assert "in" in caplog.text and "offsets 0-2" in caplog.text


def test_install_patches_the_fetcher_once() -> None:
    import aiokafka.consumer.fetcher as fetcher

    records.install()
    records.install()
    assert fetcher.MemoryRecords is records.TolerantMemoryRecords
    assert issubclass(fetcher.PartitionRecords, PartitionRecords)


def test_ingest_dead_letters_the_record_as_undecodable_with_raw_bytes() -> None:
    got = fetch(batch(0, ROWS), tolerant=True)
    messages = [Inbound("in", 0, r.offset, r.key, r.value, list(r.headers)) for r in got]
    routed = route(messages, Limits(), 4, 1_700_000_000_000)
    reasons = {d.message.offset: d.reason for d in routed.dead}
    assert reasons == {0: "invalid_json", 1: "undecodable_record", 2: "invalid_json"}
    dead = routed.dead[1]
    out = letter(
        dead.reason,
        dead.detail,
        "in",
        0,
        1,
        "ingest",
        dead.message.key,
        dead.message.value,
        dead.message.headers,
        value_max=65536,
    )
    assert out.value == b"bad-1" and (RAW_HEADER_KEY, b"fffe2d6e616d65") in out.headers
    assert ("trace", b"t") in out.headers
