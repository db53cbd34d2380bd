"""Fence epochs' parts that talk to the outside: the marks' scripts in Redis, the broker read."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from profiles.redis.marks import Mark, MarkStore, fingerprint
from stream.settings import Settings
from stream.worker.epochs import broker_fetch
from tests.integration.harness import Names, produce

pytestmark = pytest.mark.integration


async def test_marks_only_rise_within_their_epoch_and_one_new_epoch_wins(
    redis_client: aioredis.Redis,
) -> None:
    marks = MarkStore(redis_client)
    await marks.load_scripts()
    assert await marks.get("in", 0) == Mark()
    await marks.advance({("in", 0): (0, 10, "a"), ("in", 1): (0, 3, "b")})
    await marks.advance({("in", 0): (0, 7, "old")})  # a redelivered batch: no step back
    assert await marks.get("in", 0) == Mark(0, 10, "a")
    assert await marks.get("in", 1) == Mark(0, 3, "b")
    # Two workers notice the same new log: one new epoch, both adopt it.
    assert await marks.new_epoch("in", 0, 0) == 1
    assert await marks.new_epoch("in", 0, 0) == 1
    assert await marks.get("in", 0) == Mark(1, -1, "")
    await marks.advance({("in", 0): (0, 50, "stale")})  # a worker still in epoch 0: ignored
    await marks.advance({("in", 0): (1, 2, "c")})
    assert await marks.get("in", 0) == Mark(1, 2, "c")
    await redis_client.script_flush()  # a Redis restarted without its scripts
    await marks.advance({("in", 0): (1, 4, "d")})
    assert await marks.new_epoch("in", 1, 0) == 1
    assert (await marks.get("in", 0)).high == 4


async def test_broker_fetch_reads_the_message_at_an_offset(brokers: str, names: Names) -> None:
    values = [f"m{i}".encode() for i in range(6)]
    await produce(brokers, names.input, values)
    fetch = broker_fetch(Settings.from_env({"RTP_BROKER": f"kafka://{brokers}"}))
    partitions = []
    for p in range(8):
        found = await fetch(names.input, p, 0)
        if found is not None:
            partitions.append(p)
            assert found[1] in values
            assert fingerprint(*found) == fingerprint(found[0], found[1])
        if partitions:
            break
    assert partitions, "the first message of some partition is readable"
    assert await fetch(names.input, partitions[0], 10_000) is None  # past the end: cannot tell
