"""Added cost of frequently-bought-together per event: the pair counting of
``profiles/together/`` on the worker's batch path, against a real ``redis-server``.

    python benchmarks/together.py            # print the table
    python benchmarks/together.py --write    # ... and update BENCHMARKS.md

Generated traffic (planted complements, ``--complements``) is applied in batches of
``--batch`` events by the worker's :class:`BatchUpdater` and :class:`RedisStore` (one load and
one commit pipeline per batch, AOF ``appendfsync always``), once with the base profile only and
once with :class:`TogetherFeature` (session learning, pair contributions, one fenced script per
touched item and partition); the same events, a fresh database each run. The difference is what
the feature adds: worker time (wall, the process is single-threaded) and redis-server CPU, per
event. Median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    cpu_seconds,
    facts_lines,
    machine_facts,
    markdown_table,
    median,
    scratch_services,
    service_pid,
)
from benchmarks.common import write_section as write_bench
from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.pipeline.feature import Feature
from profiles.pipeline.updater import BatchUpdater
from profiles.redis.store import RedisStore
from profiles.together.feature import TogetherFeature
from profiles.together.session import SessionConfig
from stream.devtools.services import REDIS
from stream.simulation.generator import DAY_MS, TrafficConfig, TrafficGenerator

SECTION = "## Frequently bought together: added cost per event (issue 20)"


class Words:
    """A cheap tagger: the cost under test is the pair counting, not tags."""

    def text(self, text: str) -> tuple[tuple[str, float], ...]:
        return ()

    def category(self, path: Any) -> tuple[tuple[str, float], ...]:
        return ()


async def run_once(
    url: str, records: list[list[Record]], together: bool, views: bool = True
) -> dict[str, float]:
    store = RedisStore.from_url(url)
    await store.client.flushall()
    await store.load_scripts()
    features: list[Feature] = []
    if together:
        features.append(TogetherFeature(SessionConfig(views=views), 4, 30 * DAY_MS, 50))
    updater = BatchUpdater(store, ProfileConfig(), Words(), features)
    pairs = 0
    started, cpu = time.perf_counter(), time.process_time()
    for batch in records:
        result = await updater.process(batch)
        pairs += result.counts.get("pair_updates", 0)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    await store.close()
    return {"seconds": seconds, "cpu": cpu, "pairs": pairs}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    gen = TrafficGenerator(
        TrafficConfig(
            seed=7, users=args.users, products=args.products, complement_p=args.complements
        )
    )
    events = [e for e in gen.history(args.days) if e["type"] != "product"]
    source = InputPartition("site-events", 0)
    records = [Record(source, i, e) for i, e in enumerate(events)]
    batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    out: dict[str, Any] = {"events": len(events), "batches": len(batches)}
    with scratch_services(redis_only=True) as (services, _):
        pid = service_pid(services, REDIS)
        url = services.redis_url
        runs = (("base", False, True), ("together", True, True), ("no views", True, False))
        for name, on, views in runs:
            walls, workers, cpus = [], [], []
            pairs = 0.0
            for _ in range(args.repeats):
                before = cpu_seconds(pid)
                got = await run_once(url, batches, on, views)
                walls.append(got["seconds"])
                workers.append(got["cpu"])
                cpus.append(cpu_seconds(pid) - before)
                pairs = got["pairs"]
            out[name] = {
                "wall": median(walls),
                "cpu": median(workers),
                "redis": median(cpus),
                "pairs": pairs,
            }
    return out


def report(args: argparse.Namespace, got: dict[str, Any]) -> str:
    n = got["events"]
    base, tg, bought = got["base"], got["together"], got["no views"]
    rows = []
    runs = (
        ("base profile", base),
        ("base + together", tg),
        ("base + together, `RTP_TOGETHER_VIEWS=false`", bought),
    )
    for label, m in runs:
        rows.append(
            [
                label,
                f"{m['cpu'] / n * 1e6:.1f}",
                f"{m['wall'] / n * 1e6:.1f}",
                f"{m['redis'] / n * 1e6:.1f}",
                f"{m['pairs'] / n:.2f}",
            ]
        )
    for label, m in (("**added**", tg), ("**added**, no co-views", bought)):
        added = [(m[x] - base[x]) / n * 1e6 for x in ("cpu", "wall", "redis")]
        rows.append([label, *(f"**{a:.1f}**" for a in added), ""])
    facts = machine_facts()
    lines = [
        SECTION,
        "",
        "What `RTP_TOGETHER` adds to the update path: per event, the worker's CPU and wall "
        "time (batch updater + Redis store, one load and one commit pipeline per batch, "
        "single-threaded; wall includes waiting for Redis) and redis-server CPU (the fenced "
        "pair scripts). Regenerate with "
        "`python benchmarks/together.py --write`.",
        "",
        markdown_table(
            [
                "run",
                "worker CPU µs/event",
                "worker wall µs/event",
                "redis-server CPU µs/event",
                "pair updates/event",
            ],
            rows,
        ),
        "",
        f"- {n:,} generated events ({args.users} users, {args.products} products, "
        f"{args.days:g} days, planted complements {args.complements:g}), batches of "
        f"{args.batch} ({got['batches']}), median of {args.repeats} runs, fresh database each; "
        "base = counts, RFM and fences only (no tags, vectors or other features), so the "
        "added figure is the feature's whole cost, not a share of it.",
        "- A pair update is one neighbour increment (both directions count); marginals and "
        "session counts ride in one script per owner partition per batch.",
        "",
        "Conditions:",
        "",
        *facts_lines(facts),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--days", type=float, default=5)
    parser.add_argument("--complements", type=float, default=0.3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    text = report(args, asyncio.run(measure(args)))
    print(text)
    if args.write:
        write_bench(SECTION, text.split("\n", 1)[1])  # the body: it writes the heading
    return 0


if __name__ == "__main__":
    sys.exit(main())
