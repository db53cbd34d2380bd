"""Churn risk through the real worker: time passing raises it, a comeback lowers it."""

from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis

from profiles.redis import keys
from schemas.validate import validate_output
from tests.integration.harness import Consumed, Names, Worker, produce, read_topic
from tests.integration.oracle import eventually

pytestmark = pytest.mark.integration
DAY = 86_400_000
START = 1_767_225_600_000


@pytest.fixture
def worker_env(worker_env: dict[str, str], names: Names) -> dict[str, str]:
    return {
        **worker_env,
        "RTP_CHURN_CLOCK": "event",
        "RTP_CHURN_SWEEP_S": "1",
        "RTP_CHURN_TOPIC": f"churn-{names.tag}",
        "RTP_LATENESS_S": str(400 * 86400),
    }


def event(n: int, kind: str, user: str, day: float, **fields: object) -> dict[str, object]:
    return {
        "event_id": f"{user}-{n}",
        "type": kind,
        "schema_version": 1,
        "user_id": user,
        "ts": START + int(day * DAY),
        **fields,
    }


def purchase(n: int, user: str, day: float) -> dict[str, object]:
    return event(
        n,
        "purchase",
        user,
        day,
        order_id=f"o{n}",
        currency="CNY",
        amount=10.0,
        items=[{"product_id": "p1", "quantity": 1, "price": 10.0, "title": "Tea"}],
    )


async def test_silence_raises_risk_by_sweep_and_a_comeback_recovers(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    topic = f"churn-{names.tag}"
    await produce(
        brokers,
        names.input,
        [purchase(1, "cara", 0), event(2, "click", "cara", 1, product_id="p1", title="Tea")],
    )
    await eventually(lambda: _has(redis_client, "cara"))
    state = orjson.loads(await redis_client.hget(keys.profile("cara"), "c"))
    assert state["level"] == "low" and state["next_check_ms"] > START + DAY
    # Another user's event moves the event-time watermark 90 days on: time passes for cara.
    await produce(brokers, names.input, [event(1, "search", "zed", 91, query="x")])

    def high(got: list[Consumed]) -> bool:
        return any(m.key == b"cara" and b'"high"' in (m.value or b"") for m in got)

    out = await read_topic(brokers, topic, high, timeout=60)
    # Cara comes back: one recovery event.
    await produce(
        brokers, names.input, [event(3, "click", "cara", 91.5, product_id="p1", title="Tea")]
    )

    def recovered(got: list[Consumed]) -> bool:
        levels = [orjson.loads(m.value)["level"] for m in got if m.key == b"cara" and m.value]
        return levels[-1:] == ["low"]

    out = await read_topic(brokers, topic, recovered, timeout=60)
    cara = [orjson.loads(m.value) for m in out if m.key == b"cara" and m.value]
    assert [e["level"] for e in cara] == ["high", "low"]  # no flood, no duplicates
    for payload in cara:
        validate_output("churn_risk", payload)
    assert cara[0]["as_of"] >= START + 91 * DAY and cara[0]["last_activity_ts"] == START + DAY
    assert cara[0]["reason"]
    stored = orjson.loads(await redis_client.hget(keys.profile("cara"), "c"))
    assert stored["level"] == "low"


async def _has(client: aioredis.Redis, user: str) -> bool:
    return await client.hget(keys.profile(user), "c") is not None


async def test_api_scores_churn_as_of_any_time(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    await produce(brokers, names.input, [purchase(1, "ivy", 0)])
    await eventually(lambda: _has(redis_client, "ivy"))
    risks = []
    for day in (1, 10, 30, 120):
        status, body = await worker.get(f"/users/ivy?as_of={START + day * DAY}")
        assert status == 200
        risks.append(body["churn"]["risk"])
    assert risks == sorted(risks) and risks[0] < risks[-1]  # monotone without events
    assert (await worker.get("/users/ivy?as_of=yesterday"))[0] == 400
