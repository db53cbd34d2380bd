"""Per-event cost of each piece of the pipeline, in-process, on the throughput benchmark's data.

    python benchmarks/breakdown.py                  # 100k events, 5 runs, print a table
    python benchmarks/breakdown.py --write          # ... and update BENCHMARKS.md
    python benchmarks/breakdown.py --cprofile 30    # one pass under cProfile, top 30 functions

No Kafka and no Faust: the pieces the worker runs per batch are called directly, in the
order the worker calls them, on batches of ``--batch`` consecutive events. Redis is a real
``redis-server`` and a real broker (our own, on free ports; Redis with AOF ``appendfsync
always`` as in dev), for the commit and for emitting ``profile_updated``. Every
figure is microseconds per *input* event (all N, catalog events included), the median over
``--runs`` runs, so the rows add up to what one event costs the worker besides Faust.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console

from benchmarks.common import (
    DataSpec,
    facts_lines,
    generate_events,
    machine_facts,
    markdown_table,
    median,
    message_key,
    scratch_services,
    write_subsection,
)
from profiles.batch import BatchUpdater
from profiles.config import ProfileConfig
from profiles.downstream import profile_updated
from profiles.event_tags import event_tags
from profiles.profile import Profile, Record, apply
from profiles.redis_store import RedisStore
from profiles.store import Commit
from profiles.tags import Tag, TagExtractor
from schemas.validate import Limits, decode
from stream.routing import Inbound, route, unpack
from stream.settings import Settings

SUBSECTION = "### Per-event cost breakdown (`benchmarks/breakdown.py`)"
PARTITIONS = 4
TOPIC = "site-events"
OUTPUT_TOPIC = "profile-updated"

console = Console(stderr=True, highlight=False)

#: Row order and wording of the table; the keys are what :class:`Timings` accumulates.
PIECES: tuple[tuple[str, str], ...] = (
    ("decode", "decode + validate (`schemas.validate.decode`)"),
    ("bundle", "routing + bundling (`stream.routing.route` minus its decode)"),
    ("unpack", "bundle decode in the update stage (`stream.routing.unpack`)"),
    ("tags_cold", "tag extraction, cold cache (`event_tags`, fresh `TagExtractor`)"),
    ("tags_warm", "tag extraction, warm cache (same events again)"),
    ("apply", "profile apply (`profiles.profile.apply`, tags precomputed)"),
    ("serialize", "serialization (`Profile.to_bytes`, once per user per batch)"),
    ("downstream", "`profile_updated` payload (`profile_updated` + `orjson.dumps`)"),
    ("load", "Redis load of users not cached yet (`RedisStore.load`)"),
    ("commit", "Redis commit (`RedisStore.commit` minus its `to_bytes`)"),
    ("emit", "emit `profile_updated` (plain aiokafka `send` + acks; Faust adds its own)"),
)
#: What a fresh worker pays (its tag cache starts empty, as in every throughput repetition).
COLD_TOTAL = (
    "decode",
    "bundle",
    "unpack",
    "tags_cold",
    "apply",
    "serialize",
    "downstream",
    "load",
    "commit",
    "emit",
)
WARM_TOTAL = tuple("tags_warm" if k == "tags_cold" else k for k in COLD_TOTAL)


@dataclass
class Timings:
    """Seconds per piece for one run."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def clock(self, piece: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[piece] += time.perf_counter() - started


@dataclass(frozen=True)
class Prepared:
    """The input topic's content as the ingest agent would receive it, in batches."""

    batches: list[list[Inbound]]
    catalog: dict[str, dict[str, Any]]
    limits: Limits
    now_ms: int
    n: int


def prepare(spec: DataSpec, batch: int) -> Prepared:
    events = generate_events(spec)
    offsets = [0] * PARTITIONS
    inbound: list[Inbound] = []
    for event in events:
        key = message_key(event)
        # Any stable key -> partition map will do: only "source" fences depend on it.
        partition = zlib.crc32(key) % PARTITIONS
        inbound.append(Inbound(TOPIC, partition, offsets[partition], key, orjson.dumps(event)))
        offsets[partition] += 1
    catalog = {e["product_id"]: e for e in events if e["type"] == "product"}
    settings = Settings()
    limits = Limits(
        max_bytes=settings.max_message_bytes,
        max_future_ms=int(settings.max_future_s * 1000),
        earliest_ms=settings.earliest_ms,
    )
    batches = [inbound[i : i + batch] for i in range(0, len(inbound), batch)]
    return Prepared(batches, catalog, limits, int(time.time() * 1000), len(events))


# ------------------------------------------------------------------------- the pieces


