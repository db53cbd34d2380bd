"""Experiments through the real worker, broker and Redis: stable arms, no pushed list for the
holdout, the arm in events, conversions counted once under producer retries and redelivery."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.experiments.assign import assign, parse_arms
from profiles.redis import keys
from profiles.redis.experiments import experiment_totals
from schemas.validate import validate_output
from stream.settings import Settings
from stream.worker.runtime import Runtime
from tests.integration.harness import Consumed, Names, Worker, produce, read_topic
from tests.integration.oracle import eventually
from tests.integration.test_ops import scrape
from tests.integration.test_recommendations import CATALOG, START, click, product, purchase

pytestmark = pytest.mark.integration
SEC = 1000
ARMS = "treatment:0.5,holdout:0.5"
EXP = {"RTP_EXPERIMENT": "x1", "RTP_EXPERIMENT_ARMS": ARMS, "RTP_ATTRIBUTION_WINDOW_S": "3600"}


def in_arm(arm: str, prefix: str) -> str:
    arms = parse_arms(ARMS)
    return next(f"{prefix}{i}" for i in range(100) if assign("x1", f"{prefix}{i}", arms) == arm)


@pytest.fixture
async def xp_worker(worker_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Worker]:
    env = {**worker_env, **EXP, "RTP_CATALOG_POLL_S": "0.3", "RTP_RECS_INTERVAL_S": "60"}
    proc = Worker(env, tmp_path / "worker.log").start()
    try:
        await proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def lists_of(log: list[Consumed], user: str) -> list[dict[str, Any]]:
    return [orjson.loads(m.value) for m in log if m.key == user.encode() and m.value]


async def state_of(client: aioredis.Redis, user: str) -> dict[str, Any] | None:
    raw = await client.hget(keys.profile(user), "xp")
    return None if raw is None else dict(orjson.loads(raw))


async def test_arms_holdout_and_conversions_once_through_the_worker(
    xp_worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    treated, held = in_arm("treatment", "t"), in_arm("holdout", "h")
    await produce(brokers, names.input, [product(pid, START) for pid in CATALOG])

    async def indexed() -> bool:
        _, stats = await xp_worker.get("/stats")
        return int(stats["recommendations"]["items"]) == len(CATALOG)

    await eventually(indexed, timeout=120)
    key = lambda e: e["user_id"].encode()  # noqa: E731
    teas = ["tea-1", "tea-2", "tea-3"]
    interest = [
        click(user, i, pid, START + i * SEC)
        for user in (treated, held)
        for i, pid in enumerate(teas)
    ]
    await produce(brokers, names.input, interest, key=key)
    log = await read_topic(brokers, names.recs, lambda g: bool(lists_of(g, treated)), timeout=120)
    (pushed,) = lists_of(log, treated)[:1]
    validate_output("recommendation", pushed)
    assert pushed["arm"] == "treatment" and pushed["experiment"] == "x1"

    async def held_has_a_list() -> bool:
        state = await state_of(redis_client, held)
        return state is not None and bool(state["recs"])

    await eventually(held_has_a_list, timeout=120)  # computed for the holdout, not pushed
    held_state = await state_of(redis_client, held)
    assert held_state is not None and held_state["arm"] == "holdout"
    bought_t = pushed["items"][0]["product_id"]
    bought_h = held_state["recs"][-1][2][0]
    buys = [
        purchase(treated, 10, bought_t, START + 100 * SEC),
        purchase(treated, 11, bought_t, START + 101 * SEC),  # same item again: not twice
        purchase(held, 10, bought_h, START + 100 * SEC),
    ]
    await produce(brokers, names.input, buys, key=key)

    async def counted() -> bool:
        t = await experiment_totals(redis_client, 2)
        return t.get("x1/treatment/conversions", 0) >= 1 and t.get("x1/holdout/conversions", 0) >= 1

    await eventually(counted, timeout=120)
    before = (await xp_worker.stats())["duplicates"]
    await produce(brokers, names.input, interest + buys, key=key)  # a producer retry

    async def seen() -> bool:
        return bool((await xp_worker.stats())["duplicates"] >= before + len(interest + buys))

    await eventually(seen, timeout=120)
    totals = {k: round(v) for k, v in (await experiment_totals(redis_client, 2)).items()}
    assert totals == {
        "x1/treatment/users": 1,
        "x1/treatment/conversions": 1,
        "x1/treatment/converted": 1,
        "x1/holdout/users": 1,
        "x1/holdout/conversions": 1,
        "x1/holdout/converted": 1,
    }
    log = await read_topic(brokers, names.recs, lambda g: True, timeout=30)
    assert lists_of(log, held) == []  # the holdout never got a pushed list
    updates = await read_topic(
        brokers, names.profiles, lambda g: bool(lists_of(g, held)), timeout=60
    )
    described = lists_of(updates, held)[-1]
    validate_output("profile_updated", described)
    assert described["experiment"] == {"name": "x1", "arm": "holdout"}

    # Pulled lists obey the arm too: the holdout sees none of ours.
    status, pulled = await xp_worker.get(f"/users/{held}/recommendations")
    assert status == 200 and pulled["items"] == [] and pulled["held_out"] is True
    assert pulled["experiment"] == {"name": "x1", "arm": "holdout"}
    status, pulled = await xp_worker.get(f"/users/{treated}/recommendations")
    assert status == 200 and pulled["items"] and "held_out" not in pulled
    assert pulled["experiment"] == {"name": "x1", "arm": "treatment"}

    metrics = await scrape(xp_worker)
    assert metrics[("rtp_experiment_total", (("arm", "treatment"), ("count", "conversions")))] == 1
    assert metrics[("rtp_experiment_total", (("arm", "holdout"), ("count", "held")))] >= 1

    # The report command reads the same counters.
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "stream", "experiment", "report", "--json"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=xp_worker.env,
    )
    out, err = await cli.communicate()
    assert cli.returncode == 0, err.decode()
    report = orjson.loads(out[out.index(b"{") :])
    assert report["arms"]["treatment"]["converted"] == 1
    assert report["arms"]["holdout"]["users"] == 1
    status, served = await xp_worker.get("/experiments")
    assert status == 200 and served == report


async def test_a_redelivered_batch_counts_users_once_on_redis(redis_url: str) -> None:
    settings = Settings.from_env(
        {
            "RTP_REDIS_URL": redis_url,
            "RTP_EMBEDDINGS": "false",
            "RTP_SEGMENTS": "false",
            "RTP_PARTITIONS": "2",
            "RTP_CHURN_CLOCK": "event",
            **EXP,
        }
    )
    rt = Runtime(settings)
    await rt.store.load_scripts()
    users = [f"r{i}" for i in range(40)]
    events = [click(u, 1, "tea-1", START + SEC) for u in users]
    records = [Record(InputPartition("in", 0), i, e) for i, e in enumerate(events)]
    await rt.updater.process(records)
    client = rt.store.client
    first = await experiment_totals(client, 2)
    arms = parse_arms(ARMS)
    expect = {a: sum(assign("x1", u, arms) == a for u in users) for a, _ in arms}
    assert {a: round(first.get(f"x1/{a}/users", 0)) for a in expect} == expect
    rt.updater.forget()  # a restarted worker: nothing cached, the same batch again
    await rt.updater.process(records)
    assert await experiment_totals(client, 2) == first
    for user in users[:3]:
        state = await state_of(client, user)
        assert state is not None and state["arm"] == assign("x1", user, arms)
    await rt.store.close()


async def test_a_popularity_control_is_pushed_and_pulled_for_the_holdout(
    worker_env: dict[str, str], brokers: str, names: Names, tmp_path: Path
) -> None:
    env = {
        **worker_env,
        **EXP,
        "RTP_EXPERIMENT_HOLDOUT": "popular",
        "RTP_CATALOG_POLL_S": "0.3",
        "RTP_RECS_INTERVAL_S": "60",
    }
    proc = Worker(env, tmp_path / "worker.log").start()
    try:
        await proc.wait_ready()
        treated, held = in_arm("treatment", "t"), in_arm("holdout", "h")
        await produce(brokers, names.input, [product(pid, START) for pid in CATALOG])

        async def indexed() -> bool:
            _, stats = await proc.get("/stats")
            return int(stats["recommendations"]["items"]) == len(CATALOG)

        await eventually(indexed, timeout=120)
        key = lambda e: e["user_id"].encode()  # noqa: E731
        # Others make "pen-1" the popular item; the two users only look at teas.
        crowd = [click(f"c{i}", 1, "pen-1", START + i) for i in range(5)]
        teas = ["tea-1", "tea-2", "tea-3"]
        interest = [
            click(user, i, pid, START + (10 + i) * SEC)
            for user in (treated, held)
            for i, pid in enumerate(teas)
        ]
        await produce(brokers, names.input, crowd, key=key)

        async def popular_known() -> bool:  # the index polls popularity from Redis
            status, view = await proc.get("/users/c0/recommendations")
            return status == 200 and "pen-1" in [i["product_id"] for i in view["items"]]

        await eventually(popular_known, timeout=120)
        await produce(brokers, names.input, interest, key=key)

        def both(log: list[Consumed]) -> bool:
            return bool(lists_of(log, treated)) and bool(lists_of(log, held))

        log = await read_topic(brokers, names.recs, both, timeout=120)
        control = lists_of(log, held)[0]
        validate_output("recommendation", control)
        assert control["arm"] == "holdout" and control["control"] == "popular"
        assert {i["reason"]["source"] for i in control["items"]} == {"popularity"}
        assert "pen-1" in [i["product_id"] for i in control["items"]]
        personal = lists_of(log, treated)[0]
        assert personal["arm"] == "treatment" and "control" not in personal
        assert {i["reason"]["source"] for i in personal["items"]} != {"popularity"}

        status, pulled = await proc.get(f"/users/{held}/recommendations")
        assert status == 200 and pulled["held_out"] is True and pulled["control"] == "popular"
        assert pulled["items"] and {i["reason"]["source"] for i in pulled["items"]} == {
            "popularity"
        }
    finally:
        proc.stop()
