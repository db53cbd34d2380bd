"""The Redis ACL of the compose stack (ops/redis/users.acl), on a real redis-server.

The template is rendered by the same script the redis container runs, with test passwords, so
these are the production rules. Checked: the worker's code paths all pass as user `worker`
(store, scripts, vector tier, a whole worker process), the ACL LOG records no refusal along the
way (a refused command that the code tolerates would otherwise go unnoticed), and the commands
that could destroy or expose data are refused.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from redis.retry import Retry

from profiles.core.profile import Profile
from profiles.embedding.cache import redis_key
from profiles.pipeline.store import Commit, Erasure
from profiles.redis import keys
from profiles.redis.store import RedisStore
from profiles.redis.tier import RedisVectorTier
from stream.devtools.services import REDIS, LocalServices, free_port
from tests.integration.harness import Names, Worker, produce
from tests.integration.oracle import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "ops" / "redis" / "users.acl"
RENDER = ROOT / "ops" / "redis" / "render-acl.sh"
WORKER_PASSWORD = "worker-test-pw"
ADMIN_PASSWORD = "admin-test-pw"
START = 1_767_225_600_000  # 2026-01-01, event time of the test events
# redis-py sends CLIENT SETINFO on every connect and ignores a refusal; Redis 7.0 cannot even
# name it in an ACL file (ops/redis/users.acl says why), so on 7.2+ it is an expected entry.
TOLERATED_DENIALS = {"client|setinfo"}


def render(output: Path, **passwords: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTP_REDIS_")}
    return subprocess.run(
        ["sh", str(RENDER), str(TEMPLATE), str(output)],
        env={**env, **passwords},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """A Redis of its own, loading the rendered ACL file (the session's Redis has none)."""
    state = tmp_path_factory.mktemp("acl-redis")
    acl = state / "users.acl"
    done = render(acl, RTP_REDIS_PASSWORD=WORKER_PASSWORD, RTP_REDIS_ADMIN_PASSWORD=ADMIN_PASSWORD)
    assert done.returncode == 0, done.stderr
    # Only Redis: the worker test borrows the session's broker. LocalServices' readiness probe
    # connects without credentials and counts the NOAUTH answer as "up".
    local = LocalServices(
        state,
        broker_port=free_port(),
        redis_port=free_port(),
        redis_args=(
            "--aclfile",
            str(acl),
            # Redis 7 refuses DEBUG and MODULE to everybody by default, before the ACL is even
            # consulted; enabled here so the refusals below are the ACL's own.
            "--enable-debug-command",
            "yes",
            "--enable-module-command",
            "yes",
        ),
    )
    local.start(REDIS)
    try:
        yield local
    finally:
        local.down()


def url(services: LocalServices, user: str, password: str, db: int = 0) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{services.ports[REDIS]}/{db}"


@pytest.fixture
def admin(acl_redis: LocalServices) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url(acl_redis, "admin", ADMIN_PASSWORD))
    client.acl_log_reset()
    yield client
    client.close()


@pytest.fixture
def worker_client(acl_redis: LocalServices) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url(acl_redis, "worker", WORKER_PASSWORD))
    yield client
    client.close()


@pytest.fixture
async def store(acl_redis: LocalServices) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(url(acl_redis, "worker", WORKER_PASSWORD))
    yield store
    await store.close()


def worker_denials(admin: redis.Redis) -> list[dict[str, Any]]:
    """ACL LOG entries of user `worker`, less the tolerated ones."""
    entries: list[dict[str, Any]] = admin.acl_log()
    return [
        e
        for e in entries
        if e["username"] == "worker" and str(e["object"]).lower() not in TOLERATED_DENIALS
    ]


def test_render_refuses_empty_and_url_unsafe_passwords(tmp_path: Path) -> None:
    missing = render(tmp_path / "a.acl", RTP_REDIS_ADMIN_PASSWORD="x")
    assert missing.returncode != 0 and "RTP_REDIS_PASSWORD" in missing.stderr
    unsafe = render(
        tmp_path / "b.acl", RTP_REDIS_PASSWORD="p@ss/word", RTP_REDIS_ADMIN_PASSWORD="x"
    )
    assert unsafe.returncode != 0 and "URL" in unsafe.stderr
    assert not (tmp_path / "a.acl").exists() and not (tmp_path / "b.acl").exists()


def test_rendered_file_holds_hashes_not_passwords(tmp_path: Path) -> None:
    out = tmp_path / "users.acl"
    done = render(out, RTP_REDIS_PASSWORD=WORKER_PASSWORD, RTP_REDIS_ADMIN_PASSWORD=ADMIN_PASSWORD)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert WORKER_PASSWORD not in text and ADMIN_PASSWORD not in text
    users = {line.split()[1] for line in text.splitlines()}
    assert users == {"default", "admin", "worker"}
    assert all(line.startswith("user ") for line in text.splitlines())


