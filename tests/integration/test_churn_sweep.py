"""The churn sweep reads only due users, and a restarted worker does not announce again."""

from __future__ import annotations

from typing import Any

import pytest

from profiles.churn.tracker import ChurnChange
from profiles.core.profile import Record
from stream.settings import Settings
from stream.worker.runtime import Runtime

pytestmark = pytest.mark.integration
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
    settings = Settings(
        redis_url=redis_url, embeddings=False, segments=False, partitions=2, churn_clock="event"
    )
    return Runtime(settings)


async def test_sweep_cost_follows_due_users_and_restart_does_not_repeat(redis_url: str) -> None:
    first = runtime(redis_url)
    await first.store.load_scripts()
    quiet = [click(1, f"q{i}", 29) for i in range(97)]  # active lately: not due at day 30
    silent = [click(1, f"s{i}", 0) for i in range(3)]  # silent for 30 days: due
    await first.updater.process([Record("in:0", i, e) for i, e in enumerate(quiet + silent)])

    loaded: list[str] = []
    original = first.store.load

    async def counting_load(users: Any, items: Any) -> Any:
        loaded.extend(users)
        return await original(users, items)

    first.store.load = counting_load  # type: ignore[method-assign]
    first.watermark_ms = START + 30 * DAY
    changes = await first.sweep_churn({0, 1}, announced)
    assert sorted(loaded) == ["s0", "s1", "s2"]  # the sweep never touched the 97 others
    assert sorted(c.profile.user_id for c in changes) == ["s0", "s1", "s2"]
    assert {c.risk.level for c in changes} == {"high"}
    await first.store.close()

    again = runtime(redis_url)  # a restarted worker on the same Redis
    again.watermark_ms = START + 31 * DAY
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
    records = [Record("in:0", 0, click(1, "gone", 0)), Record("in:0", 1, erase)]
    await rt.updater.process(records)
    partition = owner("gone", 2)
    due = keys.churn_due(partition)
    assert await rt.store.client.zscore(due, "gone") is None  # the erasure cleaned it
    await rt.store.client.zadd(due, {"gone": START})  # what the racing sweep left behind
    rt.watermark_ms = START + 30 * DAY
    assert await rt.sweep_churn({0, 1}, announced) == []
    assert await rt.store.client.zscore(due, "gone") is None
    await rt.store.close()


async def test_a_failed_announcement_stores_nothing_and_the_next_sweep_sends_it(
    redis_url: str,
) -> None:
    """Send first, then save: before, the new level was stored first, and a broker error at
    the send lost that churn_risk event for good."""
    from stream.worker.retry import KafkaOutage

    rt = runtime(redis_url)
    await rt.store.load_scripts()
    await rt.updater.process([Record("in:0", 0, click(1, "s0", 0))])
    rt.watermark_ms = START + 30 * DAY

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
