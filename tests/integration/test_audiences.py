"""Audiences on a real Redis: definitions applied by the command, membership in the batch,
the sweep as time passes (exactly once), a new version, consent, snapshot export, noisy counts
with a budget, erasure; then through the real worker process and broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from profiles.audiences.export import BudgetSpent, dp_count
from profiles.audiences.membership import AudienceChange, audience_event
from profiles.core.ownership import owner
from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.redis import keys
from schemas.validate import validate_output
from stream.cli.audiences import apply
from stream.settings import Settings
from stream.worker.runtime import Runtime
from tests.integration.harness import Consumed, Names, Worker, produce, read_topic
from tests.integration.oracle import eventually

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400_000
START = 1_767_225_600_000
RULES = {
    "audiences": [
        {
            "name": "tea_buyers",
            "description": "bought something, tea among their interests",
            "rule": {
                "all": [
                    {"field": "orders", "op": ">=", "value": 1},
                    {"field": "tags", "op": "contains", "value": "tea"},
                ]
            },
        },
        {
            "name": "active_week",
            "rule": {"field": "days_since_last_event", "op": "<=", "value": 7},
        },
    ]
}


def event(
    kind: str, n: int, user: str, day: float, start: int = START, **extra: Any
) -> dict[str, Any]:
    base = {
        "event_id": f"{user}-{kind}-{n}",
        "type": kind,
        "schema_version": 1,
        "user_id": user,
        "ts": start + int(day * DAY),
    }
    if kind == "purchase":
        base |= {
            "order_id": f"{user}-o{n}",
            "currency": "USD",
            "amount": 12.0,
            "items": [
                {
                    "product_id": "p1",
                    "quantity": 1,
                    "price": 12.0,
                    "title": "Green tea",
                    "category": ["Tea"],
                }
            ],
        }
    elif kind == "click":
        base |= {"product_id": "p2", "title": "Mug", "category": ["Kitchen"]}
    elif kind == "user_erasure":
        base |= {"requested_by": "privacy-desk"}
    return base | extra


def records(events: list[dict[str, Any]], start: int) -> list[Record]:
    return [Record(InputPartition("in", 0), start + i, e) for i, e in enumerate(events)]


def runtime(redis_url: str, audiences: bool = True) -> Runtime:
    settings = Settings.from_env(
        {
            "RTP_REDIS_URL": redis_url,
            "RTP_EMBEDDINGS": "false",
            "RTP_SEGMENTS": "false",
            "RTP_PARTITIONS": "2",
            "RTP_CHURN_CLOCK": "event",
            "RTP_AUDIENCES": str(audiences).lower(),
        }
    )
    return Runtime(settings)


def write(path: Path, rules: dict[str, Any]) -> Path:
    path.write_text(json.dumps(rules))
    return path


async def members(client: aioredis.Redis, name: str) -> set[str]:
    return {m.decode() for m in await client.smembers(keys.audience_members(name))}


@pytest.fixture(params=["redis", "cluster"])
def store_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """On one Redis, and on a 3-master, 3-replica Redis Cluster (member sets, snapshots and
    budgets live in other slots than the profiles)."""
    return redis_url if request.param == "redis" else str(request.getfixturevalue("cluster_url"))


async def test_membership_sweeps_versions_consent_export_and_erasure(
    store_url: str, tmp_path: Path
) -> None:
    redis_url = store_url
    # A customer stored before audiences existed (an upgrade): no audience state at all.
    legacy = runtime(redis_url, audiences=False)
    await legacy.store.load_scripts()
    await legacy.updater.process(records([event("purchase", 1, "old", 0)], 50))
    await legacy.store.close()
    rt = runtime(redis_url)
    await rt.store.load_scripts()
    await rt.audience_store.load_scripts()
    client = rt.store.client
    assert await client.hget(keys.profile("old"), "au") is None
    said = await apply(rt.settings, write(tmp_path / "a.json", RULES))
    assert said == "2 audiences (tea_buyers, active_week) applied as version 1"
    again = await apply(rt.settings, write(tmp_path / "b.json", RULES))
    assert again.endswith("unchanged: still version 1")
    sent: list[AudienceChange] = []

    async def announce(changes: list[AudienceChange]) -> None:
        sent.extend(changes)

    # The first sweep picks the version up and re-decides every owned user it knows of.
    upgraded = await rt.sweep_audiences({0, 1}, announce)
    assert sorted((c.user_id, c.audience) for c in upgraded) == [
        ("old", "active_week"),
        ("old", "tea_buyers"),
    ]
    assert rt.audiences is not None and rt.audiences.version == 1

    users = ["ann", "bob", "cat", "dan"]
    batch = [event("purchase", 1, u, 0) for u in users[:3]] + [event("click", 1, "dan", 0)]
    batch.append(event("click", 2, "cat", 0.5, consent=False))
    first = await rt.updater.process(records(batch, 0))
    entered = sorted((c.user_id, c.audience) for c in first.changes("audience_changed"))
    assert entered == [
        ("ann", "active_week"),
        ("ann", "tea_buyers"),
        ("bob", "active_week"),
        ("bob", "tea_buyers"),
        ("dan", "active_week"),
    ]  # cat opted out: in no audience
    for change in first.changes("audience_changed"):
        validate_output("audience_changed", audience_event(change, 1))
    assert await members(client, "tea_buyers") == {"ann", "bob", "old"}
    assert await members(client, "active_week") == {"ann", "bob", "dan", "old"}
    redelivered = await rt.updater.process(records(batch, 0))
    assert redelivered.changes("audience_changed") == []

    # Time alone: ann stays active (a click on day 6), the others leave after 7 days.
    await rt.updater.process(records([event("click", 3, "ann", 6)], 100))
    rt.observer.watermark_ms = START + 7 * DAY  # exactly 7 days: still in
    assert await rt.sweep_audiences({0, 1}, announce) == []
    rt.observer.watermark_ms = START + 7 * DAY + 1
    left = await rt.sweep_audiences({0, 1}, announce)
    assert sorted((c.user_id, c.audience, c.change) for c in left) == [
        ("bob", "active_week", "left"),
        ("dan", "active_week", "left"),
        ("old", "active_week", "left"),
    ]
    assert await members(client, "active_week") == {"ann"}
    stored = orjson.loads(await client.hget(keys.profile("bob"), "au"))
    assert stored["m"] == {"tea_buyers": 1} and stored["due"] is None
    assert await rt.sweep_audiences({0, 1}, announce) == []  # swept once: nothing again
    # Another worker sweeping the same time (a restart) finds nobody due.
    other = runtime(redis_url)
    assert await other.sweep_audiences({0, 1}, announce) == []
    await other.store.close()

    # A new version: every owned user is re-decided by the next sweep.
    narrower = {
        "audiences": [RULES["audiences"][0] | {"rule": {"field": "orders", "op": ">=", "value": 2}}]
    }
    said = await apply(rt.settings, write(tmp_path / "c.json", narrower))
    assert said.endswith("applied as version 2")
    rt.observer.watermark_ms = START + 8 * DAY
    moved = await rt.sweep_audiences({0, 1}, announce)
    assert sorted((c.user_id, c.audience, c.change, c.version) for c in moved) == [
        ("ann", "active_week", "left", 2),  # no longer defined
        ("ann", "tea_buyers", "left", 2),
        ("bob", "tea_buyers", "left", 2),
        ("old", "tea_buyers", "left", 2),
    ]
    await apply(rt.settings, write(tmp_path / "d.json", RULES))  # back: version 3
    rt.observer.watermark_ms = START + 9 * DAY
    back = await rt.sweep_audiences({0, 1}, announce)
    assert sorted((c.user_id, c.audience, c.change) for c in back) == [
        ("ann", "active_week", "entered"),  # her last event was 3 days ago
        ("ann", "tea_buyers", "entered"),
        ("bob", "tea_buyers", "entered"),
        ("old", "tea_buyers", "entered"),
    ]
    exposed = rt.metrics.exposition().decode()
    assert 'rtp_audience_members{audience="tea_buyers"} 3.0' in exposed
    assert 'rtp_audience_members{audience="active_week"} 1.0' in exposed

    # Export: a snapshot is the audience at one instant, whatever changes meanwhile.
    store = rt.audience_store
    snap, size = await store.snapshot("tea_buyers", 60)
    assert size == 3
    await rt.updater.process(records([event("purchase", 2, "eve", 9)], 200))
    assert await members(client, "tea_buyers") == {"ann", "bob", "eve", "old"}
    listed: list[str] = []
    cursor = 0
    while True:
        cursor, page = await store.page("tea_buyers", snap, cursor, 1)
        listed += page
        if cursor == 0:
            break
    assert sorted(listed) == ["ann", "bob", "old"]
    # bob opts out: gone from every audience, and from the next export.
    out = await rt.updater.process(records([event("click", 4, "bob", 9.5, consent=False)], 300))
    assert [(c.audience, c.change) for c in out.changes("audience_changed")] == [
        ("tea_buyers", "left")
    ]
    exported = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "stream", "audiences", "export", "tea_buyers", "--format", "csv"],
        cwd=ROOT,
        env={"RTP_REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert exported.returncode == 0, exported.stderr
    header, *rows = exported.stdout.splitlines()
    assert header == "user_id" and sorted(rows) == ["ann", "eve", "old"]
    assert "exported 3 members of tea_buyers" in exported.stderr

    # Noisy counts pay from the report's budget (1.0 by default) and stop when it is spent.
    rng = np.random.default_rng(3)
    budget = rt.settings.audiences.dp_budget
    noisy = await dp_count(store, "tea_buyers", 0.5, "q4", budget, rng)
    assert noisy["scale"] == 2.0 and noisy["spent"] == 0.5 and noisy["count"] >= 0
    await dp_count(store, "tea_buyers", 0.5, "q4", budget, rng)
    with pytest.raises(BudgetSpent, match="spent 1 of its epsilon budget 1"):
        await dp_count(store, "tea_buyers", 0.1, "q4", budget, rng)
    other_report = await dp_count(store, "tea_buyers", 1.0, "board", budget, rng)
    assert other_report["spent"] == 1.0

    # Definitions broken by hand in Redis: the worker keeps the ones it has, and goes on.
    await client.hset(keys.AUDIENCE_DEFS, mapping={"v": 9, "d": b"{not json"})
    assert await rt.sweep_audiences({0, 1}, announce) == []
    assert rt.audiences.version == 3

    # Erasure: out of every audience and the due index.
    await rt.updater.process(records([event("user_erasure", 5, "ann", 10)], 400))
    for name in ("tea_buyers", "active_week"):
        assert "ann" not in await members(client, name)
    assert await client.zscore(keys.audience_due(owner("ann", 2)), "ann") is None
    # eve erased too: active_week is empty, and an empty snapshot is a snapshot too.
    await rt.updater.process(records([event("user_erasure", 6, "eve", 10)], 401))
    assert await members(client, "active_week") == set()
    empty, size = await store.snapshot("active_week", 60)
    assert size == 0 and await store.page("active_week", empty, 0, 10) == (0, [])
    await rt.store.close()


async def test_through_the_worker_topic_api_and_cli(
    worker_env: dict[str, str], brokers: str, names: Names, redis_url: str, tmp_path: Path
) -> None:
    env = {
        **worker_env,
        "RTP_EMBEDDINGS": "false",
        "RTP_AUDIENCE_SWEEP_S": "1",
        "RTP_AUDIENCE_TOPIC": f"aud-{names.tag}",
    }
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready()
        cli_env = {"PATH": "/usr/bin:/bin", "RTP_REDIS_URL": redis_url}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "stream", "audiences", *args],
                cwd=ROOT,
                env=cli_env,
                capture_output=True,
                text=True,
                timeout=120,
            )

        bad = {"audiences": [{"name": "x", "rule": {"field": "spend", "op": "~", "value": 1}}]}
        refused = await asyncio.to_thread(cli, "apply", str(write(tmp_path / "bad.json", bad)))
        assert refused.returncode == 1
        assert "audiences[0].rule: operator '~' does not apply to spend" in refused.stderr
        checked = await asyncio.to_thread(cli, "check", str(write(tmp_path / "a.json", RULES)))
        assert checked.returncode == 0 and "2 audiences: valid" in checked.stdout, checked.stderr
        made = await asyncio.to_thread(cli, "apply", str(tmp_path / "a.json"))
        assert made.returncode == 0 and "version 1" in made.stdout, made.stderr

        async def picked_up() -> bool:  # within RTP_AUDIENCE_SWEEP_S
            return int((await worker.stats())["audiences"]["version"]) == 1

        await eventually(picked_up, timeout=60)
        # Now: the worker sweeps by the wall clock, and "active_week" ends a week on.
        now = int(time.time() * 1000)
        await produce(
            brokers,
            names.input,
            [
                event("purchase", 1, "fay", 0, start=now),
                event("purchase", 1, "gus", 0, start=now, consent=False),
            ],
        )

        def fay_in(got: list[Consumed]) -> bool:
            found = {orjson.loads(m.value)["audience"] for m in got if m.value and m.key == b"fay"}
            return found == {"tea_buyers", "active_week"}

        got = await read_topic(brokers, f"aud-{names.tag}", fay_in, timeout=90)
        assert all(m.key != b"gus" for m in got)  # opted out: never announced
        for m in got:
            validate_output("audience_changed", orjson.loads(m.value or b"{}"))
        status, body = await worker.get("/audiences")
        assert status == 200 and body["version"] == 1
        assert {a["name"]: a["size"] for a in body["audiences"]} == {
            "tea_buyers": 1,
            "active_week": 1,
        }
        status, page = await worker.get("/audiences/tea_buyers/members?count=10")
        assert status == 200 and page["members"] == ["fay"] and page["size"] == 1
        status, again = await worker.get(
            f"/audiences/tea_buyers/members?snapshot={page['snapshot']}&cursor=0"
        )
        assert status == 200 and again["members"] == ["fay"] and again["cursor"] is None
        status, noisy = await worker.get("/audiences/tea_buyers/count?epsilon=1&report=r1")
        assert status == 200 and noisy["scale"] == 1.0 and noisy["spent"] == 1.0
        status, refused_count = await worker.get(
            "/audiences/tea_buyers/count?epsilon=0.5&report=r1"
        )
        assert status == 429 and "budget" in refused_count["error"]
        assert (await worker.get("/audiences/nope/members"))[0] == 404
        assert (await worker.get("/audiences/tea_buyers/count?epsilon=1e3"))[0] == 400
        assert (await worker.get("/audiences/tea_buyers/members?snapshot=zz"))[0] == 400
        gone = await worker.get("/audiences/tea_buyers/members?snapshot=0123456789abcdef")
        assert gone[0] == 410
        exported = await asyncio.to_thread(cli, "export", "tea_buyers", "--format", "jsonl")
        assert exported.returncode == 0, exported.stderr
        assert [orjson.loads(line) for line in exported.stdout.splitlines()] == [
            {"user_id": "fay", "audience": "tea_buyers"}
        ]
    finally:
        worker.stop()
