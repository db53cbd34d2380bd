"""Live answers on the real broker: a pushed list read from the recommendations topic is
answered on the input topic with a click carrying its id and a purchase, once it is due;
tombstones and junk on the topic are skipped."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from stream.devtools.answer import answer_lists
from stream.settings import Settings
from stream.simulation.generator import TrafficConfig, TrafficGenerator
from stream.simulation.respond import Responder, ResponseConfig
from tests.integration.harness import Consumed, Names, produce, read_topic

pytestmark = pytest.mark.integration

START = 1_767_225_600_000


async def test_pushed_lists_are_answered_on_the_input_topic(
    worker_env: dict[str, str], brokers: str, names: Names
) -> None:
    gen = TrafficGenerator(TrafficConfig(users=5, products=80, seed=2))
    user = gen.user_ids()[0]
    liked = next(p["product_id"] for p in gen.catalog() if gen.interested(user, p["product_id"]))
    rec_id = f"{user}:4:recs"
    rec = {
        "type": "recommendation",
        "event_id": rec_id,
        "recommendation_id": rec_id,
        "user_id": user,
        "ts": START,
        "items": [{"product_id": liked, "rank": 1}],
    }
    await produce(brokers, names.recs, [b"junk", rec])
    await produce(brokers, names.input, [b"marker"])  # the topic exists before any answer
    settings = Settings.from_env(worker_env)
    responder = Responder(gen, ResponseConfig(uplift=1.0, delay_s=(1.0, 1.0)))
    stop = asyncio.Event()
    clock = [START]  # wall clock stand-in: nothing is due until it moves
    task = asyncio.create_task(
        answer_lists(settings, responder, stop, from_start=True, now_ms=lambda: clock[0])
    )
    try:
        await asyncio.sleep(3)
        early = await read_topic(brokers, names.input, lambda g: len(g) >= 1, timeout=30)
        assert [m.value for m in early] == [b"marker"]  # nothing due yet
        clock[0] = START + 10 * 60_000

        def both(log: list[Consumed]) -> bool:
            return len(log) >= 3

        log = await read_topic(brokers, names.input, both, timeout=60)
    finally:
        stop.set()
        sent = await asyncio.wait_for(task, timeout=30)
    assert sent == 2
    answers = log[1:]
    events = [orjson.loads(m.value) for m in answers if m.value]
    assert [e["type"] for e in events] == ["click", "purchase"]
    assert events[0]["recommendation_id"] == rec_id and events[0]["ts"] == START + 1000
    assert all(m.key == user.encode() for m in answers)
    assert events[1]["items"][0]["product_id"] == liked
