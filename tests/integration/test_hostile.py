"""A hostile-input corpus against the real worker, broker and Redis (issue 13, failures 1-3).

Every bad message must be dead-lettered exactly once with its reason and its input
coordinates, every valid neighbour applied (profiles byte-equal to the offline oracle), the
worker never restarting or crashing an agent, and the lag back to 0. The corpus holds the
cases of the issue (near/over 1 MB values and headers, a header name that is not UTF-8,
amounts that break the arithmetic) and many more around every limit: sizes, numeric bounds,
encodings, headers, keys. The worker runs with ``RTP_MAX_REQUEST_BYTES=100000`` so that one
valid event whose routed bundle cannot fit in a request exercises the ``output_rejected`` path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

from schemas.validate import MAX_AMOUNT, MAX_PRICE
from stream.settings import Settings
from stream.worker import records
from tests.integration.harness import Consumed, Names, Worker, read_topic
from tests.integration.oracle import eventually, expected_profiles, stored_profiles, until_stored

pytestmark = pytest.mark.integration

# The test's own readers must survive the record that crashed the worker's fetcher.
records.install()

CONFIG = Settings.from_env({}).profile
START = 1_767_225_600_000  # 2026-01-01
MAX_MESSAGE = 65536
REQUEST = 100_000


@dataclass
class Case:
    name: str
    value: bytes | None
    reason: str | None  # None: a valid neighbour
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    where: tuple[int, int] | None = None  # (partition, offset) once produced


_n = iter(range(10**6))


def ev(kind: str, user: str, **fields: Any) -> dict[str, Any]:
    n = next(_n)
    return {
        "event_id": f"{user}-{n}",
        "type": kind,
        "schema_version": 1,
        "user_id": user,
        "ts": START + n * 1000,
        **fields,
    }


def click(user: str = "vic", **fields: Any) -> dict[str, Any]:
    return ev("click", user, **{"product_id": "p1", "title": "Wireless Headphones", **fields})


def purchase(user: str = "pam", amount: Any = 10.0, price: Any = 5.0, **fields: Any) -> Any:
    items = fields.pop("items", [{"product_id": "p1", "quantity": 2, "price": price}])
    return ev("purchase", user, order_id="o", items=items, amount=amount, currency="USD", **fields)


def j(obj: Any) -> bytes:
    return orjson.dumps(obj)


def padded(size: int, user: str) -> bytes:
    """A valid click of exactly ``size`` bytes (an unknown extra field carries the padding)."""
    base = j(click(user, pad=""))
    return base.replace(b'"pad":""', b'"pad":"' + b"x" * (size - len(base)) + b'"')


def bad_cases() -> list[Case]:
    now = int(time.time() * 1000)
    ok = click("mal")
    nested = b"[" * 2000 + b"]" * 2000
    return [
        # -- the cases ------------------------------------------------------------
        Case(
            "product 1 MiB title",
            j(
                ev(
                    "product",
                    "ops",
                    product_id="px",
                    title="t" * 2**20,
                    category=["c"],
                    price=1.0,
                    currency="USD",
                )
            ),
            "oversize_message",
        ),
        Case(
            "13 MB purchase 100k items",
            j(
                purchase(
                    "mal",
                    items=[
                        {"product_id": f"p{i:09d}", "quantity": 1, "price": 1.0, "title": "x" * 80}
                        for i in range(100_000)
                    ],
                )
            ),
            "oversize_message",
        ),
        Case(
            "4-byte value, 999,750-byte header",
            b"oops",
            "invalid_json",
            headers=[("big", b"h" * 999_750)],
        ),
        Case("amount 1e300", j(purchase("pam", amount=1e300)), "schema_violation"),
        Case("amount 1e17 (first)", j(purchase("pam", amount=1e17)), "schema_violation"),
        Case("amount 1e17 (second)", j(purchase("pam", amount=1e17)), "schema_violation"),
        Case("5 MB value", b"{" + b" " * 5_000_000 + b"}", "oversize_message"),
        # -- sizes around the limits -------------------------------------------------------
        Case("max message + 1", padded(MAX_MESSAGE + 1, "mal"), "oversize_message"),
        Case("just under 1 MB", padded(999_000, "mal"), "oversize_message"),
        Case("empty value", b"", "empty_message"),
        Case("null value with key", None, "empty_message", key=b"k"),
        Case("999 KB key, bad value", b"[1]", "not_an_object", key=b"k" * 999_000),
        Case(
            "1,000 headers",
            b"nope",
            "invalid_json",
            headers=[(f"h{i}", b"v" * 100) for i in range(1000)],
        ),
        Case("30 KB header name", b"nope", "invalid_json", headers=[("n" * 30_000, b"v")]),
        # -- encodings ---------------------------------------------------------------------
        Case("invalid UTF-8", b'{"type": "\xff"}', "invalid_utf8"),
        Case("UTF-16 with BOM", "{}".encode("utf-16"), "invalid_utf8"),
        Case("UTF-8 BOM", b"\xef\xbb\xbf" + j(ok), "invalid_json"),
        Case("overlong UTF-8", b'{"a": "\xc0\xaf"}', "invalid_utf8"),
        Case("UTF-8 encoded surrogate", b'{"a": "\xed\xa0\x80"}', "invalid_utf8"),
        Case("lone surrogate escape", b'{"a": "\\ud800"}', "invalid_json"),
        Case("NaN", b'{"amount": NaN}', "invalid_json"),
        Case("number overflowing a double", b'{"ts": 1e400}', "invalid_json"),
        Case("nesting 2000 deep", nested, "invalid_json"),
        Case("top-level array", b"[]", "not_an_object"),
        Case("top-level string", b'"click"', "not_an_object"),
        Case("top-level null", b"null", "not_an_object"),
        Case("NUL in title", j(click("mal", title="a\x00b")), "invalid_text"),
        Case("ESC in query", j(ev("search", "mal", query="\x1b[31m")), "invalid_text"),
        # -- every numeric bound ---------------------------------------------------------
        Case("ts -1", j({**ok, "ts": -1}), "schema_violation"),
        Case(
            "ts 2^64",
            b'{"event_id":"x","type":"click","schema_version":1,"user_id":"mal",'
            b'"ts":18446744073709551616,"product_id":"p"}',
            "schema_violation",
        ),
        Case("ts past schema max", j({**ok, "ts": 4_102_444_800_001}), "schema_violation"),
        Case("ts a day ahead", j({**ok, "ts": now + 86_400_000}), "event_time_in_future"),
        Case("ts 1999", j({**ok, "ts": 915_148_800_000}), "event_time_too_old"),
        Case("price max + 0.01", j(click("mal", price=MAX_PRICE + 0.01)), "schema_violation"),
        Case("item price 1e300", j(purchase("pam", price=1e300)), "schema_violation"),
        Case("amount max + 1", j(purchase("pam", amount=MAX_AMOUNT + 1)), "schema_violation"),
        Case("amount negative", j(purchase("pam", amount=-0.01)), "schema_violation"),
        Case("amount as string", j(purchase("pam", amount="10")), "schema_violation"),
        Case(
            "quantity 0",
            j(ev("add_to_cart", "mal", product_id="p", quantity=0)),
            "schema_violation",
        ),
        Case(
            "quantity 10001",
            j(ev("add_to_cart", "mal", product_id="p", quantity=10_001)),
            "schema_violation",
        ),
        Case(
            "quantity 1.5",
            j(ev("add_to_cart", "mal", product_id="p", quantity=1.5)),
            "schema_violation",
        ),
        Case(
            "rating 0",
            j(ev("review", "mal", product_id="p", rating=0, text="x")),
            "schema_violation",
        ),
        Case(
            "rating 6",
            j(ev("review", "mal", product_id="p", rating=6, text="x")),
            "schema_violation",
        ),
        Case(
            "201 items",
            j(purchase("pam", items=[{"product_id": "p", "quantity": 1, "price": 1.0}] * 201)),
            "schema_violation",
        ),
        Case(
            "review text 5001",
            j(ev("review", "mal", product_id="p", rating=3, text="x" * 5001)),
            "schema_violation",
        ),
        Case("user id 129 chars", j(click("u" * 129)), "schema_violation"),
        Case("user id empty", j(click("")), "schema_violation"),
        Case("category 9 levels", j(click("mal", category=["c"] * 9)), "schema_violation"),
        Case("currency lower case", j(purchase("pam") | {"currency": "usd"}), "schema_violation"),
        # -- versions and kinds ------------------------------------------------------------
        Case("schema_version 2", j({**ok, "schema_version": 2}), "unsupported_schema_version"),
        Case("schema_version '1'", j({**ok, "schema_version": "1"}), "schema_violation"),
        Case("type Click", j({**ok, "type": "Click"}), "unknown_event_type"),
        Case("type 5", j({**ok, "type": 5}), "unknown_event_type"),
        Case(
            "missing event_id",
            j({k: v for k, v in ok.items() if k != "event_id"}),
            "schema_violation",
        ),
    ]


def good_cases() -> list[Case]:
    out: list[Case] = []
    for round_ in range(3):
        for user in ("vic", "pam", "ann", "bob", "cy"):
            out.append(Case(f"click {user}", j(click(user)), None))
            out.append(Case(f"search {user}", j(ev("search", user, query=f"shoes {round_}")), None))
        out.append(
            Case("purchase at max", j(purchase("pam", amount=MAX_AMOUNT, price=MAX_PRICE)), None)
        )
    return [
        *out,
        Case("exactly max message", padded(MAX_MESSAGE, "ann"), None),
        Case("price at max", j(click("bob", price=MAX_PRICE)), None),
        Case("quantity 10000", j(ev("add_to_cart", "bob", product_id="p", quantity=10_000)), None),
        Case(
            "200 items",
            j(
                purchase(
                    "cy",
                    amount=200.0,
                    items=[
                        {"product_id": f"q{i}", "quantity": 1, "price": 1.0} for i in range(200)
                    ],
                )
            ),
            None,
        ),
        Case("user id 128 chars", j(click("u" * 128) | {"event_id": "e-128"}), None),
        Case("integral float ts", j({**click("vic"), "ts": float(START + 999_000)}), None),
        Case("header value not UTF-8", j(click("ann")), None, headers=[("bin", b"\xff\x00")]),
        Case("100 KB key", j(click("bob")), None, key=b"k" * 100_000),
        Case("zh title", j(click("cy", title="无线蓝牙耳机 降噪")), None),
    ]


class RawName(str):
    """A header name that encodes to bytes that are not UTF-8: a hostile producer's."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawName:
        made = super().__new__(cls, "x" * len(raw))
        made.raw = raw
        return made

    def encode(self, *args: Any, **kwargs: Any) -> bytes:  # what the Python builder calls
        return self.raw


