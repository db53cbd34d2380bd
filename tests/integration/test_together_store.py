"""The pair-count script on a real Redis against its Python mirror (``FencedPairs``):
fences under redelivery, out-of-order event times, rebases past 400 half-lives, the neighbour
cap, and the marginals' plain hash."""

from __future__ import annotations

import random

import pytest
import redis.asyncio as aioredis

from profiles.pipeline.feature import PairsAdd
from profiles.pipeline.store import Commit
from profiles.redis import keys
from profiles.redis.store import RedisStore
from profiles.together.counts import FencedPairs, PairContribution

pytestmark = pytest.mark.integration
H = 1000  # half-life (ms): small, so a rebase (400 half-lives) happens in the test
CAP = 3


async def test_pair_script_matches_the_python_fences(redis_client: aioredis.Redis) -> None:
    store = RedisStore(redis_client)
    await store.load_scripts()
    rng = random.Random(5)
    item, margins = FencedPairs(H, CAP), FencedPairs(H)
    offsets = {"in:0@1": 0, "in:1@1": 0, "in:0@2": 0}
    sent: list[tuple[list[PairContribution], list[PairContribution]]] = []
    for step in range(40):
        pairs: list[PairContribution] = []
        marg: list[PairContribution] = []
        for _ in range(rng.randint(1, 5)):
            source = rng.choice(list(offsets))
            offsets[source] += 1
            ts = step * 30 * H + rng.randint(-5 * H, 5 * H)  # out of order; > 400 h in all
            for other in rng.sample(["a", "b", "c", "d", "e", "f"], rng.randint(1, 3)):
                kind = rng.choice("bv")
                pairs.append((source, offsets[source], ts, f"{kind}:{other}", 1.0))
                marg.append((source, offsets[source], ts, f"{kind}:{other}", 1.0))
            marg.append((source, offsets[source], ts, "b", 1.0))
        sent.append((pairs, marg))
    for i, batch in enumerate(sent):
        for pairs, marg in (batch, sent[max(0, i - 2)]):  # and a redelivered earlier batch
            item.add(pairs)
            margins.add(marg)
            adds = [PairsAdd("x y{z}", -1, pairs, H, CAP), PairsAdd(None, 2, marg, H)]
            adds.append(PairsAdd("}odd", -1, pairs, H, CAP))  # its keys: one slot too
            await store.commit(Commit(pairs=adds))
    meta, bought, viewed = keys.together("x y{z}")
    stored = {k.decode(): v for k, v in (await redis_client.hgetall(meta)).items()}
    assert int(stored["@a"]) == item.anchor and int(stored["@t"]) == item.latest
    assert {k[3:]: int(v) for k, v in stored.items() if k.startswith("@f:")} == item.fences
    assert item.fences == offsets
    for kind, key in (("b", bought), ("v", viewed)):
        members = dict(await redis_client.zrange(key, 0, -1, withscores=True))
        got = {m.decode(): s for m, s in members.items()}
        assert len(got) <= CAP and got.keys() == item.neighbours[kind].keys()
        for member, value in item.neighbours[kind].items():
            assert got[member] == pytest.approx(value, rel=1e-9)
    for ours, odd in zip(keys.together("x y{z}"), keys.together("}odd"), strict=True):
        if ours == meta:
            assert await redis_client.hgetall(odd) == await redis_client.hgetall(ours)
        else:
            assert await redis_client.zrange(odd, 0, -1, withscores=True) == (
                await redis_client.zrange(ours, 0, -1, withscores=True)
            )
    counted = await redis_client.hgetall(keys.together_marginals(2))
    plain = {k.decode(): float(v) for k, v in counted.items() if not k.startswith(b"@")}
    assert plain.keys() == margins.counts.keys() and "b:a" in plain  # kind fields: hash fields
    for name, value in margins.counts.items():
        assert plain[name] == pytest.approx(value, rel=1e-9)
