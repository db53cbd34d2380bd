"""What operators see: Prometheus metrics that appear and move, health, the profile API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.worker.metrics import NAMES
from tests.integration.harness import Names, Worker, produce, read_topic
from tests.integration.oracle import eventually

pytestmark = pytest.mark.integration
START = 1_767_225_600_000


async def scrape(worker: Worker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{worker.port}/metrics") as resp,
    ):
        assert resp.status == 200
        text = await resp.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_appear_and_move(worker: Worker, brokers: str, names: Names) -> None:
    before = await scrape(worker)
    families = {name for name, _ in before}
    # Counters and histograms with no labels exist from the start.
    assert "rtp_rebalances_total" in families and "rtp_update_batch_seconds_count" in families
    events = [
        {
            "event_id": f"m{i}",
            "type": "search",
            "schema_version": 1,
            "user_id": f"m{i % 5}",
            "ts": START + i,
            "query": "running shoes",
        }
        for i in range(40)
    ]
    await produce(brokers, names.input, [*events, b"{broken"])

    async def moved() -> bool:
        now = await scrape(worker)
        return value(now, "rtp_events_applied_total", outcome="applied") >= 40

    try:
        await eventually(moved)
    except AssertionError:
        pytest.fail(f"worker did not apply 40 events: {await worker.stats()}\n{worker.tail()}")
    await asyncio.sleep(5.5)  # one lag measurement
    after = await scrape(worker)
    assert value(after, "rtp_events_total", kind="search") == 40
    assert value(after, "rtp_dead_letters_total", reason="invalid_json", stage="ingest") == 1
    assert value(after, "rtp_emitted_total", type="profile_updated") >= 5
    assert value(after, "rtp_pipeline_latency_seconds_count") == 40
    assert value(after, "rtp_event_freshness_seconds_count") == 40
    assert value(after, "rtp_texts_total", source="encoded") >= 1
    assert value(after, "rtp_assigned_partitions") == 4
    lag = {labels: v for (name, labels), v in after.items() if name == "rtp_consumer_lag_messages"}
    assert lag and all(v == 0 for v in lag.values())  # caught up
    exported = {
        name.removesuffix("_total")
        .removesuffix("_count")
        .removesuffix("_sum")
        .removesuffix("_bucket")
        .removesuffix("_created")
        for name, _ in after
    }
    # Labelled by what happened: no series until an outage made an agent retry.
    only_on_faults = {
        "rtp_retries",
        "rtp_outages",
        "rtp_outage_active",
        "rtp_crashes",
        "rtp_skipped_records",
        "rtp_fence_epochs",
    }
    # Labelled by what they count: no sample until there is one of it.
    only_when_seen = {
        "rtp_churn_calibration_auc",  # once outcomes have matured (one horizon after a fit)
        "rtp_risk_flags",  # by rule, once a flag opens
        "rtp_audience_members",  # by audience, once definitions are applied
        "rtp_experiment",  # by arm, once an experiment runs
    }
    assert {n.removesuffix("_total") for n in NAMES} <= exported | {
        "rtp_consumer_lag_seconds",
        *only_on_faults,
        *only_when_seen,
    }


async def test_health_and_profile_api(worker: Worker, brokers: str, names: Names) -> None:
    status, body = await worker.get("/health")
    assert status == 200 and body["ready"] is True and body["assigned"] == 4
    event = {
        "event_id": "api-1",
        "type": "click",
        "schema_version": 1,
        "user_id": "api-user",
        "ts": START,
        "product_id": "p1",
        "title": "Trail Running Shoes",
        "category": ["Sports", "Shoes"],
    }
    await produce(brokers, names.input, [event])

    async def found() -> bool:
        return (await worker.get("/users/api-user"))[0] == 200

    await eventually(found)
    status, body = await worker.get("/users/api-user")
    assert body["counts"] == {"click": 1} and body["version"] == 1
    assert "shoes" in {t for t, _ in body["top_tags"]}
    assert "Trail Running Shoes" not in orjson.dumps(body).decode()  # tags, never raw text
    status, body = await worker.get("/users/nobody-here")
    assert status == 404 and body["user_id"] == "nobody-here"


async def test_lag_command_matches_the_broker(
    worker: Worker, worker_env: dict[str, str], brokers: str, names: Names
) -> None:
    from stream.cli.lag import group_lag
    from stream.settings import Settings

    first = [
        {
            "event_id": f"l{i}",
            "type": "search",
            "schema_version": 1,
            "user_id": f"l{i % 3}",
            "ts": START + i,
            "query": "lamp",
        }
        for i in range(30)
    ]
    await produce(brokers, names.input, first, key=lambda e: str(e["user_id"]).encode())

    async def applied() -> bool:
        return int((await worker.stats())["applied"]) >= 30

    await eventually(applied)
    await asyncio.sleep(2.5)  # Faust commits offsets every second
    worker.stop()
    more = [{**e, "event_id": f"x{i}"} for i, e in enumerate(first[:7])]
    await produce(brokers, names.input, more, key=lambda e: str(e["user_id"]).encode())
    settings = Settings.from_env(worker_env)
    rows = await group_lag(settings, [names.input])
    assert sum(r.lag for r in rows) == 7, rows
    assert sum(r.end for r in rows) == 37
    assert all(r.committed is not None for r in rows if r.end)
    assert all(r.age_s is not None and r.age_s < 60 for r in rows if r.lag)


async def test_dead_letters_replay_to_the_input_topic_by_reason(
    brokers: str, names: Names, worker_env: dict[str, str]
) -> None:
    from aiokafka import AIOKafkaProducer

    from stream.cli.dlq import replay_dead
    from stream.settings import Settings
    from stream.worker import dead_letters

    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all")
    await producer.start()
    try:
        for n, reason in enumerate(["oversize_message", "invalid_json", "oversize_message"]):
            headers = [
                *dead_letters.headers(reason, "d", names.input, 0, n, "ingest"),
                ("trace", b"t%d" % n),
            ]
            await producer.send_and_wait(names.dlq, b"raw-%d" % n, key=b"k", headers=headers)
    finally:
        await producer.stop()
    settings = Settings.from_env(worker_env)
    assert (await replay_dead(settings, {"oversize_message"})).sent == 2
    back = await read_topic(brokers, names.input, lambda got: len(got) >= 2, timeout=20)
    assert sorted(m.value for m in back) == [b"raw-0", b"raw-2"]
    assert all(m.headers == {"trace": f"t{m.value[-1] - 48}"} for m in back)


async def test_switching_the_ingest_consumer_from_faust_continues_where_it_left(
    worker_env: dict[str, str], brokers: str, names: Names, tmp_path: Path
) -> None:
    """RTP_INGEST_CONSUMER=batch reads in a group of its own; on first use it starts where
    the Faust agent's group left each partition, so switching repeats nothing."""
    from stream.cli.lag import group_lag
    from stream.settings import Settings

    def searches(prefix: str, n: int) -> list[dict[str, object]]:
        return [
            {
                "event_id": f"{prefix}{i}",
                "type": "search",
                "schema_version": 1,
                "user_id": f"{prefix}{i % 4}",
                "ts": START + i,
                "query": "lamp",
            }
            for i in range(n)
        ]

    before, after = searches("f", 40), searches("b", 12)
    old = Worker({**worker_env, "RTP_INGEST_CONSUMER": "faust"}, tmp_path / "faust.log").start()
    try:
        await old.wait_ready()
        await produce(brokers, names.input, before, key=lambda e: str(e["user_id"]).encode())

        async def routed_all() -> bool:
            return int((await old.stats())["applied"]) >= len(before)

        await eventually(routed_all)
        await asyncio.sleep(2.5)  # Faust commits offsets every second
    finally:
        old.stop()
    await produce(brokers, names.input, after, key=lambda e: str(e["user_id"]).encode())
    new = Worker(worker_env, tmp_path / "batch.log").start()  # the default: batch
    try:
        await new.wait_ready()

        async def applied_all() -> bool:
            return int((await new.stats())["applied"]) >= len(after)

        await eventually(applied_all)
        await asyncio.sleep(1.0)  # anything routed twice would arrive by now
        stats = await new.stats()
        # Only the new events were read and applied; the old ones were not routed again.
        assert int(stats["consumed"]) == len(after), stats
        assert int(stats["applied"]) == len(after), stats
        assert int(stats["fenced"]) == 0, stats
        rows = await group_lag(Settings.from_env(worker_env), [names.input])
        assert sum(r.lag for r in rows) == 0 and sum(r.end for r in rows) == 52, rows
    finally:
        new.stop()
