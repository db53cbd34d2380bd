"""The churn sweep reads only due users, and a restarted worker does not announce again."""

from __future__ import annotations

from typing import Any

import pytest

from profiles.churn.tracker import ChurnChange
from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from stream.settings import Settings
from stream.worker.runtime import Runtime

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "cluster"])
def redis_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """Each test twice: on one Redis, and on a 3-master, 3-replica Redis Cluster."""
    return redis_url if request.param == "redis" else str(request.getfixturevalue("cluster_url"))


DAY = 86_400_000
START = 1_767_225_600_000


def click(n: int, user: str, day: float) -> dict[str, Any]:
    return {
        "event_id": f"{user}-{n}",
        "type": "click",
        "schema_version": 1,
        "user_id": user,
        "ts": START + int(day * DAY),
        "product_id": "p1",
        "title": "Tea",
    }


async def announced(changes: list[ChurnChange]) -> None:
    """The sends of a sweep that reached the broker."""


def runtime(redis_url: str) -> Runtime:
    settings = Settings.from_env(
        {
            "RTP_REDIS_URL": redis_url,
            "RTP_EMBEDDINGS": "false",
            "RTP_SEGMENTS": "false",
            "RTP_PARTITIONS": "2",
            "RTP_CHURN_CLOCK": "event",
        }
    )
    return Runtime(settings)


async def test_sweep_cost_follows_due_users_and_restart_does_not_repeat(redis_url: str) -> None:
    first = runtime(redis_url)
    await first.store.load_scripts()
    quiet = [click(1, f"q{i}", 29) for i in range(97)]  # active lately: not due at day 30
    silent = [click(1, f"s{i}", 0) for i in range(3)]  # silent for 30 days: due
    await first.updater.process(
        [Record(InputPartition("in", 0), i, e) for i, e in enumerate(quiet + silent)]
    )

    loaded: list[str] = []
    original = first.store.load

    async def counting_load(users: Any, items: Any) -> Any:
        loaded.extend(users)
        return await original(users, items)

    first.store.load = counting_load  # type: ignore[method-assign]
    first.observer.watermark_ms = START + 30 * DAY
    changes = await first.sweep_churn({0, 1}, announced)
    assert sorted(loaded) == ["s0", "s1", "s2"]  # the sweep never touched the 97 others
    assert sorted(c.profile.user_id for c in changes) == ["s0", "s1", "s2"]
    assert {c.risk.level for c in changes} == {"high"}
    await first.store.close()

    again = runtime(redis_url)  # a restarted worker on the same Redis
    again.observer.watermark_ms = START + 31 * DAY
    assert await again.sweep_churn({0, 1}, announced) == []
    await again.store.close()


async def test_an_erased_user_left_in_the_due_index_is_dropped_by_the_sweep(
    redis_url: str,
) -> None:
    """A sweep that raced an erasure re-adds the user to the due index; the next one cleans up."""
    from profiles.core.ownership import owner
    from profiles.redis import keys

    rt = runtime(redis_url)
    await rt.store.load_scripts()
    erase = {
        "event_id": "gone-2",
        "type": "user_erasure",
        "schema_version": 1,
        "user_id": "gone",
        "ts": START + DAY,
        "requested_by": "privacy-desk",
    }
    records = [
        Record(InputPartition("in", 0), 0, click(1, "gone", 0)),
        Record(InputPartition("in", 0), 1, erase),
    ]
    await rt.updater.process(records)
    partition = owner("gone", 2)
    due = keys.churn_due(partition)
    assert await rt.store.client.zscore(due, "gone") is None  # the erasure cleaned it
    await rt.store.client.zadd(due, {"gone": START})  # what the racing sweep left behind
    rt.observer.watermark_ms = START + 30 * DAY
    assert await rt.sweep_churn({0, 1}, announced) == []
    assert await rt.store.client.zscore(due, "gone") is None
    await rt.store.close()


def purchase(n: int, user: str, day: float) -> dict[str, Any]:
    return {
        "event_id": f"{user}-p{n}",
        "type": "purchase",
        "schema_version": 1,
        "user_id": user,
        "ts": START + int(day * DAY),
        "order_id": f"{user}-o{n}",
        "currency": "CNY",
        "amount": 10.0,
        "items": [{"product_id": "p1", "quantity": 1, "price": 10.0, "title": "Tea"}],
    }


