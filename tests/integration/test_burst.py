"""A burst into a running worker: a backlog produced far above the normal rate.

The worker first takes traffic at the normal rate (``make produce``: 500 events/s), then a
burst of ``RTP_BURST_EVENTS`` (default 30,000) is produced as fast as aiokafka allows (tens of
thousands per second, far beyond 10x normal). While the worker drains the backlog its resident
memory (VmRSS) is sampled; it must stay below ``RTP_BURST_RSS_MIB``, the lag must return to 0
with every event applied exactly (the same offline recomputation as the fault tests), and the
group must not rebalance: a long batch must not cost the worker its membership.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis

from stream.simulation.generator import TrafficConfig, TrafficGenerator
from tests.integration.harness import Feed, Names, Worker, rss_kib
from tests.integration.oracle import eventually
from tests.integration.test_faults import check_downstream, check_state, key

pytestmark = [pytest.mark.integration, pytest.mark.faults]

BURST = int(os.environ.get("RTP_BURST_EVENTS") or 30_000)
NORMAL_RATE = 500.0  # `make produce` and the demo
WARM_UP = 2_000  # events at the normal rate first: model loaded, caches warm, group settled
#: The bound on the worker's resident memory during the burst (model, torch and caches
#: included; about 0.9 GiB when idle on the reference machine, see RELIABILITY.md).
RSS_LIMIT_MIB = int(os.environ.get("RTP_BURST_RSS_MIB") or 1536)


def traffic(seed: int, n: int) -> Iterator[dict[str, Any]]:
    gen = TrafficGenerator(TrafficConfig(seed=seed, users=max(200, n // 25), products=600))
    return itertools.chain(gen.catalog(), gen.history(3650.0))


@dataclass
class Samples:
    """What the burst looked like from outside the worker."""

    rss_kib: list[int] = field(default_factory=list)
    rebalances: set[int] = field(default_factory=set)
    dead_worker: bool = False


async def sample(worker: Worker, out: Samples, stop: asyncio.Event) -> None:
    """VmRSS every 0.2 s, the rebalance counter every second, until ``stop``."""
    assert worker.proc is not None
    pid, tick = worker.proc.pid, 0
    while not stop.is_set():
        out.rss_kib.append(rss_kib(pid))
        if tick % 5 == 0:
            try:
                _, body = await worker.get("/stats", timeout=2.0)  # short: RSS sampling goes on
                out.rebalances.add(int(body["rebalances"]))
            except Exception:  # a busy event loop may miss a 2 s deadline; RSS still counts
                out.dead_worker = worker.proc.poll() is not None
        tick += 1
        await asyncio.sleep(0.2)


async def handled(worker: Worker) -> int:
    """Events the update stage finished with (applied, skipped or dead-lettered)."""
    s = await worker.stats()
    return int(s["applied"] + s["items"] + s["fenced"] + s["duplicates"] + sum(s["dead"].values()))


async def test_burst_keeps_memory_bounded_drains_the_lag_and_causes_no_rebalance(
    worker: Worker,
    brokers: str,
    names: Names,
    redis_client: aioredis.Redis,
    redis_url: str,
) -> None:
    assert worker.proc is not None
    events = traffic(seed=31, n=BURST)
    warm = Feed(brokers, names.input, events, NORMAL_RATE, key).start()
    try:
        warm_sent = await warm.finish(WARM_UP)
    finally:
        await warm.cancel()
    await eventually(lambda: _reached(worker, warm_sent), timeout=180)
    base = await worker.stats()
    base_rss = rss_kib(worker.proc.pid)

    samples, stop = Samples(), asyncio.Event()
    sampler = asyncio.create_task(sample(worker, samples, stop))
    burst = Feed(brokers, names.input, events, rate=1e9, key=key).start()  # unpaced
    started = time.monotonic()
    try:
        total = warm_sent + await burst.finish(BURST)
        produced_s = time.monotonic() - started
        await eventually(lambda: _reached(worker, total), timeout=max(300.0, BURST / 200))
        drained_s = time.monotonic() - started - produced_s
    finally:
        await burst.cancel()
        stop.set()
        await sampler

    assert worker.proc.poll() is None, f"the worker died:\n{worker.tail(80)}"
    peak = max(samples.rss_kib)
    assert peak < RSS_LIMIT_MIB * 1024, f"VmRSS peaked at {peak // 1024} MiB"
    assert samples.rebalances <= {int(base["rebalances"])}, (
        f"rebalances during the burst: {sorted(samples.rebalances)} (before: {base['rebalances']})"
    )

    async def no_lag() -> bool:
        lag = (await worker.stats())["lag"]
        return bool(lag) and not any(lag.values())

    await eventually(no_lag, timeout=60)  # the worker's own lag measurement (every 5 s)
    users, _ = await check_state(brokers, names, redis_client, redis_url, "burst", total)
    out = await check_downstream(brokers, names, redis_client, users)
    after = await worker.stats()
    assert after["rebalances"] == base["rebalances"], after
    print(  # the figures RELIABILITY.md quotes (seen with -s)
        f"\n[burst] {BURST} events produced in {produced_s:.1f}s "
        f"({BURST / produced_s:,.0f}/s = {BURST / produced_s / NORMAL_RATE:.0f}x normal); "
        f"drained {drained_s:.1f}s after the last was sent "
        f"({BURST / (produced_s + drained_s):,.0f}/s end to end); "
        f"VmRSS {base_rss // 1024} MiB before, peak {peak // 1024} MiB "
        f"({len(samples.rss_kib)} samples); rebalances {base['rebalances']} -> "
        f"{after['rebalances']}; users {len(users)}; {out}"
    )


async def _reached(worker: Worker, total: int) -> bool:
    return await handled(worker) >= total