def run_ingest(prep: Prepared, t: Timings) -> list[list[Record]]:
    """Ingest (decode alone, then route) and the update stage's unpack; returns records."""
    for messages in prep.batches:
        with t.clock("decode"):
            for message in messages:
                decode(message.value, prep.limits, prep.now_ms)
    routed = []
    with t.clock("route"):
        for messages in prep.batches:
            routed.append(route(messages, prep.limits, PARTITIONS, prep.now_ms))
    if any(r.dead for r in routed):
        raise RuntimeError(f"{sum(len(r.dead) for r in routed)} events rejected by decode")
    batches: list[list[Record]] = []
    with t.clock("unpack"):
        for r in routed:
            batches.append(
                [rec for bundles in r.bundles.values() for b in bundles for rec in unpack(b)]
            )
    t.seconds["bundle"] = t.seconds.pop("route") - t.seconds["decode"]
    return batches


def run_tags(
    batches: list[list[Record]], catalog: dict[str, dict[str, Any]], t: Timings
) -> dict[str, list[Tag]]:
    """Tags of every user event, first with empty caches, then again with warm ones."""
    tagger = TagExtractor()
    tags: dict[str, list[Tag]] = {}
    for piece in ("tags_cold", "tags_warm"):
        with t.clock(piece):
            for records in batches:
                for rec in records:
                    if rec.event["type"] != "product":
                        tags[rec.event["event_id"]] = event_tags(rec.event, tagger, catalog)
    return tags


def _by_user(records: Sequence[Record]) -> tuple[dict[str, list[Record]], list[dict[str, Any]]]:
    by_user: dict[str, list[Record]] = defaultdict(list)
    products = []
    for rec in records:
        if rec.event["type"] == "product":
            products.append(rec.event)
        else:
            by_user[rec.event["user_id"]].append(rec)
    return by_user, products


async def run_update(
    batches: list[list[Record]],
    tags: dict[str, list[Tag]],
    store: RedisStore,
    producer: AIOKafkaProducer,
    now_ms: int,
    t: Timings,
) -> None:
    """The update stage's work per batch, piece by piece, against a flushed Redis."""
    config = ProfileConfig()
    cache: dict[str, Profile] = {}

    def tagger(event: dict[str, Any]) -> list[Tag]:
        return tags[event["event_id"]]

    for records in batches:
        by_user, products = _by_user(records)
        missing = [uid for uid in by_user if uid not in cache]
        with t.clock("load"):
            loaded, _ = await store.load(missing, ())
        cache.update(loaded)
        touched = []
        with t.clock("apply"):
            for uid, recs in by_user.items():
                profile = cache[uid]
                base = profile.version
                if apply(profile, recs, config, tagger).applied:
                    profile.version = base + 1
                    touched.append(profile)
        with t.clock("serialize"):
            for profile in touched:
                profile.to_bytes()
        with t.clock("downstream"):
            payloads = [
                orjson.dumps(profile_updated(p, config.half_life_ms, now_ms)) for p in touched
            ]
        with t.clock("commit"):
            result = await store.commit(Commit(profiles=touched, items=products))
        if result.conflicts:
            raise RuntimeError(f"unexpected version conflicts: {sorted(result.conflicts)[:5]}")
        with t.clock("emit"):
            # As the update agent: queue every send, then wait for the broker's acks.
            sent = [
                await producer.send(OUTPUT_TOPIC, payload, key=p.user_id.encode())
                for p, payload in zip(touched, payloads, strict=True)
            ]
            await asyncio.gather(*sent)
    # The commit serialises every profile itself; that cost is already the serialize row.
    t.seconds["commit"] -= t.seconds["serialize"]


async def run_updater(batches: list[list[Record]], store: RedisStore, t: Timings) -> None:
    """Cross-check: the real BatchUpdater on the same batches (fresh caches, flushed Redis)."""
    updater = BatchUpdater(store, ProfileConfig(), TagExtractor(), cache_users=200_000)
    with t.clock("updater"):
        for records in batches:
            await updater.process(records)


async def one_run(prep: Prepared, store: RedisStore, producer: AIOKafkaProducer) -> Timings:
    t = Timings()
    gc.collect()
    batches = run_ingest(prep, t)
    gc.collect()
    tags = run_tags(batches, prep.catalog, t)
    await store.client.flushdb()
    gc.collect()
    await run_update(batches, tags, store, producer, prep.now_ms, t)
    await store.client.flushdb()
    gc.collect()
    await run_updater(batches, store, t)
    return t


# ------------------------------------------------------------------------- driver


async def measure(prep: Prepared, runs: int, cprofile_top: int) -> list[Timings]:
    with scratch_services() as (services, _):
        store = RedisStore.from_url(services.redis_url)
        producer = AIOKafkaProducer(
            bootstrap_servers=services.broker_url.removeprefix("kafka://"),
            acks="all",
            enable_idempotence=False,
        )
        await producer.start()
        try:
            await store.load_scripts()
            TagExtractor().warm_up()  # jieba's dictionary loads once per process, as in a worker
            await producer.send_and_wait(OUTPUT_TOPIC, b"warm-up")  # creates the topic
            if cprofile_top:
                await profile_once(prep, store, producer, cprofile_top)
                return []
            results = []
            for i in range(1, runs + 1):
                started = time.perf_counter()
                results.append(await one_run(prep, store, producer))
                console.log(f"run {i}/{runs}: {time.perf_counter() - started:.1f}s")
            return results
        finally:
            await producer.stop()
            await store.close()