async def test_after_a_fit_every_customer_is_rechecked_also_those_already_high(
    redis_url: str,
) -> None:
    import orjson

    from profiles.churn.risk import level_with_hysteresis, score
    from profiles.redis import keys

    rt = runtime(redis_url)
    await rt.store.load_scripts()
    await rt.updater.process(shop())
    # Before any fit "h" is scored by engagement: silent for 60 days, "high", and then out of
    # the due index (nothing more can happen to it without events).
    rt.observer.watermark_ms = START + 60 * DAY
    await rt.sweep_churn({0, 1}, announced)
    h = await rt.store.get("h")
    assert h is not None and h.churn is not None and h.churn["level"] == "high"
    assert h.churn["model_version"].endswith(":engagement")
    for partition in (0, 1):
        assert await rt.store.client.zscore(keys.churn_due(partition), "h") is None
    params = await rt.fit_churn()
    assert params is not None
    await rt.sweep_churn({0, 1}, announced)
    # The new fit reached "h" although the due index had dropped it: its stored state is the
    # model's, and its level agrees with its own risk.
    after = await rt.store.get("h")
    assert after is not None and after.churn is not None
    assert ":mbgnbd-" in after.churn["model_version"]
    assert rt.churn is not None
    fresh = score(after, rt.observer.watermark_ms, params, rt.churn.config)
    assert after.churn["risk"] == round(fresh.risk, 6)
    assert after.churn["level"] == level_with_hysteresis("high", fresh.risk, rt.churn.config)
    stored = orjson.loads(await rt.store.client.hget(keys.profile("h"), "c"))
    await rt.store.close()  # before asserting: a leaked connection fails a later test
    assert stored == after.churn


async def test_a_failed_announcement_stores_nothing_and_the_next_sweep_sends_it(
    redis_url: str,
) -> None:
    """Send first, then save: before, the new level was stored first, and a broker error at
    the send lost that churn_risk event for good."""
    from stream.worker.retry import KafkaOutage

    rt = runtime(redis_url)
    await rt.store.load_scripts()
    await rt.updater.process([Record(InputPartition("in", 0), 0, click(1, "s0", 0))])
    rt.observer.watermark_ms = START + 30 * DAY

    async def broker_down(changes: list[ChurnChange]) -> None:
        raise KafkaOutage("KafkaConnectionError: down")

    with pytest.raises(KafkaOutage):
        await rt.sweep_churn({0, 1}, broker_down)
    sent: list[str] = []

    async def broker_up(changes: list[ChurnChange]) -> None:
        sent.extend(c.profile.user_id for c in changes)

    changes = await rt.sweep_churn({0, 1}, broker_up)
    assert sent == ["s0"] and [c.risk.level for c in changes] == ["high"]
    assert await rt.sweep_churn({0, 1}, broker_up) == []  # stored after the send: once
    assert sent == ["s0"]
    await rt.store.close()


def shop() -> list[Record]:
    """Sixty customers with different cadences (enough to fit), and "h", who bought once."""
    events = [
        purchase(k, f"c{i}", (i % 7) + k * (3 + i % 11))
        for i in range(60)
        for k in range(1 + i % 5)
    ]
    events.append(purchase(0, "h", 0))
    events.sort(key=lambda e: int(e["ts"]))
    return [Record(InputPartition("in", 0), i, e) for i, e in enumerate(events)]


async def test_churn_fit_command_refits_under_a_held_lock_and_the_workers_use_it(
    redis_url: str,
) -> None:
    import orjson

    from profiles.redis import keys
    from stream.cli.churn import fit

    rt = runtime(redis_url)
    await rt.store.load_scripts()
    records = shop()
    await rt.updater.process(records)
    latest = max(int(r.event["ts"]) for r in records)
    # A worker's fit holds the lock for this interval: its timer skips, the command does not.
    assert await rt.churn_store.fit_lock(600)
    assert await rt.fit_churn() is None
    assert await rt.churn_store.load_model() is None
    out = await fit(rt.settings, None)
    assert out["stored"] and ":mbgnbd-" in out["model_version"]
    state = orjson.loads(await rt.store.client.get(keys.CHURN_PARAMS))
    assert state["as_of"] == latest and state["customers"] == 61  # event clock: latest event
    # The next sweep loads it and re-checks every customer with it.
    rt.observer.watermark_ms = START + 60 * DAY
    await rt.sweep_churn({0, 1}, announced)
    h = await rt.store.get("h")
    await rt.store.close()
    assert h is not None and h.churn is not None
    assert h.churn["model_version"] == out["model_version"]


async def test_a_worker_fits_at_start_up_as_of_the_latest_stored_event(redis_url: str) -> None:
    import orjson

    from profiles.redis import keys

    first = runtime(redis_url)
    await first.store.load_scripts()
    records = shop()
    await first.updater.process(records)
    await first.store.close()
    # A restarted worker on the event clock has seen no event yet (watermark 0): its start-up
    # fit is as of the latest event of the stored customers, not of 1970.
    rt = runtime(redis_url)
    assert rt.observer.watermark_ms == 0
    params = await rt.fit_churn()
    state = orjson.loads(await rt.store.client.get(keys.CHURN_PARAMS))
    await rt.store.close()
    assert params is not None and rt.churn is not None and rt.churn.params == params
    assert state["as_of"] == max(int(r.event["ts"]) for r in records)
