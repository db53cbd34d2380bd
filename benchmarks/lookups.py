"""Profile lookups over HTTP: users/s and latency at 1, 10 and 100 ids per call.

    python benchmarks/lookups.py [--users 5000] [--seconds 15] [--concurrency 8]

A real worker (core pipeline: no encoder) on scratch services builds ``--users`` profiles from
generated traffic; then, for each batch size, ``--concurrency`` clients call it for
``--seconds`` in a closed loop: ``GET /users/{id}`` for 1, ``GET /users?ids=...`` for 10 and
100, ids drawn at random from the stored users. Reported: calls/s, users/s and the p50/p99 of
a call, measured by the client on the same machine (so the client's CPU competes with the
worker's: on 2 cores the figures are a floor).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DataSpec, encode, generate_events, scratch_services
from benchmarks.throughput import VARIANTS, Child, _clean_env, _settled
from stream.devtools.services import free_port


async def run(args: argparse.Namespace) -> list[str]:
    events = generate_events(DataSpec(args.events, args.users, args.products, args.seed))
    users = sorted({str(e["user_id"]) for e in events if e["type"] != "product"})
    messages = encode(events)
    rows = []
    with scratch_services() as (services, base):
        port = free_port()
        env = {
            **_clean_env(),
            "PYTHONUNBUFFERED": "1",
            "RTP_BROKER": services.broker_url,
            "RTP_REDIS_URL": services.redis_url,
            "RTP_WEB_PORT": str(port),
            "RTP_WEB_OPEN": "true",
            "RTP_DATA_DIR": str(base / "faust"),
            **VARIANTS["core"].env,
        }
        worker = Child(
            "worker",
            [sys.executable, "-m", "stream", "worker", "-l", "warn"],
            env,
            port,
            base / "worker.log",
        ).start()
        url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                await _ready(http, url, worker)
                producer = AIOKafkaProducer(bootstrap_servers=services.broker_url[8:])
                await producer.start()
                try:
                    sends = [await producer.send("site-events", v, key=k) for k, v in messages]
                    await asyncio.gather(*sends)
                finally:
                    await producer.stop()
                await _settled_all(http, url, len(messages), worker)
                for size in args.sizes:
                    rows.append(await _measure(http, url, users, size, args))
        finally:
            worker.stop()
    return rows


async def _ready(http: aiohttp.ClientSession, url: str, worker: Child) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        worker.check_alive()
        try:
            async with http.get(f"{url}/health") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("worker not ready")


async def _settled_all(http: aiohttp.ClientSession, url: str, n: int, worker: Child) -> None:
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        worker.check_alive()
        async with http.get(f"{url}/stats") as r:
            if _settled(await r.json()) >= n:
                return
        await asyncio.sleep(0.5)
    raise RuntimeError("events not applied in time")


async def _measure(
    http: aiohttp.ClientSession, url: str, users: list[str], size: int, args: argparse.Namespace
) -> str:
    rng = random.Random(size)
    latencies: list[float] = []
    stop = time.monotonic() + args.seconds

    async def client() -> None:
        while time.monotonic() < stop:
            ids = rng.sample(users, size)
            path = (
                f"/users/{quote(ids[0], safe='')}"
                if size == 1
                else "/users?ids=" + ",".join(quote(i, safe="") for i in ids)
            )
            started = time.perf_counter()
            async with http.get(url + path) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{path[:60]}: HTTP {r.status}")
            latencies.append(time.perf_counter() - started)

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(args.concurrency)))
    took = time.monotonic() - began
    calls = len(latencies)
    q = statistics.quantiles(latencies, n=100)
    return (
        f"| {size} | {calls / took:,.0f} | {calls * size / took:,.0f} | "
        f"{statistics.median(latencies) * 1000:.1f} | {q[98] * 1000:.1f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100])
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args))
    print("| ids per call | calls/s | users/s | p50 ms | p99 ms |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n{args.concurrency} clients, {args.seconds:g} s per size; load after: {load}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
