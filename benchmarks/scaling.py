"""Scale-out: 1, 2 and 4 workers over 8 owner partitions, side by side on one topic.

    python benchmarks/scaling.py [--events 40000] [--repeats 3] [--workers 1 2 4]

Each run starts K real workers (``python -m stream worker``, the core pipeline by default:
no encoder, so the figure is the pipeline's, not the model's) in one fresh consumer group on
fresh topics, waits until every one of them is ready and owns a share of the 8 routed
partitions, then produces N events to the 8-partition input topic at full speed and measures
the wall time until the workers together have settled all N (applied, skipped as items or
duplicates, or dead-lettered). Runs alternate 1, 2, 4, 1, 2, 4 ... so a noisy neighbour hits
every K alike; the ratios to one worker are what holds on a shared machine. On a 2-core box
more than two workers only share the same two cores: the figure says how much of the work
parallelises, not what more machines would give (``BENCHMARKS.md`` has the capacity model).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DataSpec, encode, generate_events, scratch_services
from benchmarks.throughput import VARIANTS, Child, _clean_env, _settled
from stream.devtools.services import LocalServices, free_port

PARTITIONS = 8


def worker(services: LocalServices, base: Path, topic: str, tag: str, env: dict[str, str]) -> Child:
    port = free_port()
    full = {
        **_clean_env(),
        "PYTHONUNBUFFERED": "1",
        "RTP_APP_ID": f"scale-{tag}",
        "RTP_BROKER": services.broker_url,
        "RTP_REDIS_URL": services.redis_url,
        "RTP_INPUT_TOPIC": topic,
        "RTP_ROUTED_TOPIC": f"routed-{tag}",
        "RTP_PROFILE_TOPIC": f"profiles-{tag}",
        "RTP_DLQ_TOPIC": f"dlq-{tag}",
        "RTP_DATA_DIR": str(base / "faust" / f"{tag}-{port}"),
        "RTP_WEB_PORT": str(port),
        "RTP_WEB_OPEN": "true",
        "RTP_PARTITIONS": str(PARTITIONS),
        "RTP_INPUT_PARTITIONS": str(PARTITIONS),
        "RTP_SESSION_TIMEOUT_S": "10",
        **env,
    }
    argv = [sys.executable, "-m", "stream", "worker", "-l", "warn"]
    return Child(f"worker-{port}", argv, full, port, base / f"{tag}-{port}.log")


async def stats(http: aiohttp.ClientSession, port: int) -> dict[str, Any] | None:
    try:
        async with http.get(
            f"http://127.0.0.1:{port}/stats", timeout=aiohttp.ClientTimeout(5)
        ) as r:
            return dict(await r.json()) if r.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


async def one_run(
    services: LocalServices,
    base: Path,
    k: int,
    messages: list[tuple[bytes, bytes]],
    env: dict[str, str],
) -> float:
    """Events/s of ``k`` workers on ``messages``; every run on fresh topics and group."""
    tag = uuid.uuid4().hex[:8]
    topic = f"scale-in-{tag}"
    brokers = services.broker_url.removeprefix("kafka://")
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    children = [worker(services, base, topic, tag, env).start() for _ in range(k)]
    try:
        async with aiohttp.ClientSession() as http:
            # Ready, and the routed partitions spread over all k (a late joiner would otherwise
            # find the work done).
            deadline = time.monotonic() + 240
            while True:
                for c in children:
                    c.check_alive()
                found = [await stats(http, c.port) for c in children]
                owned = [int(s.get("assigned", 0)) if s else 0 for s in found]
                if all(owned) and sum(owned) == PARTITIONS:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers not ready/assigned: {owned}")
                await asyncio.sleep(0.5)
            producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=5, acks=1)
            await producer.start()
            started = time.monotonic()
            try:
                sends = [await producer.send(topic, v, key=key) for key, v in messages]
                await asyncio.gather(*sends)
            finally:
                await producer.stop()
            n = len(messages)
            while True:
                found = [await stats(http, c.port) for c in children]
                done = sum(_settled(s) for s in found if s)
                if done >= n:
                    return n / (time.monotonic() - started)
                if time.monotonic() - started > 900:
                    raise RuntimeError(f"only {done} of {n} settled")
                for c in children:
                    c.check_alive()
                await asyncio.sleep(0.1)
    finally:
        for c in children:
            c.stop()


async def main_async(args: argparse.Namespace) -> dict[int, list[float]]:
    events = generate_events(DataSpec(args.events, args.users, args.products, args.seed))
    messages = encode(events)
    env = dict(VARIANTS[args.pipeline].env)
    rates: dict[int, list[float]] = {k: [] for k in args.workers}
    with scratch_services() as (services, base):
        (base / "faust").mkdir()
        for rep in range(args.repeats):
            for k in args.workers:
                rate = await one_run(services, base, k, messages, env)
                rates[k].append(rate)
                print(
                    f"[{rep + 1}/{args.repeats}] {k} worker(s): {rate:,.0f} events/s",
                    file=sys.stderr,
                )
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--pipeline", choices=sorted(VARIANTS), default="core")
    args = parser.parse_args(argv)
    rates = asyncio.run(main_async(args))
    base = statistics.median(rates[args.workers[0]])
    print(f"| workers | events/s (median of {args.repeats}) | runs | vs {args.workers[0]} |")
    print("| ---: | ---: | --- | ---: |")
    for k, found in rates.items():
        med = statistics.median(found)
        runs = ", ".join(f"{r:,.0f}" for r in found)
        print(f"| {k} | {med:,.0f} | {runs} | {med / base:.2f}x |")
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\n{args.events:,} events, {PARTITIONS} input and owner partitions, "
        f"pipeline {args.pipeline}; load after: {load}; {os.cpu_count()} CPUs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
