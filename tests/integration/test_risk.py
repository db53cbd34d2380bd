"""Risk flags through the real worker (Tansu broker, redis-server): a bot's clicks open a
``risk_flag`` on the risk topic, the state is in Redis and the API shows it, resent events do
not flag twice, the flag clears in event time; redelivered offsets on a real Redis are fenced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.redis import keys
from profiles.risk.rules import HOUR
from schemas.validate import Limits, Rejected, decode, validate_output
from stream.simulation.generator import read_jsonl
from tests.integration.harness import ROOT, Consumed, Names, Worker, produce, read_topic
from tests.integration.oracle import eventually
from tests.integration.test_churn_sweep import runtime

pytestmark = pytest.mark.integration
START = 1_767_225_600_000


def click(user: str, n: int, ts: int) -> dict[str, Any]:
    return {
        "event_id": f"{user}-c{n}",
        "type": "click",
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
        "product_id": "p1",
        "title": "Green Tea",
        "category": ["Food", "Tea"],
    }


def by_user(event: dict[str, Any]) -> bytes:
    return str(event["user_id"]).encode()


def flags_of(got: list[Consumed], user: str) -> list[dict[str, Any]]:
    return [orjson.loads(m.value) for m in got if m.key == user.encode() and m.value is not None]


async def stored_flags(client: aioredis.Redis, user: str) -> dict[str, Any] | None:
    raw = await client.hget(keys.profile(user), "rk")
    return None if raw is None else dict(orjson.loads(raw)["flags"])


async def test_a_bot_is_flagged_once_and_the_flag_clears(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    bot = [click("bot-1", i, START + i * 1000) for i in range(45)]  # 45 clicks in 45 s
    human = [click("human-1", i, START + i * 40_000) for i in range(5)]
    # Keyed by user: one input partition, so the worker sees each user's clicks in order.
    await produce(brokers, names.input, [*bot, *human], key=by_user)

    got = await read_topic(brokers, names.risk, lambda g: bool(flags_of(g, "bot-1")), 90)
    (event,) = flags_of(got, "bot-1")
    validate_output("risk_flag", event)
    assert (event["rule"], event["status"], event["severity"]) == ("bot_clicks", "opened", "high")
    assert event["opened_at"] == START + 39_000
    assert event["evidence"]["clicks_per_60s"] == {"value": 40.0, "threshold": 40}
    flags = await stored_flags(redis_client, "bot-1")
    assert flags is not None and set(flags) == {"bot_clicks"}

    async def human_done() -> bool:
        return await stored_flags(redis_client, "human-1") == {}

    await eventually(human_done)
    status, view = await worker.get("/users/bot-1")
    assert status == 200 and [f["rule"] for f in view["risk"]["flags"]] == ["bot_clicks"]

    # A producer resending the same events (new offsets, same ids): nothing is counted again.
    await produce(brokers, names.input, bot, key=by_user)
    # An hour and more after the last click, the next event clears the flag.
    await produce(brokers, names.input, [click("bot-1", 99, START + 44_000 + HOUR)], key=by_user)

    def cleared(g: list[Consumed]) -> bool:
        return any(e["status"] == "cleared" for e in flags_of(g, "bot-1"))

    got = await read_topic(brokers, names.risk, cleared, 90)
    events = flags_of(got, "bot-1")
    assert [(e["rule"], e["status"]) for e in events] == [
        ("bot_clicks", "opened"),
        ("bot_clicks", "cleared"),
    ]
    assert events[1]["cleared_at"] == START + 44_000 + HOUR
    validate_output("risk_flag", events[1])
    assert await stored_flags(redis_client, "bot-1") == {}
    assert flags_of(got, "human-1") == []
    worker.stop()


async def test_redelivered_offsets_do_not_flag_twice_on_a_real_redis(redis_url: str) -> None:
    rt = runtime(redis_url)
    await rt.store.load_scripts()
    batch = [
        Record(InputPartition("in", 0), i, click("bot-2", i, START + i * 1000)) for i in range(45)
    ]
    first = await rt.updater.process(batch)
    assert [c.rule for c in first.changes("risk_flag")] == ["bot_clicks"]
    again = await rt.updater.process(batch)
    assert again.changes("risk_flag") == [] and again.fenced == 45
    other = runtime(redis_url)  # a restarted worker reads the fences and state from Redis
    redelivered = await other.updater.process(batch)
    assert redelivered.changes("risk_flag") == [] and redelivered.fenced == 45
    raw = await other.store.client.hget(keys.profile("bot-2"), "rk")
    assert raw is not None and orjson.loads(raw)["flags"]["bot_clicks"]["hits"] == 6
    await other.store.close()
    await rt.store.close()


def test_produce_plants_attacks_into_a_history_only_when_asked(tmp_path: Path) -> None:
    def produce_to(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        args = ["produce", "--history-days", "3", "--users", "40", "--out", str(path), *extra]
        return subprocess.run(
            [sys.executable, "-m", "stream", *args],
            cwd=ROOT,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=300,
        )

    planted, plain = tmp_path / "planted.jsonl", tmp_path / "plain.jsonl"
    done = produce_to(planted, "--attacks", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    said = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("planted")]
    assert {"bot", "card_testing", "review_spam"} <= set(said)
    assert produce_to(plain).returncode == 0
    attacks = [e for e in read_jsonl(planted) if e["event_id"].startswith("atk-")]
    assert attacks and not any(e["event_id"].startswith("atk-") for e in read_jsonl(plain))
    for event in attacks:  # each passes the input contract, as the worker's ingest checks it
        checked = decode(orjson.dumps(event), Limits(), int(event["ts"]))
        assert not isinstance(checked, Rejected), (checked, event)