async def profile_once(
    prep: Prepared, store: RedisStore, producer: AIOKafkaProducer, top: int
) -> None:
    """One run under cProfile; prints the top functions by own time, in µs per event."""
    profiler = cProfile.Profile()
    profiler.enable()
    await one_run(prep, store, producer)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(out.getvalue())
    rows = _per_event_rows(stats, prep.n, top)
    print(markdown_table(["function", "own µs/event", "cumulative µs/event", "calls/event"], rows))


def _per_event_rows(stats: pstats.Stats, n: int, top: int) -> list[list[str]]:
    entries = stats.stats  # type: ignore[attr-defined]
    ranked = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    rows = []
    for (path, line, name), (_, calls, own, cumulative, _) in ranked:
        where = f"{Path(path).parent.name}/{Path(path).name}:{line}" if line else path
        rows.append(
            [
                f"`{name}` ({where})",
                f"{own / n * 1e6:.2f}",
                f"{cumulative / n * 1e6:.2f}",
                f"{calls / n:.2f}",
            ]
        )
    return rows


def render(results: Sequence[Timings], n: int) -> str:
    per_event: dict[str, list[float]] = {
        k: [r.seconds[k] / n * 1e6 for r in results] for k in (*dict(PIECES), "updater")
    }
    med = {k: median(v) for k, v in per_event.items()}
    cold = sum(med[k] for k in COLD_TOTAL)
    warm = sum(med[k] for k in WARM_TOTAL)
    rows = []
    for key, title in PIECES:
        share = f"{med[key] / cold:.0%}" if key in COLD_TOTAL else ""
        spread = f"{min(per_event[key]):.2f} – {max(per_event[key]):.2f}"
        rows.append([title, f"{med[key]:.2f}", spread, share])
    rows.append(
        [
            "**total, cold tag cache** (a fresh worker, as in each throughput run)",
            f"**{cold:.1f}**",
            "",
            "100%",
        ]
    )
    rows.append(["total, warm tag cache (steady state)", f"{warm:.1f}", "", ""])
    table = markdown_table(["piece", "µs/event (median)", "min – max", "share of cold total"], rows)
    upd_parts = sum(med[k] for k in ("tags_cold", "apply", "serialize", "load", "commit"))
    notes = [
        f"- Pieces alone, cold: {1e6 / cold:,.0f} events/s on one core; warm: "
        f"{1e6 / warm:,.0f} events/s (no Kafka, no Faust).",
        f"- Cross-check: the real `BatchUpdater.process` on the same batches takes "
        f"{med['updater']:.1f} µs/event vs {upd_parts:.1f} for the sum of its pieces "
        "(tags cold + apply + serialize + load + commit).",
    ]
    return "\n".join([table, "", *notes])


def conditions(spec: DataSpec, runs: int, batch: int, facts: dict[str, str]) -> list[str]:
    return [
        *facts_lines(facts)[:3],
        f"- Data: {spec.describe()} (the same events as the throughput run)",
        f"- {runs} runs, median shown; batches of {batch} consecutive events, "
        f"{PARTITIONS} routed partitions; Redis and Tansu on loopback, Redis AOF "
        "`appendfsync always`",
        "- Per event = piece time / all N input events; every run starts with empty caches "
        "and a flushed Redis",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Per-event cost of the pipeline's pieces, in-process, in µs/event.",
    )
    parser.add_argument("--events", type=int, default=100_000, help="N (default 100000)")
    parser.add_argument("--runs", type=int, default=5, help="runs; medians are shown")
    parser.add_argument("--batch", type=int, default=2000, help="events per batch")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--cprofile",
        type=int,
        default=0,
        metavar="TOP",
        help="instead: one run under cProfile, print the TOP functions",
    )
    parser.add_argument(
        "--write", action="store_true", help="update the issue-2 section of BENCHMARKS.md"
    )
    args = parser.parse_args(argv)
    if args.write and args.cprofile:
        parser.error("--cprofile figures include the profiler's overhead; do not --write them")
    spec = DataSpec(n=args.events, users=args.users, products=args.products, seed=args.seed)
    console.log(f"generating {spec.n:,} events")
    prep = prepare(spec, args.batch)
    results = asyncio.run(measure(prep, args.runs, args.cprofile))
    if not results:
        return 0
    body = "\n".join(
        [
            render(results, prep.n),
            "",
            "Conditions:",
            "",
            *conditions(spec, args.runs, args.batch, machine_facts()),
        ]
    )
    print(body)
    if args.write:
        write_subsection(SUBSECTION, body)
        console.log("updated BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
