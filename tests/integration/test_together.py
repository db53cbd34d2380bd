"""Frequently bought together through the real worker, broker and Redis: the pair counts equal
an offline count of the sessions (the per-session cap included), a second consumer group that
reads every input offset again changes nothing, the API and the rules command answer from
them, and the rules match a batch FP-Growth (mlxtend) on the same sessions."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis.asyncio as aioredis
from mlxtend.frequent_patterns import association_rules, fpgrowth
from mlxtend.preprocessing import TransactionEncoder

from profiles.redis import keys
from profiles.redis.catalog import RedisCatalog
from profiles.redis.together import RedisTogether
from schemas.validate import validate_output
from stream.cli.together import category_rules
from stream.settings import Settings
from tests.integration.harness import ROOT, Names, Worker, produce, read_topic
from tests.integration.oracle import eventually

pytestmark = pytest.mark.integration
START = 1_767_225_600_000
MINUTE = 60_000
CAP = 6  # RTP_TOGETHER_MAX_ITEMS
HALF_LIFE_DAYS = 1e6  # no decay to speak of: counts are session counts
# device -> its accessory, planted; the rest is noise
PLANTED = {"phone": "case", "laptop": "mouse", "camera": "sd-card"}
NOISE = [f"n{i}" for i in range(12)]
CATEGORY = {"phone": "Phones", "case": "Phones", "laptop": "Computers", "mouse": "Computers"}


def product(pid: str) -> dict[str, Any]:
    return {
        "event_id": f"cat-{pid}",
        "type": "product",
        "schema_version": 1,
        "user_id": "catalog-service",
        "ts": START,
        "product_id": pid,
        "title": pid.replace("-", " ").title(),
        "category": ["Shop", CATEGORY.get(pid, "Misc")],
        "price": 10.0,
        "currency": "USD",
    }


def traffic(seed: int = 11) -> list[dict[str, Any]]:
    """Users' sessions: clicks, one or two orders; devices bought with their accessory."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    n = 0
    for u in range(40):
        user = f"u{u:03d}"
        t = START + u * 1000
        for s in range(1 + u % 3):
            sid = f"{user}-s{s}"
            basket = rng.sample(NOISE, rng.randint(0, 2))
            device = rng.choice([*PLANTED, None])
            if device is not None:
                basket.append(device)
                if rng.random() < 0.8:
                    basket.append(PLANTED[device])
            for pid in rng.sample([*NOISE, *PLANTED], 3):
                n += 1
                out.append(event(n, "click", user, sid, t, product_id=pid))
                t += MINUTE
            orders = [basket[:2], basket[2:]] if len(basket) > 2 and s % 2 else [basket]
            for items in orders:
                if items:
                    n += 1
                    out.append(order(n, user, sid, t, items))
                    t += MINUTE
            t += 2 * 86_400_000
    # One huge basket: past the cap, only its first CAP items count.
    out.append(order(n + 1, "u999", "big", START, [*NOISE, "phone", "case"]))
    return out


def event(n: int, kind: str, user: str, sid: str, ts: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "type": kind,
        "schema_version": 1,
        "user_id": user,
        "session_id": sid,
        "ts": ts,
        **fields,
    }


def order(n: int, user: str, sid: str, ts: int, items: list[str]) -> dict[str, Any]:
    lines = [{"product_id": p, "quantity": 1, "price": 10.0} for p in items]
    return event(
        n, "purchase", user, sid, ts, order_id=f"o{n}", currency="USD", amount=10.0 * len(items),
        items=lines,
    )  # fmt: skip


