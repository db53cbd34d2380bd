"""Customer value through the real updater on a real Redis: the churn refit fits the value
model and stores it beside its own, customers get tiers and ``value_changed``, another worker
reads the fit, an erasure removes the state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from profiles.churn.tracker import ChurnChange
from profiles.core.ownership import owner
from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.redis import keys
from profiles.redis.client import async_client
from profiles.value.scorer import ValueChange, value_event
from schemas.validate import validate_output
from tests.integration.harness import Consumed, Names, Worker, produce, read_topic
from tests.integration.oracle import eventually
from tests.integration.test_churn_sweep import runtime

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "cluster"])
def redis_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """Each test twice: on one Redis, and on a 3-master, 3-replica Redis Cluster."""
    return redis_url if request.param == "redis" else str(request.getfixturevalue("cluster_url"))


DAY = 86_400_000
START = 1_767_225_600_000


def purchase(n: int, user: str, day: float, amount: float) -> dict[str, Any]:
    return {
        "event_id": f"{user}-p{n}",
        "type": "purchase",
        "schema_version": 1,
        "user_id": user,
        "ts": START + int(day * DAY),
        "order_id": f"{user}-o{n}",
        "currency": "USD",
        "amount": amount,
        "items": [{"product_id": "p1", "quantity": 1, "price": amount, "title": "Tea"}],
    }


async def announced(changes: list[ChurnChange]) -> None:
    """The churn sweep's sends (not under test here)."""


async def test_refit_fits_value_and_customers_get_tiers(redis_url: str) -> None:
    rt = runtime(redis_url)
    await rt.store.load_scripts()
    assert rt.value is not None
    events = [
        purchase(k, f"c{i}", (i % 7) + k * (3 + i % 11), 10.0 + 7 * (i % 13) + k)
        for i in range(60)
        for k in range(1 + i % 5)
    ]
    events.sort(key=lambda e: int(e["ts"]))
    records = [Record(InputPartition("in", 0), i, e) for i, e in enumerate(events)]
    first = await rt.updater.process(records)
    assert first.changes("value_changed") == []  # no fit yet: no tier
    before = orjson.loads(await rt.store.client.hget(keys.profile("c4"), "cv"))
    assert before["tier"] is None and before["expected"] == {}

    rt.observer.watermark_ms = START + 60 * DAY
    params = await rt.fit_churn()  # one refit: the MBG/NBD and the value model
    assert params is not None
    stored = orjson.loads(await rt.store.client.get(keys.VALUE_PARAMS))
    assert stored["customers"] == 60 and stored["repeat_buyers"] == 48
    assert stored["gg"] is not None and stored["rfm"] is not None
    assert rt.value.fit is not None and rt.value.fit.to_dict() == stored

    # New purchases are scored with both fits; every customer's first tier is announced.
    more = [purchase(9, f"c{i}", 61, 25.0) for i in range(60)]
    start = len(records)
    result = await rt.updater.process(
        [Record(InputPartition("in", 0), start + i, e) for i, e in enumerate(more)]
    )
    changes = result.changes("value_changed")
    assert len(changes) == 60
    for change in changes:
        validate_output("value_changed", value_event(change, 1))
    state = orjson.loads(await rt.store.client.hget(keys.profile("c4"), "cv"))
    assert state["tier"] in {"champions", "loyal"}  # five orders, just now
    assert set(state["expected"]) == {"90", "365"}
    assert 0 < state["expected"]["90"]["purchases"] < state["expected"]["365"]["purchases"]
    assert state["model_version"] == rt.value.version()
    redelivered = await rt.updater.process(
        [Record(InputPartition("in", 0), start + i, e) for i, e in enumerate(more)]
    )
    assert redelivered.changes("value_changed") == []  # fenced: nothing announced again

    # Time alone moves tiers: every customer is on the due index at the time its R score may
    # fall; a sweep far later re-scores them, announces the moves and stores the states.
    due = await rt.store.client.zscore(keys.value_due(owner("c4", 2)), "c4")
    assert due == state["next_check_ms"] > START + 61 * DAY
    rt.observer.watermark_ms = START + 400 * DAY
    announced_tiers: list[ValueChange] = []

    async def collect(found: list[ValueChange]) -> None:
        announced_tiers.extend(found)

    await rt.sweep_churn({0, 1}, announced)
    moved = await rt.sweep_value({0, 1}, collect)
    assert moved == announced_tiers and {c.profile.user_id for c in moved} >= {"c4"}
    assert all(c.previous is not None and c.state["tier"] != c.previous for c in moved)
    for change in moved:
        validate_output("value_changed", value_event(change, 1))
    swept = orjson.loads(await rt.store.client.hget(keys.profile("c4"), "cv"))
    assert swept["tier"] in {"cannot_lose", "at_risk", "hibernating", "lost"}
    assert swept["recency_days"] > 300 and swept["as_of"] == START + 400 * DAY
    assert await rt.sweep_value({0, 1}, collect) == []  # nothing due again yet

    # Another worker reads the stored fit at its first sweep.
    other = runtime(redis_url)
    assert other.value is not None and other.value.fit is None
    other.observer.watermark_ms = START + 61 * DAY
    await other.sweep_churn({0, 1}, announced)
    assert other.value.fit == rt.value.fit
    await other.store.close()

    # The erasure deletes the hash, value state included.
    erase = {
        "event_id": "c4-erase",
        "type": "user_erasure",
        "schema_version": 1,
        "user_id": "c4",
        "ts": START + 62 * DAY,
        "requested_by": "privacy-desk",
    }
    gone = await rt.updater.process([Record(InputPartition("in", 0), 10_000, erase)])
    assert gone.erased == ["c4"]
    left = await rt.store.client.hget(keys.profile("c4"), "cv")
    exists = await rt.store.client.exists(keys.profile("c4"))
    still_due = await rt.store.client.zscore(keys.value_due(owner("c4", 2)), "c4")
    await rt.store.close()
    assert left is None and exists == 0 and still_due is None


