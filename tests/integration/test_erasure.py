"""A user_erasure request through the real worker: data gone, no key or value names the user,
the receipt names it by its keyed hash only, redelivery does not resurrect it; pseudonymised
ingestion; and the erasure scripts on a real Redis Cluster node (one slot per script)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from profiles.audiences.definitions import definitions_from
from profiles.core.ownership import owner
from profiles.core.privacy import HEX_CHARS, KeyedHash, Pseudonymizer
from profiles.core.profile import Profile
from profiles.pipeline.store import Commit, Erasure
from profiles.redis import keys
from profiles.redis.audiences import RedisAudienceStore
from profiles.redis.store import _ERASE_USER, RedisStore
from stream.devtools.services import REDIS, REDIS_CLUSTER_HIGHEST_PORT, LocalServices, free_port
from tests.integration.harness import Consumed, Names, Worker, produce, read_topic
from tests.integration.oracle import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "cluster"])
def redis_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """Each test on one Redis, and through a worker on a 3-master, 3-replica Redis Cluster."""
    return redis_url if request.param == "redis" else str(request.getfixturevalue("cluster_url"))


START = 1_767_225_600_000
PSEUDONYM_KEY = "test-pseudonym-key-6f1d2a9c"


def purchase(user: str, event_id: str, ts: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "purchase",
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
        "order_id": "o1",
        "currency": "CNY",
        "amount": 20.0,
        "items": [{"product_id": "p1", "quantity": 1, "price": 20.0, "title": "Green Tea"}],
    }


def erasure(user: str, event_id: str, ts: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "user_erasure",
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
        "requested_by": "privacy-desk",
        "reason": "GDPR art. 17",
    }


async def everything(client: aioredis.Redis) -> dict[bytes, bytes]:
    """Every key of the database with all it holds (fields, members, stream entries) joined."""
    out: dict[bytes, bytes] = {}
    async for key in client.scan_iter(count=1000):
        kind = (await client.type(key)).decode()
        values: list[bytes]
        if kind == "string":
            values = [await client.get(key) or b""]
        elif kind == "hash":
            values = [b for kv in (await client.hgetall(key)).items() for b in kv]
        elif kind == "set":
            values = list(await client.smembers(key))
        elif kind == "zset":
            values = list(await client.zrange(key, 0, -1))
        elif kind == "list":
            values = list(await client.lrange(key, 0, -1))
        elif kind == "stream":
            entries = await client.xrange(key)
            values = [b for _, fields in entries for kv in fields.items() for b in kv]
        else:
            raise AssertionError(f"unexpected type {kind} of {key!r}")
        out[key] = b"\0".join(values)
    return out


async def mentions(client: aioredis.Redis, needle: str) -> list[bytes]:
    """Keys whose name or content contains ``needle``."""
    raw = needle.encode()
    return [k for k, v in (await everything(client)).items() if raw in k or raw in v]


async def test_erasure_leaves_no_key_or_value_of_the_user(
    worker: Worker,
    worker_env: dict[str, str],
    brokers: str,
    names: Names,
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    user = "erin-7781"
    # An audience the user will be in: erasure must take the user out of it too.
    everyone = {
        "audiences": [{"name": "buyers", "rule": {"field": "orders", "op": ">=", "value": 1}}]
    }
    await RedisAudienceStore(redis_client).apply(definitions_from(everyone))

    async def audiences_read() -> bool:  # within RTP_AUDIENCE_SWEEP_S
        return int((await worker.stats())["audiences"]["version"]) == 1

    await eventually(audiences_read, timeout=60)
    await produce(brokers, names.input, [purchase(user, f"{user}-1", START)])
    await eventually(lambda: _exists(redis_client, keys.profile(user)))
    partition = owner(user, 4)
    assert await redis_client.sismember(keys.audience_members("buyers"), user)
    assert await redis_client.sismember(keys.churn_customers(partition), user)
    assert await redis_client.zscore(keys.churn_due(partition), user) is not None
    assert await mentions(redis_client, user)

    await produce(brokers, names.input, [erasure(user, f"{user}-2", START + 1000)])

    async def gone() -> bool:
        return not await redis_client.exists(keys.profile(user))

    await eventually(gone)
    # Nothing in the database names the user: no key, no field, member or stream entry.
    assert await mentions(redis_client, user) == []
    # The marker is in the profile's slot, named by the keyed hash under the deployment's
    # secret (created in Redis by the worker: no RTP_PSEUDONYM_KEY here), and holds only
    # the version and the fences.
    assert await redis_client.exists(keys.SECRET)
    store = RedisStore(redis_client)
    user_hash = (await store.marker_hash())(user)
    marker = await redis_client.hgetall(await store.marker_key(user))
    assert set(marker) == {b"v", b"f"} and int(marker[b"v"]) == 2
    fences = orjson.loads(marker[b"f"])
    assert fences and all(k.startswith(names.input + ":") for k in fences)
    # The receipt: who asked, when, which request; the user only as its keyed hash.
    entries = await redis_client.xrange(keys.ERASURE_RECEIPTS)
    assert len(entries) == 1
    receipt = orjson.loads(entries[0][1][b"r"])
    assert receipt["user_hash"] == user_hash and len(user_hash) == HEX_CHARS
    assert receipt["requested_by"] == "privacy-desk" and receipt["reason"] == "GDPR art. 17"
    assert receipt["event_id"] == "<user>-2" and receipt["requested_ts"] == START + 1000
    assert "user_id" not in receipt

    def tombstone(got: list[Consumed]) -> bool:
        return any(m.key == user.encode() and m.value is None for m in got)

    await read_topic(brokers, names.profiles, tombstone, timeout=30)
    await read_topic(brokers, names.recs, tombstone, timeout=30)  # every user-keyed output
    await read_topic(brokers, names.value, tombstone, timeout=30)
    await read_topic(brokers, names.sentiment, tombstone, timeout=30)
    await read_topic(brokers, names.risk, tombstone, timeout=30)
    await read_topic(brokers, names.audiences, tombstone, timeout=30)
    assert (await worker.get(f"/users/{user}"))[0] == 404
    worker.stop()

    # Redelivery: a new consumer group reads the same input offsets (purchase and erasure)
    # again. The marker's fences drop both, so the user does not come back.
    again_env = {
        **worker_env,
        "RTP_APP_ID": f"again-{names.tag}",
        "RTP_ROUTED_TOPIC": f"routed-again-{names.tag}",
    }
    again = Worker(again_env, tmp_path / "again.log").start()
    try:
        await again.wait_ready()

        async def both_fenced() -> bool:
            return int((await again.stats())["fenced"]) >= 2

        await eventually(both_fenced, timeout=90)
        stats = await again.stats()
        assert stats["applied"] == 0, again.tail()
        assert not await redis_client.exists(keys.profile(user))
        assert await redis_client.hgetall(await store.marker_key(user)) == marker
        assert await redis_client.xlen(keys.ERASURE_RECEIPTS) == 1
        assert await mentions(redis_client, user) == []
        assert (await again.get(f"/users/{user}"))[0] == 404
    finally:
        again.stop()


async def test_pseudonymised_ingestion_never_stores_the_clear_id(
    worker_env: dict[str, str],
    brokers: str,
    names: Names,
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    env = {**worker_env, "RTP_PSEUDONYMIZE": "true", "RTP_PSEUDONYM_KEY": PSEUDONYM_KEY}
    worker = Worker(env, tmp_path / "worker.log").start()
    user = "pia-clear-5531"
    pseudonym = Pseudonymizer(PSEUDONYM_KEY)(user)
    try:
        await worker.wait_ready()
        search = {
            "event_id": "s-1",
            "type": "search",
            "schema_version": 1,
            "user_id": user,
            "ts": START + 10,
            "query": "oolong tea",
        }
        # Keyed by the clear id, as a producer would: the worker re-routes by pseudonym.
        await produce(
            brokers,
            names.input,
            [purchase(user, f"{user}-1", START), search],
            key=lambda e: str(e["user_id"]).encode(),
        )

        async def found() -> bool:
            status, body = await worker.get(f"/users/{user}")
            return status == 200 and body["counts"] == {"purchase": 1, "search": 1}

        await eventually(found, timeout=90)
        _, body = await worker.get(f"/users/{user}")
        assert body["user_id"] == pseudonym  # looked up by the clear id, stored by pseudonym
        assert await redis_client.exists(keys.profile(pseudonym))
        everything_stored = await everything(redis_client)
        assert any(pseudonym.encode() in k for k in everything_stored)
        assert await mentions(redis_client, user) == []
        # Recent event ids are kept (dedup); the one that contained the user id is hashed.
        blob = await redis_client.hget(keys.profile(pseudonym), "d")
        assert blob is not None and b"s-1" in blob

        def announced(got: list[Consumed]) -> bool:
            return any(m.key == pseudonym.encode() for m in got)

        updates = await read_topic(brokers, names.profiles, announced, timeout=30)
        assert all(user.encode() not in (m.key or b"") + (m.value or b"") for m in updates)

        # Erasure by the clear id finds the pseudonymised profile.
        await produce(brokers, names.input, [erasure(user, "x-1", START + 1000)])

        async def erased() -> bool:
            return (await worker.get(f"/users/{user}"))[0] == 404

        await eventually(erased, timeout=60)
        assert not await redis_client.exists(keys.profile(pseudonym))
        # With RTP_PSEUDONYM_KEY set, markers are named with it; no secret is put in Redis.
        store = RedisStore(redis_client, PSEUDONYM_KEY)
        assert await redis_client.hget(await store.marker_key(pseudonym), "v") == b"2"
        assert not await redis_client.exists(keys.SECRET)
        receipt = orjson.loads((await redis_client.xrange(keys.ERASURE_RECEIPTS))[-1][1][b"r"])
        assert receipt["user_hash"] == KeyedHash(PSEUDONYM_KEY, "erasure-marker")(pseudonym)
        assert await mentions(redis_client, user) == []
        assert await mentions(redis_client, pseudonym) == []
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def cluster_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """A one-node Redis Cluster that owns every slot: scripts touching keys of two slots fail
    with CROSSSLOT, exactly as on a production cluster."""
    state = tmp_path_factory.mktemp("cluster-redis")
    local = LocalServices(
        state,
        broker_port=free_port(),
        redis_port=free_port(highest=REDIS_CLUSTER_HIGHEST_PORT),
        redis_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
    )
    local.start(REDIS)
    try:
        yield local
    finally:
        local.down()


async def test_erasure_scripts_run_on_redis_cluster(cluster_node: LocalServices) -> None:
    client = aioredis.Redis(port=cluster_node.ports[REDIS])
    try:
        await client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)

        async def cluster_ok() -> bool:
            info = await client.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            return "cluster_state:ok" in text

        await eventually(cluster_ok, timeout=30)
        store = RedisStore(client, PSEUDONYM_KEY)
        users = [f"c{i:04d}" for i in range(40)] + ["a}b", "x{y}z", "}lead", "用户-7", "{}"]
        # Redis' own slot computation agrees: marker and profile keys share a slot.
        for uid in users:
            profile_slot = await client.execute_command("CLUSTER", "KEYSLOT", keys.profile(uid))
            marker_slot = await client.execute_command(
                "CLUSTER", "KEYSLOT", await store.marker_key(uid)
            )
            assert profile_slot == marker_slot, uid
        await store.load_scripts()
        written = await store.commit(
            Commit(profiles=[Profile(u, version=1, first_ts=START, last_ts=START) for u in users])
        )
        assert not written.conflicts
        result = await store.commit(
            Commit(
                erasures=[
                    Erasure(u, 1, {"in:0": i}, {"user_id": u, "requested_by": "desk"})
                    for i, u in enumerate(users)
                ]
            )
        )
        assert not result.conflicts and result.erased_keys == dict.fromkeys(users, 1)
        profiles, _ = await store.load(users, ())
        assert all(profiles[u].version == 2 and profiles[u].last_ts is None for u in users)
        assert [profiles[u].fences for u in users] == [{"in:0": i} for i in range(len(users))]
        # A write computed before the erasure is refused by the marker's version, in-slot.
        stale = await store.commit(Commit(profiles=[Profile(users[0], version=1)]))
        assert stale.conflicts == {users[0]}
        # The old naming put the marker of an id starting with "}" in another slot: the cluster
        # refuses such a script, which the new naming avoids (see "}lead" above).
        sha = await client.script_load(_ERASE_USER)
        with pytest.raises(ResponseError, match="hash to the same slot"):  # CROSSSLOT
            await client.evalsha(
                sha, 2, keys.profile("}lead"), keys.legacy_erased("}lead"), 2, 3, "{}"
            )
    finally:
        await client.aclose()


async def _exists(client: aioredis.Redis, key: str) -> bool:
    return bool(await client.exists(key))
