"""Recommendations through the real worker, model, broker and Redis: pushed and pulled."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.validate import validate_output
from tests.integration.harness import Consumed, Names, Worker, produce, read_topic
from tests.integration.oracle import eventually
from tests.integration.test_ops import scrape

pytestmark = pytest.mark.integration
START = 1_767_225_600_000
SEC = 1000
CATALOG = {
    "tea-1": ("Longjing Green Tea 250g", ["Food", "Tea"]),
    "tea-2": ("Jasmine Green Tea Bags", ["Food", "Tea"]),
    "tea-3": ("Oolong Tea Gift Box", ["Food", "Tea"]),
    "tea-4": ("Porcelain Tea Pot Set", ["Home", "Tea"]),
    "pen-1": ("Gel Ink Pen Black 12 Pack", ["Office", "Writing"]),
    "pen-2": ("Fountain Pen Gift Set", ["Office", "Writing"]),
    "pad-1": ("A5 Lined Notebook", ["Office", "Paper"]),
    "shoe-1": ("Trail Running Shoes Men", ["Sports", "Shoes"]),
    "shoe-2": ("Canvas Sneakers Women", ["Fashion", "Shoes"]),
    "shoe-3": ("Hiking Boots Waterproof", ["Sports", "Shoes"]),
}


def product(pid: str, ts: int, **extra: Any) -> dict[str, Any]:
    title, category = CATALOG[pid]
    return {
        "event_id": f"cat-{pid}-{ts}",
        "type": "product",
        "schema_version": 1,
        "user_id": "catalog",
        "ts": ts,
        "product_id": pid,
        "title": title,
        "category": category,
        "price": 10.0,
        "currency": "CNY",
        **extra,
    }


def click(user: str, n: int, pid: str, ts: int) -> dict[str, Any]:
    return {
        "event_id": f"{user}-{n}",
        "type": "click",
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
        "product_id": pid,
    }


def purchase(user: str, n: int, pid: str, ts: int) -> dict[str, Any]:
    return {
        "event_id": f"{user}-{n}",
        "type": "purchase",
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
        "order_id": f"{user}-o{n}",
        "currency": "CNY",
        "amount": 10.0,
        "items": [{"product_id": pid, "quantity": 1, "price": 10.0}],
    }


@pytest.fixture
async def recs_worker(worker_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Worker]:
    env = {**worker_env, "RTP_CATALOG_POLL_S": "0.3", "RTP_RECS_INTERVAL_S": "60"}
    proc = Worker(env, tmp_path / "worker.log").start()
    try:
        await proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _recs_of(log: list[Consumed], user: str) -> list[dict[str, Any]]:
    return [orjson.loads(m.value) for m in log if m.key == user.encode() and m.value]


async def test_recommendations_pushed_and_pulled(
    recs_worker: Worker, brokers: str, names: Names
) -> None:
    worker = recs_worker

    async def index_size() -> int:
        _, stats = await worker.get("/stats")
        return int(stats["recommendations"]["items"])

    async def has_items(n: int) -> bool:
        return await index_size() == n

    await produce(brokers, names.input, [product(pid, START) for pid in CATALOG])
    await eventually(lambda: has_items(len(CATALOG)))

    # Many users click the pens: pen-1 becomes the most popular item.
    crowd = [
        click(f"fan{i}", j, "pen-1" if j < 2 else "pad-1", START + j * SEC)
        for i in range(8)  # pen-1: 16 clicks, pad-1: 8 (ann's tea-1 gets 1 click + 1 purchase)
        for j in range(3)
    ]
    # Ann likes tea; later she buys one, after the 60 s throttle interval.
    ann = [
        click("ann", i, pid, START + i * SEC) for i, pid in enumerate(["tea-1", "tea-2", "tea-3"])
    ]
    key = lambda e: e["user_id"].encode()  # noqa: E731
    await produce(brokers, names.input, crowd + ann, key=key)
    await read_topic(brokers, names.recs, lambda log: bool(_recs_of(log, "ann")), timeout=120)
    await produce(brokers, names.input, [purchase("ann", 9, "tea-1", START + 120 * SEC)], key=key)

    def ann_bought(log: list[Consumed]) -> bool:
        return any(e["trigger"] == "purchase" for e in _recs_of(log, "ann"))

    log = await read_topic(brokers, names.recs, ann_bought, timeout=120)
    for message in log:
        assert message.value is not None
        validate_output("recommendation", orjson.loads(message.value))
    pushed = _recs_of(log, "ann")
    assert pushed[0]["trigger"] == "first"
    assert [e["trigger"] for e in pushed].count("purchase") == 1
    last = pushed[-1]
    listed = [item["product_id"] for item in last["items"]]
    assert "tea-1" not in listed  # bought
    assert len(listed) == 10 - 1 or len(listed) == 10  # k = 10 from 9 buyable items
    assert set(listed[:3]) <= {"tea-2", "tea-3", "tea-4"}  # her interest first
    assert last["items"][0]["reason"]["source"] in {"interest", "long_term", "tags"}

    # Pull: the same user with another k; bad k; unknown user.
    status, body = await worker.get("/users/ann/recommendations?k=3")
    assert status == 200, body
    assert [i["rank"] for i in body["items"]] == [1, 2, 3]
    assert "tea-1" not in [i["product_id"] for i in body["items"]]
    assert body["last_pushed"]["trigger"] == "purchase"
    assert body["last_pushed"]["items"] == listed
    # The CLI asks the worker: the same list.
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        *(
            "-m",
            "stream",
            "recommend",
            "ann",
            "--k",
            "3",
            "--url",
            f"http://127.0.0.1:{worker.port}",
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=worker.env,
    )
    out, err = await cli.communicate()
    assert cli.returncode == 0, err.decode()
    printed = orjson.loads(out)
    assert [i["product_id"] for i in printed["items"]] == [i["product_id"] for i in body["items"]]
    assert (await worker.get("/users/ann/recommendations?k=zero"))[0] == 400
    assert (await worker.get("/users/nobody/recommendations"))[0] == 404

    # A cold user (one click) gets the shared popularity: the crowd's pens first.
    await produce(brokers, names.input, [click("bob", 1, "shoe-1", START + 5 * SEC)])

    seen: list[Any] = []

    async def bob_gets_pens() -> bool:
        status, body = await worker.get("/users/bob/recommendations?k=2")
        seen[:] = [status, body]
        return status == 200 and [i["product_id"] for i in body["items"]] == ["pen-1", "pad-1"]

    try:
        await eventually(bob_gets_pens, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"bob's list: {seen}") from exc

    # A discontinued item leaves every list.
    await produce(brokers, names.input, [product("tea-2", START + SEC, discontinued=True)])
    await eventually(lambda: has_items(len(CATALOG) - 1))
    status, body = await worker.get("/users/ann/recommendations?k=20")
    assert status == 200
    assert {i["product_id"] for i in body["items"]} == set(CATALOG) - {"tea-1", "tea-2"}

    # A product named (title + category) only by a tracking event joins the index too.
    kettle = {
        **click("cat", 1, "kettle-1", START + 7 * SEC),
        "title": "Electric Glass Kettle",
        "category": ["Home", "Tea"],
    }
    await produce(brokers, names.input, [kettle])
    await eventually(lambda: has_items(len(CATALOG)))

    metrics = await scrape(worker)
    sent = metrics[("rtp_emitted_total", (("type", "recommendation"),))]
    assert sent >= len(_recs_of(log, "ann")) + 8  # ann's lists and each fan's first
    assert metrics[("rtp_item_index_items", ())] == len(CATALOG)
    assert metrics[("rtp_recommend_seconds_count", ())] >= 1
