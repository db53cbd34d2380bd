"""The worker's stages in-process over memory sinks and a real Redis: no broker, no Faust.

The same :class:`IngestStage` and :class:`UpdateStage` the agents run; what would go to
Kafka lands in a :class:`MemorySink`, which refuses oversized messages as a broker does.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis

from profiles.redis import keys
from stream.settings import Settings
from stream.worker import dead_letters
from stream.worker.flow import IngestStage, UpdateStage
from stream.worker.runtime import Runtime
from stream.worker.transport import InputRecord, MemorySink, MemorySource, user_keyed

pytestmark = pytest.mark.integration

HOUR = 3_600_000


def event(n: int, kind: str, user: str, ts: int, **fields: object) -> bytes:
    base = {"event_id": f"{user}-{n}", "type": kind, "schema_version": 1, "user_id": user}
    return orjson.dumps({**base, "ts": ts, **fields})


@pytest.fixture
async def runtime(redis_url: str) -> AsyncIterator[Runtime]:
    settings = Settings.from_env(
        {"RTP_REDIS_URL": redis_url, "RTP_EMBEDDINGS": "false", "RTP_PARTITIONS": "2"}
    )
    rt = Runtime(settings)
    await rt.ensure_ready()
    yield rt
    await rt.store.close()


async def run(
    rt: Runtime, source: MemorySource, batch: list[InputRecord], sink: MemorySink
) -> MemorySink:
    """One batch through both stages; the routed bundles go to the update stage as consumed."""
    routed = MemorySink()
    await IngestStage(rt.settings, rt).handle(batch, source, routed)
    sink.sent.setdefault("dlq", []).extend(routed.take("dlq"))
    await UpdateStage(rt.settings, rt).handle(routed.as_input("routed"), sink)
    return sink


async def test_one_batch_flows_from_input_to_redis_and_every_output_role(
    runtime: Runtime, redis_client: aioredis.Redis
) -> None:
    now = int(time.time() * 1000)
    source = MemorySource()
    batch = source.append(
        [
            event(1, "click", "ann", now - 3 * HOUR, product_id="p1", title="green tea"),
            b"{not json",
            event(
                2,
                "purchase",
                "bob",
                now - 2 * HOUR,
                order_id="o1",
                currency="CNY",
                amount=10.0,
                items=[{"product_id": "p1", "quantity": 1, "price": 10.0}],
            ),
            event(3, "search", "ann", now - HOUR, query="oolong"),
        ]
    )
    sink = await run(runtime, source, batch, MemorySink())

    dead = sink.take("dlq")
    assert [dict(d.headers)[dead_letters.REASON] for d in dead] == [b"invalid_json"]
    assert dict(dead[0].headers)[dead_letters.OFFSET] == b"1" and dead[0].value == b"{not json"
    profiles = {m.key: orjson.loads(m.value or b"") for m in sink.take("profiles")}
    assert set(profiles) == {b"ann", b"bob"}
    assert profiles[b"ann"]["counts"] == {"click": 1, "search": 1}
    stored = orjson.loads(await redis_client.hget(keys.profile("ann"), "d"))
    assert stored["counts"] == {"click": 1, "search": 1}
    assert await redis_client.hget(keys.profile("bob"), "c") is not None  # churn scored
    stats = runtime.stats.as_dict()  # what /stats shows, read from the Prometheus counters
    assert stats["applied"] == 3 and stats["dead"] == {"invalid_json": 1}
    assert stats["profiles_emitted"] == 2 and stats["routed"] == 3

    # Redelivered (the input offsets were not acknowledged): nothing applies twice.
    again = await run(runtime, source, batch, MemorySink())
    assert orjson.loads(await redis_client.hget(keys.profile("ann"), "d")) == stored
    stats = runtime.stats.as_dict()
    assert stats["applied"] == 3 and stats["duplicates"] + stats["fenced"] >= 3
    versions = {m.key: orjson.loads(m.value or b"")["version"] for m in again.take("profiles")}
    assert versions == {k: p["version"] for k, p in profiles.items()}  # the same events again

    # An erasure tombstones the user on every user-keyed output role.
    erase = event(4, "user_erasure", "ann", now, requested_by="privacy-desk")
    out = await run(runtime, source, source.append([erase]), MemorySink())
    for role in user_keyed():
        assert [(m.key, m.value) for m in out.take(role)] == [(b"ann", None)], role
    assert await redis_client.exists(keys.profile("ann")) == 0


async def test_a_refused_output_is_dead_lettered_and_the_batch_still_commits(
    runtime: Runtime, redis_client: aioredis.Redis
) -> None:
    now = int(time.time() * 1000)
    source = MemorySource()
    batch = source.append([event(1, "search", "cy", now - HOUR, query="teapot " * 20)])
    small = MemorySink(limits={"profiles": 200})  # the profile_updated is bigger: refused
    await run(runtime, source, batch, small)
    assert small.take("profiles") == []
    (refusal,) = small.take("dlq")
    heads = dead_letters.parse(refusal.headers)
    assert heads[dead_letters.REASON] == "output_rejected"
    assert heads[dead_letters.OUTPUT_TOPIC] == "memory-profiles"
    assert (heads[dead_letters.TOPIC], heads[dead_letters.OFFSET]) == ("site-events", "0")
    assert await redis_client.hget(keys.profile("cy"), "d") is not None
    assert runtime.stats.dead() == {"output_rejected": 1}
    exported = runtime.metrics.exposition().decode()
    assert 'rtp_dead_letters_total{reason="output_rejected",stage="update"} 1.0' in exported