def sessions(events: list[dict[str, Any]], kind: str) -> list[list[str]]:
    """The offline count: per (user, session), the first CAP distinct items of the kind."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for e in events:
        if kind == "b" and e["type"] == "purchase":
            pids = [line["product_id"] for line in e["items"]]
        elif kind == "v" and e["type"] in ("click", "add_to_cart"):
            pids = [e["product_id"]]
        else:
            continue
        basket = found[(e["user_id"], e["session_id"])]
        for pid in pids:
            if pid not in basket and len(basket) < CAP:
                basket.append(pid)
    return [b for b in found.values() if b]


def expected_pairs(baskets: list[list[str]]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = defaultdict(int)
    for basket in baskets:
        for a, b in combinations(basket, 2):
            out[(a, b)] += 1
            out[(b, a)] += 1
    return dict(out)


async def stored_pairs(client: aioredis.Redis, items: set[str], kind: str) -> dict[Any, float]:
    out: dict[Any, float] = {}
    for pid in items:
        for member, score in await client.zrange(
            keys.together(pid)[1 if kind == "b" else 2], 0, -1, withscores=True
        ):
            out[(pid, member.decode())] = float(score)
    return out


async def pair_state(client: aioredis.Redis) -> dict[bytes, Any]:
    """Every pair-count key with all it holds, exactly as stored."""
    out: dict[bytes, Any] = {}
    for pattern in ("rtp:tg:*", "rtp:tgm:*"):
        async for key in client.scan_iter(match=pattern, count=1000):
            kind = await client.type(key)
            if kind == b"hash":
                out[key] = await client.hgetall(key)
            else:
                out[key] = await client.zrange(key, 0, -1, withscores=True)
    return out


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-9)


async def test_pair_counts_exact_once_and_rules_match_fp_growth(
    worker_env: dict[str, str],
    brokers: str,
    names: Names,
    redis_client: aioredis.Redis,
    redis_url: str,
    tmp_path: Path,
) -> None:
    env = {
        **worker_env,
        "RTP_EMBEDDINGS": "false",  # pair counting needs no model
        "RTP_TOGETHER_MAX_ITEMS": str(CAP),
        "RTP_TOGETHER_HALF_LIFE_DAYS": str(HALF_LIFE_DAYS),
        "RTP_TOGETHER_MIN_COUNT": "1",
    }
    items = {*PLANTED, *PLANTED.values(), *NOISE}
    events = [*(product(p) for p in sorted(items)), *traffic()]
    bought, viewed = sessions(events, "b"), sessions(events, "v")
    want_b, want_v = expected_pairs(bought), expected_pairs(viewed)
    assert ("phone", "case") in want_b and ("n0", "phone") not in want_b  # the cap cut n0-phone
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        await worker.wait_ready(timeout=120)
        await produce(brokers, names.input, events, key=lambda e: str(e["user_id"]).encode())
        partitions = Settings.from_env(env).kafka.partitions
        reader = RedisTogether(redis_client, partitions, int(HALF_LIFE_DAYS * 86_400_000))

        async def counted() -> bool:
            counts, _ = await reader.marginals("b")
            views, _ = await reader.marginals("v")
            return close(counts.transactions, len(bought)) and close(
                views.transactions, len(viewed)
            )

        await eventually(counted, timeout=120)
        got_b = await stored_pairs(redis_client, items, "b")
        got_v = await stored_pairs(redis_client, items, "v")
        assert got_b.keys() == want_b.keys() and got_v.keys() == want_v.keys()
        assert all(close(got_b[p], want_b[p]) for p in want_b)
        assert all(close(got_v[p], want_v[p]) for p in want_v)
        counts, _ = await reader.marginals("b")
        for pid in items:
            n = sum(pid in b for b in bought)
            assert close(counts.marginals.get(pid, 0.0), n), pid

        # The API: the planted accessory is the phone's best complement.
        status, body = await worker.get("/items/phone/bought-together?k=3")
        assert status == 200 and body["items"][0]["product_id"] == "case"
        n_phone = sum("phone" in b for b in bought)
        n_case = sum("case" in b for b in bought)
        both = want_b[("phone", "case")]
        top = body["items"][0]
        assert close(top["confidence"], both / n_phone)
        assert math.isclose(top["lift"], both * len(bought) / (n_phone * n_case), rel_tol=1e-3)
        status, body = await worker.get("/items/phone/bought-together?kind=sold")
        assert status == 400
        before = await pair_state(redis_client)
    finally:
        worker.stop()

    # A second consumer group reads every input offset again: every count is fenced.
    again_env = {
        **env,
        "RTP_APP_ID": f"again-{names.tag}",
        "RTP_ROUTED_TOPIC": f"routed-again-{names.tag}",
    }
    again = Worker(again_env, tmp_path / "again.log").start()
    try:
        await again.wait_ready(timeout=120)

        async def all_fenced() -> bool:
            stats = await again.stats()
            return int(stats["fenced"]) + int(stats["items"]) >= len(events)

        try:
            await eventually(all_fenced, timeout=120)
        except AssertionError:
            pytest.fail(f"not all fenced: {await again.stats()}\n{again.tail()}")
        assert await pair_state(redis_client) == before
    finally:
        again.stop()

    # Rules of every item against a batch FP-Growth on the same sessions.
    # Support floor 2 sessions, less what the (tiny) decay took from counts of older sessions.
    rules = await category_rules(reader, RedisCatalog(redis_client), "*", "b", 100, 2.0 - 1e-3)
    encoder = TransactionEncoder()
    frame = pd.DataFrame(encoder.fit(bought).transform(bought), columns=encoder.columns_)
    frequent = fpgrowth(frame, min_support=2.0 / len(bought) - 1e-12, use_colnames=True)
    batch = association_rules(frequent, metric="lift", min_threshold=0.0)
    single = batch[(batch["antecedents"].map(len) == 1) & (batch["consequents"].map(len) == 1)]
    reference = {
        (next(iter(r.antecedents)), next(iter(r.consequents))): r for r in single.itertuples()
    }
    streamed = {(r.item, r.other): r for r in rules}
    assert streamed.keys() == reference.keys()
    for pair, r in streamed.items():
        ref = reference[pair]
        assert close(r.support, ref.support), pair
        assert close(r.confidence, ref.confidence), pair
        assert close(r.lift, ref.lift), pair
    # Within a category: the phone rules of the "Phones" items only.
    phones = await category_rules(reader, RedisCatalog(redis_client), "phones", "b", 100, 1.9)
    assert phones and {r.item for r in phones} <= {"phone", "case"}
    assert ("phone", "case") in {(r.item, r.other) for r in phones}
    # The command prints the same rules.
    done = subprocess.run(
        [sys.executable, "-m", "stream", "rules", "Phones", "--min-count", "1.9"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert f"{len(phones)} rules for 'Phones'" in done.stdout
    assert phones[0].line() in done.stdout


async def test_a_purchase_pushes_its_complements(
    worker_env: dict[str, str], brokers: str, names: Names, tmp_path: Path
) -> None:
    """The blend's complements through the real worker and model: once others bought the tea
    pot with the green tea, Ann's list after buying the tea carries the pot as a complement."""
    from tests.integration.test_recommendations import CATALOG, _recs_of, click, purchase
    from tests.integration.test_recommendations import product as catalog_product

    env = {
        **worker_env,
        "RTP_CATALOG_POLL_S": "0.3",
        "RTP_RECS_INTERVAL_S": "60",
        "RTP_TOGETHER_CACHE_S": "0",  # read for every batch: Ann's sees the crowd's counts
    }
    worker = Worker(env, tmp_path / "recs.log").start()
    key = lambda e: e["user_id"].encode()  # noqa: E731
    try:
        await worker.wait_ready(timeout=120)
        await produce(brokers, names.input, [catalog_product(p, START) for p in CATALOG])

        async def indexed() -> bool:
            _, stats = await worker.get("/stats")
            return int(stats["recommendations"]["items"]) == len(CATALOG)

        await eventually(indexed, timeout=120)
        crowd = []
        for i in range(6):  # the tea and the pot in one order, six times
            order = purchase(f"fan{i}", 1, "tea-1", START + i * 1000)
            order["items"].append({"product_id": "tea-4", "quantity": 1, "price": 10.0})
            crowd.append(order)
        await produce(brokers, names.input, crowd, key=key)

        async def paired() -> bool:
            status, body = await worker.get("/items/tea-1/bought-together")
            return status == 200 and [i["product_id"] for i in body["items"]] == ["tea-4"]

        await eventually(paired, timeout=120)
        ann = [click("ann", i, p, START + i * 1000) for i, p in enumerate(["pen-1", "pen-2"])]
        ann.append(purchase("ann", 9, "tea-1", START + 120_000))
        await produce(brokers, names.input, ann, key=key)

        def bought(log: list[Any]) -> bool:
            return any(e["trigger"] in ("first", "purchase") for e in _recs_of(log, "ann"))

        log = await read_topic(brokers, names.recs, bought, timeout=120)
        last = _recs_of(log, "ann")[-1]
        validate_output("recommendation", last)
        reasons = {i["product_id"]: i["reason"] for i in last["items"]}
        assert "tea-1" not in reasons  # bought
        assert reasons["tea-4"]["together"] == 1.0
    finally:
        worker.stop()