def test_nobody_gets_in_without_credentials(acl_redis: LocalServices) -> None:
    # No retries: redis-py would retry an authentication error with backoff for seconds.
    once = Retry(NoBackoff(), 0)
    anonymous = redis.Redis(port=acl_redis.ports[REDIS], retry=once)
    with pytest.raises(AuthenticationError):
        anonymous.ping()
    anonymous.close()
    wrong = redis.Redis.from_url(url(acl_redis, "worker", "not-the-password"), retry=once)
    with pytest.raises(AuthenticationError):
        wrong.ping()
    wrong.close()


async def test_the_store_works_as_the_worker_user(
    store: RedisStore, admin: redis.Redis, acl_redis: LocalServices
) -> None:
    await store.client.ping()
    await store.load_scripts()
    item = {"product_id": "p-acl", "event_id": "e-item", "ts": START, "title": "trail shoes"}
    first = Commit(
        profiles=[
            Profile("u-keep", version=1, first_ts=START, last_ts=START, counts={"click": 1}),
            Profile("u-gone", version=1, first_ts=START, last_ts=START, counts={"search": 1}),
        ],
        items=[item],
    )
    result = await store.commit(first)
    assert not result.conflicts
    # The erasure script: HGET, DEL of every key of the user, HSET of the marker, plus XADD.
    erasure = Erasure(
        "u-gone", expected_version=1, fences={"in:0": 7}, receipt={"user_id": "u-gone"}
    )
    result = await store.commit(Commit(erasures=[erasure]))
    assert not result.conflicts and result.erased_keys == {"u-gone": 1}
    # A stale write is refused by the script's version check, not by the ACL.
    stale = await store.commit(Commit(profiles=[Profile("u-keep", version=1)]))
    assert stale.conflicts == {"u-keep"}

    profiles, items = await store.load(["u-keep", "u-gone", "u-new"], ["p-acl"])
    assert profiles["u-keep"].version == 1 and profiles["u-keep"].counts == {"click": 1}
    assert profiles["u-gone"].version == 2 and profiles["u-gone"].fences == {"in:0": 7}
    assert profiles["u-new"].version == 0
    assert items["p-acl"]["title"] == "trail shoes"
    assert (await store.get("u-keep")) is not None and (await store.get("u-gone")) is None

    # After a Redis restart the scripts are gone: the store reloads them (SCRIPT LOAD again).
    admin.script_flush()
    again = await store.commit(Commit(profiles=[Profile("u-keep", version=2)]))
    assert not again.conflicts

    tier = RedisVectorTier(url(acl_redis, "worker", WORKER_PASSWORD))
    try:
        name = redis_key("test-model", "trail shoes")
        tier.mset({name: b"\x00\x01vector"})
        assert tier.mget([name, redis_key("test-model", "unseen")]) == [b"\x00\x01vector", None]
    finally:
        tier.close()
    assert 0 < admin.ttl(keys.PREFIX + name) <= 30 * 86_400
    assert admin.xlen(keys.ERASURE_RECEIPTS) == 1
    assert worker_denials(admin) == []


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "*"),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("DEBUG", "SLEEP", "0"),
        ("SHUTDOWN", "NOSAVE"),
        ("ACL", "LIST"),
        ("MODULE", "LIST"),
        ("EVAL", "return 1", "0"),
        ("SET", "other:key", "1"),  # outside rtp:*
        ("LRANGE", "rtp:p:{u-keep}", "0", "-1"),  # never sent by the worker, even on its keys
        ("HSET", "rtp-not-ours", "f", "1"),
    ],
    ids=lambda c: " ".join(c),
)
def test_the_worker_user_is_refused(
    worker_client: redis.Redis, admin: redis.Redis, command: tuple[str, ...]
) -> None:
    with pytest.raises(NoPermissionError):
        worker_client.execute_command(*command)  # type: ignore[no-untyped-call]
    assert admin.ping()  # still up: SHUTDOWN and DEBUG were refused, not run
    assert worker_denials(admin), "a refusal is recorded in the ACL LOG"


def test_scripts_cannot_reach_beyond_the_worker_rules(
    worker_client: redis.Redis, admin: redis.Redis
) -> None:
    """Lua runs with the caller's rights: SCRIPT LOAD + EVALSHA is no way around the ACL."""
    outside_key = worker_client.script_load("return redis.call('SET', 'other:key', '1')")
    with pytest.raises(ResponseError, match="can't access"):
        worker_client.evalsha(outside_key, 0)
    forbidden = worker_client.script_load("return redis.call('FLUSHALL')")
    with pytest.raises(ResponseError, match="can't run this command"):
        worker_client.evalsha(forbidden, 0)
    # Declaring a key outside rtp:* is refused before the script runs at all.
    harmless = worker_client.script_load("return 1")
    with pytest.raises(NoPermissionError):
        worker_client.evalsha(harmless, 1, "other:key")
    assert admin.exists("other:key") == 0