async def produce_cases(producer: AIOKafkaProducer, topic: str, cases: list[Case]) -> None:
    """Send in order to partition 0 and note where each landed."""
    futures = [
        (c, await producer.send(topic, c.value, key=c.key, headers=c.headers, partition=0))
        for c in cases
    ]
    for case, future in futures:
        meta = await future
        case.where = (meta.partition, meta.offset)


async def produce_raw_batch(producer: AIOKafkaProducer, topic: str, rows: list[Case]) -> None:
    """One record batch (partition 0) whose rows may carry non-UTF-8 header names: aiokafka's
    compiled builder cannot write those, its pure-Python one writes whatever ``encode`` gives."""
    batch = producer.create_batch()
    batch._builder = _DefaultRecordBatchBuilderPy(
        2,
        0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=10**6,
    )
    for row in rows:
        assert batch.append(key=row.key, value=row.value, timestamp=None, headers=row.headers)
    meta = await (await producer.send_batch(batch, topic, partition=0))
    for i, row in enumerate(rows):
        row.where = (meta.partition, meta.offset + i)


def bundle_too_large() -> Case:
    """A valid click under the message limit whose routed bundle is larger than a request:
    orjson writes ``1e5`` back as ``100000.0``, so the bundle is ~2.2x the input."""
    event = click("zed")
    base = len(j({**event, "n": []}))
    event["n"] = [1e5] * ((MAX_MESSAGE - base - 100) // 4)
    value = j(event).replace(b"100000.0", b"1e5")
    assert len(value) <= MAX_MESSAGE
    return Case("bundle too large for a request", value, "output_rejected")


async def test_hostile_corpus_is_dead_lettered_once_and_neighbours_apply(
    worker_env: dict[str, str],
    brokers: str,
    names: Names,
    redis_client: aioredis.Redis,
    tmp_path: Any,
) -> None:
    env = {**worker_env, "RTP_MAX_REQUEST_BYTES": str(REQUEST), "RTP_BATCH_MAX": "500"}
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready(timeout=90)
        await _run(worker, brokers, names, redis_client)
    finally:
        worker.stop()


async def _run(worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis) -> None:
    bad, good = bad_cases(), good_cases()
    bad.append(bundle_too_large())
    assert len(bad) >= 37
    # Interleave: every bad message between valid ones, some in the same ingest batch.
    order: list[Case] = []
    for i in range(max(len(bad), len(good))):
        order += [
            c
            for c in (good[i] if i < len(good) else None, bad[i] if i < len(bad) else None)
            if c is not None
        ]
    undecodable = Case(
        "header name not UTF-8",
        j(click("mal")),
        "undecodable_record",
        headers=[("ok", b"1"), (RawName(b"\xff\xfe\x80"), b"v")],
    )
    raw_rows = [
        Case("before raw", j(click("vic")), None),
        undecodable,
        Case("after raw", j(click("vic")), None),
    ]
    good += [raw_rows[0], raw_rows[2]]
    bad.append(undecodable)

    producer = AIOKafkaProducer(
        bootstrap_servers=brokers, acks="all", linger_ms=2, max_request_size=32 * 2**20
    )
    await producer.start()
    try:
        half = len(order) // 2
        await produce_cases(producer, names.input, order[:half])
        await produce_raw_batch(producer, names.input, raw_rows)
        await produce_cases(producer, names.input, order[half:])
    finally:
        await producer.stop()
    total = len(order) + len(raw_rows)

    # Each bad message dead-lettered exactly once, with its reason and coordinates.
    by_where = {c.where: c for c in bad}
    dead = await read_topic(brokers, names.dlq, lambda got: len(got) >= len(bad), timeout=240)

    async def settled() -> bool:
        stats = await worker.stats()
        lag = stats["lag"]
        return int(stats["consumed"]) >= total and bool(lag) and not any(lag.values())

    await eventually(settled, timeout=240)
    dead = await read_topic(brokers, names.dlq, lambda got: len(got) >= len(bad), timeout=60)
    seen: dict[tuple[int, int], Consumed] = {}
    for m in dead:
        h = m.headers
        assert h["dlq.topic"] == names.input, h
        where = (int(h["dlq.partition"]), int(h["dlq.offset"]))
        assert where not in seen, f"dead-lettered twice: {by_where.get(where)}"
        seen[where] = m
    problems = []
    for case in bad:
        got = seen.get(case.where)  # type: ignore[arg-type]
        if got is None:
            problems.append(f"{case.name}: no dead letter")
        elif got.headers["dlq.reason"] != case.reason:
            problems.append(f"{case.name}: {got.headers['dlq.reason']} != {case.reason}")
    assert not problems, problems
    assert len(seen) == len(bad), sorted(set(seen) - set(by_where))
    for case in bad:
        _check_letter(case, seen[case.where])  # type: ignore[index]

    # Every valid neighbour applied, exactly as the offline oracle computes it.
    valid = {c.value for c in good}
    log = await read_topic(brokers, names.input, lambda got: len(got) >= total, timeout=120)
    expected = expected_profiles(names.input, [m for m in log if m.value in valid], CONFIG)
    users = sorted(expected)
    await until_stored(redis_client, expected, timeout=120)
    assert "mal" not in users and "zed" not in users
    assert await stored_profiles(redis_client, ["mal", "zed"]) == {"mal": None, "zed": None}

    # The worker never restarted and no agent crashed.
    assert worker.proc is not None and worker.proc.poll() is None
    assert (await worker.get("/health"))[0] == 200
    text = worker.log_path.read_text(errors="replace")
    assert "Crashed" not in text, text[-3000:]
    stats = await worker.stats()
    assert sum(stats["dead"].values()) == len(bad)


def _check_letter(case: Case, got: Consumed) -> None:
    """The dead letter keeps what it can of the raw message, and says what it cut."""
    h = got.headers
    assert h["dlq.stage"] == "ingest" and h["dlq.detail"], case.name
    value = case.value or b""
    if case.reason == "output_rejected":
        assert h["dlq.output_topic"].startswith("routed-"), h
        assert "MessageSizeTooLargeError" in h["dlq.detail"]
        assert got.value is not None and len(got.value) <= 1024
        return
    if len(value) > MAX_MESSAGE:
        assert got.value == value[:MAX_MESSAGE], case.name
        assert int(h["dlq.value_bytes"]) == len(value) and "value" in h["dlq.truncated"]
        assert len(h["dlq.value_sha256"]) == 64
    else:
        assert (got.value or b"") == value, case.name
    if case.key is not None and len(case.key) > 4096:
        assert got.key == case.key[:4096] and int(h["dlq.key_bytes"]) == len(case.key)
    elif case.key is not None:
        assert got.key == case.key
    header_bytes = sum(len(str.encode(k)) + len(v) for k, v in case.headers)
    if header_bytes > 16384 or any(len(v) > 4096 for _, v in case.headers):
        assert "headers" in h["dlq.truncated"], case.name
    if case.reason == "undecodable_record":
        assert h["dlq.raw_header_key"] == "fffe80" and h["dlq.raw_header_value"] == "v"
        assert h["ok"] == "1"
