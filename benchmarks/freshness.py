"""How fresh a profile is under load: event produced -> ``profile_updated`` that covers it.

    python benchmarks/freshness.py                  # core + default, 3 rates x 20 s, a table
    python benchmarks/freshness.py --write          # ... and update BENCHMARKS.md
    python benchmarks/freshness.py --quick --pipeline core
    python benchmarks/freshness.py --capacity 4000  # rates from a given figure, no unpaced run

For each pipeline (core: ``RTP_EMBEDDINGS``, ``RTP_SEGMENTS``, ``RTP_CHURN``, ``RTP_VALUE`` =
false; default: every setting at its default) and each rate (``--fractions``, 25 / 50 / 75 %
of a capacity figure), one run of the real worker (``python -m stream worker``, started by
``benchmarks.throughput.worker_child``: fresh app id and topics, Redis flushed, so every run
starts cold, encoder cache included):

1. the catalog (``product`` upserts) is produced unpaced into a fresh input topic and the
   worker is started; the load starts once ``/stats`` shows the catalog settled (group join,
   imports and catalog excluded);
2. an open-loop producer sends the generated history after the catalog (user events, and
   the few ``product`` updates it holds, which are sent but not measured: they have no user
   profile) at the fixed rate for ``--duration`` seconds: event i is due at t0 + i / rate
   and is sent when due, whatever the worker does (no back-pressure from the pipeline, so a
   slow pipeline shows as latency, not as a lower offered rate); *achieved* is what the
   producer managed;
3. a consumer in this process reads the worker's profile topic until every event sent is
   covered, or ``--drain`` seconds after the last send (*uncovered* counts what was left).

Matching outputs to inputs: each event's ``ts`` is rewritten to the wall clock (epoch ms) at
the moment it is sent, bumped by 1 ms where needed so that every user's events have strictly
increasing ``ts`` in produce order. The worker applies a user's events in topic order (input
keyed by user; routed by user) and a ``profile_updated`` carries ``ts`` = the user's latest
applied event time (``Profile.last_ts``, a max). So a ``profile_updated`` for user u with
``ts`` = T covers exactly u's events with ``ts`` <= T, and each event's latency is taken from
the *first* output that covers it. Wall-clock ``ts`` also keeps every event inside the
lateness bound (none is dropped as late). Per event, two latencies:

- **received** (the table's p50 / p99 / max): the time this process got the output record
  from the broker (``time.time()`` when ``getmany`` returned, ``fetch_max_wait_ms`` = 5)
  minus the time ``send`` was called for the event: what a downstream consumer sees;
- **at emit** (the p99 shown after the slash in the last latency column): the output
  record's Kafka timestamp (CreateTime: set by the worker's producer when it sent the message,
  after the Redis commit) minus the same send time: the pipeline alone, without the output
  fetch or this process's own scheduling. Same machine, same clock for both.

Capacity: ``--capacity EVENTS_PER_S`` applies one figure to every pipeline; without it each
pipeline's capacity is measured first by an unpaced run of the same worker on a pre-filled
topic (catalog + ``--capacity-events`` history events, measured from outside on ``/stats``
exactly as ``benchmarks/throughput.py`` does: last idle poll to all settled, cold start).

Loop lag: the worker's ``loop_lag_max_ms`` from ``/stats`` at the end of the run (a maximum
over the worker's life); the figure in brackets is the same counter just before the load
started, so a maximum reached during start-up (imports, group join, catalog) shows as equal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.common import (
    BENCHMARKS_MD,
    DataSpec,
    encode,
    facts_lines,
    generate_events,
    machine_facts,
    markdown_table,
    message_key,
    scratch_services,
    service_pid,
    write_section,
)
from benchmarks.throughput import (
    PARTITIONS,
    VARIANTS,
    Child,
    Meter,
    Options,
    Variant,
    _fetch_stats,
    _partitions,
    _settled,
    console,
    prefill,
    run_child,
    worker_child,
)
from stream.devtools.services import BROKER, REDIS, LocalServices

SECTION = "## Freshness under load (issue 15)"

#: Core here also turns customer value off (``RTP_VALUE``, newer than throughput.py's core).
PIPELINES: dict[str, Variant] = {
    "core": replace(
        VARIANTS["core"],
        title="core (`RTP_EMBEDDINGS`, `RTP_SEGMENTS`, `RTP_CHURN`, `RTP_VALUE` = false)",
        env={**VARIANTS["core"].env, "RTP_VALUE": "false"},
    ),
    "default": replace(VARIANTS["default"], title="default (every setting at its default)"),
}


@dataclass(frozen=True)
class Settings:
    data: DataSpec
    pipelines: tuple[str, ...]
    fractions: tuple[float, ...]
    duration: float
    drain: float
    capacity: float | None
    capacity_events: int
    worker: Options  # what worker_child and run_child read (batch settings, timeouts)


@dataclass
class Result:
    pipeline: str
    fraction: float
    offered: float
    achieved: float = 0.0
    sent: int = 0
    received: list[float] = field(default_factory=list)  # seconds, one per covered event
    emitted: list[float] = field(default_factory=list)
    uncovered: int = 0
    tracked: int = 0
    outputs: int = 0
    lag_max_ms: float | None = None
    lag_before_ms: float | None = None
    worker_cpu: float = 0.0
    others: float = 0.0


# ------------------------------------------------------------------------- load and match


class Tracker:
    """Per user, the (ts, send time) of every event not yet covered, in produce order."""

    def __init__(self) -> None:
        self.pending: dict[str, deque[tuple[int, float]]] = {}
        self.last_ts: dict[str, int] = {}
        self.open = 0
        self.tracked = 0
        self.received: list[float] = []
        self.emitted: list[float] = []
        self.outputs = 0

    def stamp(self, user: str, now: float) -> int:
        ts = max(int(now * 1000), self.last_ts.get(user, 0) + 1)
        self.last_ts[user] = ts
        return ts

    def sent(self, user: str, ts: int, at: float) -> None:
        self.pending.setdefault(user, deque()).append((ts, at))
        self.open += 1
        self.tracked += 1

    def covered(self, user: str, ts: int, received: float, emitted: float) -> None:
        self.outputs += 1
        queue = self.pending.get(user)
        while queue and queue[0][0] <= ts:
            _, at = queue.popleft()
            self.received.append(received - at)
            self.emitted.append(emitted - at)
            self.open -= 1


async def produce_paced(
    producer: AIOKafkaProducer,
    topic: str,
    events: Sequence[dict[str, Any]],
    rate: float,
    tracker: Tracker,
) -> tuple[int, float]:
    """Open loop: event i is sent at t0 + i / rate (or as soon after as we can)."""
    futures: list[asyncio.Future[Any]] = []
    t0 = time.time() + 0.05
    first = last = t0
    for i, event in enumerate(events):
        due = t0 + i / rate
        now = time.time()
        if due > now:
            await asyncio.sleep(due - now)
        now = time.time()
        user = str(event["user_id"])
        ts = tracker.stamp(user, now)
        value = orjson.dumps({**event, "ts": ts})
        if event["type"] != "product":  # catalog updates in the history: no user profile
            tracker.sent(user, ts, now)
        futures.append(await producer.send(topic, value, key=message_key(event)))
        if i == 0:
            first = now
        last = now
    await asyncio.gather(*futures)
    wall = last - first
    return len(events), (len(events) - 1) / wall if wall > 0 else float("nan")


async def consume_outputs(consumer: AIOKafkaConsumer, tracker: Tracker) -> None:
    while True:
        batch = await consumer.getmany(timeout_ms=50)
        received = time.time()
        for records in batch.values():
            for record in records:
                if record.value is None:
                    continue
                out = orjson.loads(record.value)
                if out.get("type") != "profile_updated":
                    continue
                tracker.covered(
                    str(out["user_id"]), int(out["ts"]), received, record.timestamp / 1000
                )


# ------------------------------------------------------------------------- one run


async def _stats(port: int) -> dict[str, Any] | None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        return await _fetch_stats(http, port)


async def _wait_settled(child: Child, n: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        child.check_alive()
        stats = await _stats(child.port)
        if stats is not None:
            last = stats
            if _settled(stats) >= n:
                return stats
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{child.name} did not settle {n} events in {timeout:.0f}s: {last}")


async def _new_topic(brokers: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


async def one_run(
    settings: Settings,
    services: LocalServices,
    base: Path,
    meter: Meter,
    redis: aioredis.Redis,
    variant: Variant,
    catalog: Sequence[tuple[bytes, bytes]],
    history: Sequence[dict[str, Any]],
    result: Result,
) -> Result:
    brokers = services.broker_url.removeprefix("kafka://")
    tag = uuid.uuid4().hex[:8]
    topic = f"fresh-in-{tag}"
    await redis.flushdb()
    await prefill(brokers, topic, catalog)
    child = worker_child(services, base, topic, tag, settings.worker, variant).start()
    tracker = Tracker()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=brokers, enable_auto_commit=False, fetch_max_wait_ms=5
    )
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", enable_idempotence=False)
    try:
        before = await _wait_settled(child, len(catalog), settings.worker.run_timeout)
        result.lag_before_ms = before.get("loop_lag_max_ms")
        await consumer.start()
        await producer.start()
        parts = await _partitions(consumer, child.env["RTP_PROFILE_TOPIC"])
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        reader = asyncio.create_task(consume_outputs(consumer, tracker))
        first = meter.snapshot(child.pid)
        t0 = time.perf_counter()
        try:
            result.sent, result.achieved = await produce_paced(
                producer, topic, history, result.offered, tracker
            )
            deadline = time.monotonic() + settings.drain
            while tracker.open and time.monotonic() < deadline:
                child.check_alive()
                await asyncio.sleep(0.05)
        finally:
            reader.cancel()
        wall = time.perf_counter() - t0
        sample = Meter.sample(0.0, wall, first, meter.snapshot(child.pid))
        result.worker_cpu, result.others = sample.cpu, sample.others
        after = await _stats(child.port)
        if after is not None:
            result.lag_max_ms = after.get("loop_lag_max_ms")
    finally:
        await producer.stop()
        await consumer.stop()
        child.stop()
    result.received, result.emitted = tracker.received, tracker.emitted
    result.uncovered, result.outputs = tracker.open, tracker.outputs
    result.tracked = tracker.tracked
    return result


async def measure_capacity(
    settings: Settings,
    services: LocalServices,
    base: Path,
    meter: Meter,
    redis: aioredis.Redis,
    variant: Variant,
    messages: Sequence[tuple[bytes, bytes]],
) -> float:
    """Unpaced: the worker's end-to-end events/s on a pre-filled topic (throughput.py's way)."""
    brokers = services.broker_url.removeprefix("kafka://")
    tag = f"cap-{uuid.uuid4().hex[:8]}"
    topic = f"fresh-cap-{tag}"
    await redis.flushdb()
    await prefill(brokers, topic, messages)
    child = worker_child(services, base, topic, tag, settings.worker, variant)
    sample = await run_child(child, meter, len(messages), settings.worker, _settled)
    return sample.rate


async def run(settings: Settings) -> tuple[list[Result], dict[str, Any]]:
    spec = settings.data
    context: dict[str, Any] = {
        "load": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "capacity": {},
    }
    results: list[Result] = []
    with scratch_services() as (services, base):
        meter = Meter(service_pid(services, BROKER), service_pid(services, REDIS))
        (base / "faust").mkdir()
        redis = aioredis.Redis.from_url(services.redis_url)
        try:
            for name in settings.pipelines:
                variant = PIPELINES[name]
                capacity = settings.capacity
                if capacity is None:
                    n = spec.products + settings.capacity_events
                    console.log(f"{name}: measuring capacity, unpaced, {n:,} events")
                    messages = encode(generate_events(replace(spec, n=n)))
                    capacity = await measure_capacity(
                        settings, services, base, meter, redis, variant, messages
                    )
                    console.log(f"{name}: capacity {capacity:,.0f} events/s")
                context["capacity"][name] = capacity
                top = max(settings.fractions) * capacity
                n = spec.products + int(top * settings.duration) + 1
                events = generate_events(replace(spec, n=n))
                catalog = encode(events[: spec.products])
                for fraction in settings.fractions:
                    rate = fraction * capacity
                    history = events[spec.products : spec.products + int(rate * settings.duration)]
                    console.log(f"{name}: {fraction:.0%} = {rate:,.0f} events/s, {len(history):,}")
                    result = await one_run(
                        settings,
                        services,
                        base,
                        meter,
                        redis,
                        variant,
                        catalog,
                        history,
                        Result(name, fraction, rate),
                    )
                    console.log(f"  {row(result)}")
                    results.append(result)
        finally:
            await redis.aclose()
    return results, context


# ------------------------------------------------------------------------- reporting


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def _lag(result: Result) -> str:
    if result.lag_max_ms is None:
        return "n/a"
    return f"{result.lag_max_ms:,.0f} ({result.lag_before_ms or 0:,.0f})"


HEADERS = [
    "pipeline",
    "rate",
    "offered events/s",
    "achieved events/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "p99 at emit ms",
    "uncovered",
    "loop lag max ms (before load)",
    "worker CPU",
    "others (cores)",
]


def row(r: Result) -> list[str]:
    return [
        r.pipeline,
        f"{r.fraction:.0%}",
        f"{r.offered:,.0f}",
        f"{r.achieved:,.0f}",
        f"**{_ms(_quantile(r.received, 0.5))}**",
        f"**{_ms(_quantile(r.received, 0.99))}**",
        _ms(max(r.received, default=float("nan"))),
        _ms(_quantile(r.emitted, 0.99)),
        f"{r.uncovered:,} / {r.tracked:,}",
        _lag(r),
        f"{r.worker_cpu:.0%}",
        f"{r.others:.2f}",
    ]


def render(results: Sequence[Result], settings: Settings, context: dict[str, Any]) -> str:
    table = markdown_table(HEADERS, [row(r) for r in results])
    facts = machine_facts()
    w = settings.worker
    capacity = ", ".join(f"{k} {v:,.0f}" for k, v in context["capacity"].items())
    how = (
        "given (`--capacity`)"
        if settings.capacity is not None
        else f"measured first by an unpaced run of the same worker ({settings.capacity_events:,} "
        "history events after the catalog, cold start, `/stats` polled as in throughput.py)"
    )
    lines = [
        "Latency from each input event's send to the first `profile_updated` covering it, "
        "received by a consumer on the same machine (method: docstring of "
        "`benchmarks/freshness.py`). Regenerate with `python benchmarks/freshness.py --write`.",
        "",
        table,
        "",
        "Conditions:",
        "",
        *facts_lines(facts),
        f"- Load average (1/5/15 min) before the run: {context['load']}",
        f"- Capacity (events/s) per pipeline: {capacity}; {how}; rates = "
        f"{', '.join(f'{f:.0%}' for f in settings.fractions)} of it",
        f"- Per rate: {settings.duration:g} s of open-loop load (user events of "
        f"`TrafficGenerator(seed={settings.data.seed}, users={settings.data.users:,}, "
        f"products={settings.data.products:,})`, `ts` rewritten to the send time), then up to "
        f"{settings.drain:g} s to drain; *uncovered* = user events no output covered by "
        "then, of those sent (the history's few `product` updates are sent, not measured)",
        "- Each run: fresh worker, fresh `RTP_APP_ID` and topics, Redis flushed (AOF, "
        "`appendfsync always`), catalog loaded before the load starts (cold encoder cache in "
        f"the default pipeline); `RTP_BATCH_MAX={w.batch_max}`, `RTP_BATCH_WITHIN="
        f"{w.batch_within}`, `RTP_BUNDLE_MAX={w.bundle_max}`, `RTP_PARTITIONS={PARTITIONS}`, "
        f"`RTP_SESSION_TIMEOUT_S={w.session_timeout:g}`",
        "- p50 / p99 / max: received time minus send time; *p99 at emit*: the output record's "
        "Kafka timestamp (set by the worker when it sent it) minus send time",
        "- Loop lag: `loop_lag_max_ms` of the worker's `/stats` after the run (max over the "
        "worker's life), in brackets the same just before the load; worker CPU and *others* "
        "(cores used by processes not ours) over the load + drain window",
        f"- Pipelines: {'; '.join(PIPELINES[p].title for p in settings.pipelines)}",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> tuple[Settings, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--capacity", type=float, default=None, metavar="EVENTS_PER_S")
    parser.add_argument(
        "--capacity-events",
        type=int,
        default=None,
        help="history events of the unpaced capacity run (default 10000, --quick 4000)",
    )
    parser.add_argument(
        "--fractions", default="0.25,0.5,0.75", help="rates as fractions of the capacity"
    )
    parser.add_argument("--duration", type=float, default=None, help="s per rate (20, quick 6)")
    parser.add_argument("--drain", type=float, default=30.0, help="s to wait after the load")
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    parser.add_argument(
        "--pipeline", action="append", choices=tuple(PIPELINES), default=None, help="repeatable"
    )
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-max", type=int, default=2000, help="RTP_BATCH_MAX")
    parser.add_argument("--batch-within", type=float, default=0.05, help="RTP_BATCH_WITHIN")
    parser.add_argument("--bundle-max", type=int, default=64, help="RTP_BUNDLE_MAX")
    parser.add_argument("--session-timeout", type=float, default=6.0)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--md", type=Path, default=BENCHMARKS_MD)
    args = parser.parse_args(argv)
    fractions = tuple(float(f) for f in args.fractions.split(","))
    if not fractions or any(f <= 0 for f in fractions):
        parser.error("--fractions must be positive")
    worker = Options(
        data=DataSpec(n=0, users=args.users, products=args.products, seed=args.seed),
        repeats=1,
        poll_s=0.05,
        batch_max=args.batch_max,
        batch_within=args.batch_within,
        bundle_max=args.bundle_max,
        with_iter=False,
        session_timeout=args.session_timeout,
        run_timeout=300.0,
    )
    settings = Settings(
        data=worker.data,
        pipelines=tuple(args.pipeline or PIPELINES),
        fractions=fractions,
        duration=args.duration or (6.0 if args.quick else 20.0),
        drain=args.drain,
        capacity=args.capacity,
        capacity_events=args.capacity_events or (4000 if args.quick else 10_000),
        worker=worker,
    )
    return settings, (args.md if args.write else None)


def main(argv: list[str] | None = None) -> int:
    settings, md = parse_args(argv)
    started = time.monotonic()
    results, context = asyncio.run(run(settings))
    body = render(results, settings, context)
    print(body)
    console.log(f"total {time.monotonic() - started:.0f}s")
    if md is not None:
        write_section(SECTION, body, md)
        console.log(f"updated {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