async def test_a_worker_process_runs_as_the_acl_user(
    acl_redis: LocalServices,
    services: LocalServices,
    names: Names,
    admin: redis.Redis,
    tmp_path: Path,
) -> None:
    """The whole worker (ping, scripts, store, vector tier) against the ACL, via a real broker.

    Database 1, so redis-py's SELECT is exercised too and the store test's keys stay apart.
    """
    admin_db1 = redis.Redis.from_url(url(acl_redis, "admin", ADMIN_PASSWORD, db=1))
    admin_db1.flushdb()
    env = {
        "RTP_BROKER": services.broker_url,
        "RTP_REDIS_URL": url(acl_redis, "worker", WORKER_PASSWORD, db=1),
        **names.env(),
    }
    users = [f"acl-u{i}" for i in range(3)]
    events = [
        {
            "event_id": f"acl-{i}",
            "type": "search",
            "schema_version": 1,
            "user_id": users[i % len(users)],
            "ts": START + i,
            "query": "waterproof trail running shoes",
        }
        for i in range(12)
    ]
    # Catalog, clicks and a purchase: the item index, its log and popularity go through too.
    events.append(
        {
            "event_id": "acl-p",
            "type": "product",
            "schema_version": 1,
            "user_id": "catalog",
            "ts": START,
            "product_id": "p-acl",
            "title": "Trail Running Shoes",
            "category": ["Sports", "Shoes"],
            "price": 50.0,
            "currency": "CNY",
        }
    )
    events += [
        {
            "event_id": f"acl-c{i}",
            "type": "click",
            "schema_version": 1,
            "user_id": users[i],
            "ts": START + 100 + i,
            "product_id": "p-acl",
        }
        for i in range(len(users))
    ]
    env["RTP_CATALOG_POLL_S"] = "0.2"
    process = Worker(env, tmp_path / "worker.log").start()
    try:
        await process.wait_ready()
        brokers = services.broker_url.removeprefix("kafka://")
        await produce(brokers, names.input, events, key=lambda e: str(e["user_id"]).encode())

        async def all_written() -> bool:
            stored = [admin_db1.hget(keys.profile(u), "d") for u in users]
            blobs = [orjson.loads(b) for b in stored if isinstance(b, bytes)]
            return len(blobs) == len(users) and all("click" in b["counts"] for b in blobs)

        try:
            await eventually(all_written, timeout=60)
        except AssertionError:
            pytest.fail(f"no profiles written as user worker; worker log:\n{process.tail()}")
        blobs = [admin_db1.hget(keys.profile(u), "d") for u in users]
        counts = [orjson.loads(blob)["counts"] for blob in blobs if isinstance(blob, bytes)]
        assert counts == [{"click": 1, "search": 4}] * 3

        async def indexed() -> bool:
            status, body = await process.get(f"/users/{users[0]}/recommendations?k=1")
            return status == 200 and [i["product_id"] for i in body["items"]] == ["p-acl"]

        await eventually(indexed, timeout=60)
        # The vector tier wrote through the ACL too (embeddings are on by default).
        assert any(admin_db1.scan_iter(match=keys.PREFIX + "emb:*", count=100))
    finally:
        code = process.stop()
        admin_db1.close()
    assert code == 0, process.tail()
    assert worker_denials(admin) == [], process.tail()


async def test_audiences_work_as_the_worker_user(store: RedisStore, admin: redis.Redis) -> None:
    """Definitions, swept states, requeue, export snapshots and privacy budgets: every command
    the audience store sends is granted (scripts by hash, no SCAN)."""
    from profiles.audiences.definitions import definitions_from
    from profiles.core import indexes
    from profiles.pipeline.feature import ScoreSet, SetAdd
    from profiles.redis.audiences import RedisAudienceStore

    audiences = RedisAudienceStore(store.client)
    await audiences.load_scripts()
    admin.script_flush()  # a restarted Redis: the store loads its scripts again
    rule = {"field": "orders", "op": ">=", "value": 0}
    defs = definitions_from({"audiences": [{"name": "acl", "rule": rule}]})
    assert await audiences.apply(defs) == (1, True)
    assert (await audiences.load()).version == 1
    await store.commit(
        Commit(profiles=[Profile("u-aud", version=1, first_ts=START, last_ts=START)])
    )
    profile = await store.get("u-aud")
    assert profile is not None
    profile.parts["audiences"] = {"m": {"acl": 1}, "v": 1}
    ops = [
        SetAdd(indexes.audience_members("acl"), "u-aud"),
        SetAdd(indexes.audience_users(0), "u-aud"),
        ScoreSet(indexes.audience_due(0), "u-aud", START),
    ]
    assert await audiences.save_swept([(profile, list(ops))]) == set()
    assert await audiences.requeue([0], 1, version=1) == 1
    assert await audiences.due(0, START) == ["u-aud"]
    snap, size = await audiences.snapshot("acl", 60)
    assert size == 1 and await audiences.page("acl", snap, 0, 10) == (0, ["u-aud"])
    assert await audiences.spend("acl", "r", 0.5, 1.0) == (True, 0.5)
    assert await audiences.counts(["acl"]) == {"acl": 1}
    assert worker_denials(admin) == []