async def test_through_the_worker_tiers_are_announced_after_the_refit(
    worker_env: dict[str, str], brokers: str, names: Names, tmp_path: Path
) -> None:
    """Events in through Kafka; the worker's refit fits the value model; the next purchases
    get tiers, in Redis and as `value_changed` on the value topic (valid, keyed by user)."""
    env = {**worker_env, "RTP_CHURN_FIT_S": "3", "RTP_CHURN_CLOCK": "event"}
    first = [
        purchase(k, f"w{i}", (i % 7) + k * (3 + i % 11), 10.0 + 7 * (i % 13) + k)
        for i in range(60)
        for k in range(1 + i % 5)
    ]
    later = [purchase(9, f"w{i}", 61, 25.0) for i in range(60)]
    proc = Worker(env, tmp_path / "worker.log").start()
    client = async_client(env["RTP_REDIS_URL"])
    try:
        await proc.wait_ready(timeout=120)
        await produce(brokers, names.input, sorted(first, key=lambda e: int(e["ts"])), key=by_user)

        async def fitted() -> bool:
            return bool(await client.exists(keys.VALUE_PARAMS))

        await eventually(fitted, timeout=120)
        await produce(brokers, names.input, later, key=by_user)

        def all_tiered(got: list[Consumed]) -> bool:
            return len({m.key for m in got if m.value is not None}) >= 60

        out = await read_topic(brokers, names.value, all_tiered, timeout=120)
    finally:
        proc.stop()
    events = [orjson.loads(m.value) for m in out if m.value is not None]
    for m, event in zip([m for m in out if m.value is not None], events, strict=True):
        validate_output("value_changed", event)
        assert m.key is not None and m.key.decode() == event["user_id"]
    tiers = {e["user_id"]: e["tier"] for e in events}
    assert set(tiers) == {f"w{i}" for i in range(60)}
    stored = orjson.loads(await client.hget(keys.profile("w4"), "cv"))
    await client.aclose()
    assert stored["tier"] == tiers["w4"] and stored["model_version"].startswith("value1:")


def by_user(event: dict[str, Any]) -> bytes:
    return str(event["user_id"]).encode()
