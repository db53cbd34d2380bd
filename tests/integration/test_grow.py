"""Growing the owner partitions from 2 to 4 mid-stream, by the documented procedure, through
real workers: nothing lost, nothing applied twice, every index member at its new owner."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from profiles.core.ownership import owner
from profiles.redis import keys
from stream.cli.lag import group_lag
from stream.cli.partitions import NotDrained, grow
from stream.settings import Settings
from tests.integration.harness import Feed, Names, Worker, produce, read_topic
from tests.integration.oracle import eventually, expected_profiles
from tests.integration.test_faults import CONFIG, applied, check_downstream, feeds, key, settled
from tests.integration.test_faults import soak_traffic as traffic

pytestmark = [pytest.mark.integration, pytest.mark.faults]

__all__ = ["feeds"]  # a fixture shared with the fault tests

EVENTS = 4000
RATE = 400.0


async def test_owner_partitions_grow_from_2_to_4_without_loss_or_double_apply(
    worker_env: dict[str, str],
    feeds: list[Feed],
    brokers: str,
    names: Names,
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    base = {
        **worker_env,
        "RTP_PARTITIONS": "2",
        "RTP_EMBEDDINGS": "false",  # the routing is under test, not the encoder
        "RTP_SEGMENTS": "false",
    }
    old = Settings.from_env(base)
    feed = Feed(brokers, names.input, traffic(31, EVENTS), RATE, key).start()
    feeds.append(feed)

    # 1. Two owner partitions, traffic flowing.
    first = Worker(base, tmp_path / "first.log").start()
    try:
        await first.wait_ready(timeout=120)
        await eventually(lambda: _applied_over(first, 300), timeout=180)
    finally:
        first.stop()

    # 2. Drain: a paused worker applies what was routed and reads no input.
    paused = Worker({**base, "RTP_INGEST_PAUSED": "true"}, tmp_path / "paused.log").start()
    try:
        await paused.wait_ready(timeout=120)

        async def routed_drained() -> bool:
            rows = await group_lag(old, [old.topics.routed])
            return bool(rows) and all(r.lag == 0 for r in rows)

        await eventually(routed_drained, timeout=180)
    finally:
        paused.stop()

    # The command refuses a routed topic that holds a bundle nobody applied yet.
    scratch = f"scratch-{names.tag}"
    await produce(brokers, scratch, [b"a bundle"])
    busy = old.model_copy(update={"topics": old.topics.model_copy(update={"routed": scratch})})
    with pytest.raises(NotDrained, match="not drained"):
        await grow(busy, 4, settle_s=0.5, say=lambda _: None)
    with pytest.raises(SystemExit, match="can only grow"):
        await grow(old, 2, settle_s=0.5, say=lambda _: None)

    # 3. Grow, with the workers stopped.
    said: list[str] = []
    moved = await grow(old, 4, settle_s=2.0, say=said.append)
    new_routed = f"{old.topics.routed}-p4"
    assert any(f"RTP_ROUTED_TOPIC={new_routed}" in line for line in said), said
    assert sum(moved.counts.values()) > 0  # some customers changed owner

    # 4. Four owner partitions from now on; the outputs keep their two partitions.
    grown = {
        **base,
        "RTP_PARTITIONS": "4",
        "RTP_ROUTED_TOPIC": new_routed,
        "RTP_OUTPUT_PARTITIONS": "2",
    }
    second = Worker(grown, tmp_path / "second.log").start()
    try:
        await second.wait_ready(timeout=120)
        sent = await feed.finish(EVENTS, tail=EVENTS // 5, rate=RATE * 3)
        log = await read_topic(brokers, names.input, lambda got: len(got) >= sent, timeout=120)
        assert len(log) == sent
        expected = expected_profiles(names.input, log, CONFIG)
        await settled(redis_client, expected, "after growing to 4 owner partitions")
        await check_downstream(brokers, names, redis_client, sorted(expected))
        assert second.proc is not None and second.proc.poll() is None, second.tail(60)
    finally:
        second.stop()

    # Every per-partition index member sits at its owner among four partitions, only there.
    for name_of in (keys.churn_customers,):
        for partition in range(4):
            members = {m.decode() for m in await redis_client.smembers(name_of(partition))}
            strays = {m for m in members if owner(m, 4) != partition}
            assert not strays, f"{name_of(partition)} holds users owned elsewhere: {strays}"
    customers = sum([await redis_client.scard(keys.churn_customers(p)) for p in range(4)])
    buyers = sum(1 for blob in expected.values() if b'"orders":0' not in blob)
    assert customers > 0 and customers <= buyers


async def _applied_over(worker: Worker, n: int) -> bool:
    return await applied(worker) > n
