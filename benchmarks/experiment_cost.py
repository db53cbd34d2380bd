"""Added cost per event of the experiment feature in the update stage, side by side.

    python benchmarks/experiment_cost.py           # 50k events, print the table
    python benchmarks/experiment_cost.py --write   # ... and update BENCHMARKS.md

The worker's update stage in process (``BatchUpdater`` over a ``MemoryStore``, batches of
``--batch`` records, the real tagger, the base profile only: no encoder), once without and once
with the experiment feature (arm assignment, attribution of every counted event, the per-arm
counter contributions and the ``xp`` field), interleaved ``--repeats`` times on the same
events; medians (the reuse of ``benchmarks/risk_cost.py``). Without an encoder there are no
recommendation lists, so purchases find nothing to attribute: the cost of matching against
lists (at most 20 lists of k items per user) is not in these figures. No Redis or Kafka: the
counters are one more fenced script call per owner partition per batch, the field rides in
the user's existing write.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from benchmarks.common import DataSpec, generate_events, machine_facts
from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.experiments.assign import parse_arms
from profiles.experiments.feature import ExperimentConfig
from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.tags.extractor import TagExtractor
from stream.evaluation.markdown import write_section

SECTION = "## Experiments: added cost per event (issue 20)"
EXPERIMENT = ExperimentConfig(
    "bench", parse_arms("treatment:0.9,holdout:0.1"), ("holdout",), 7 * 86_400_000
)


async def run_once(
    records: list[Record], tagger: Any, on: bool, batch: int
) -> tuple[float, MemoryStore]:
    config = ProfileConfig()
    features = builtin_features(partitions=4, config=config, experiment=EXPERIMENT if on else None)
    store = MemoryStore()
    updater = BatchUpdater(store, config, tagger, features)
    started = time.perf_counter()
    for i in range(0, len(records), batch):
        await updater.process(records[i : i + batch])
    return time.perf_counter() - started, store


async def main_async(args: argparse.Namespace) -> str:
    events = generate_events(DataSpec(n=args.events, users=args.users, products=args.products))
    records = [Record(InputPartition("bench", 0), i, e) for i, e in enumerate(events)]
    tagger = TagExtractor()
    tagger.warm_up()
    await run_once(records[:5000], tagger, True, args.batch)  # warm-up, not timed
    off_s: list[float] = []
    on_s: list[float] = []
    store = MemoryStore()
    for _ in range(args.repeats):
        off_s.append((await run_once(records, tagger, False, args.batch))[0])
        wall, store = await run_once(records, tagger, True, args.batch)
        on_s.append(wall)
    off, on = statistics.median(off_s), statistics.median(on_s)
    users = sorted({e["user_id"] for e in events if e["type"] != "product"})
    sizes = sorted(len(store.field(u, "xp") or b"") for u in users)
    arms = [orjson.loads(store.field(u, "xp") or b'{"arm": "-"}')["arm"] for u in users]
    held = arms.count("holdout")
    n = len(records)
    facts = machine_facts()
    lines = [
        SECTION,
        "",
        f"`python benchmarks/experiment_cost.py` ({facts['date']}; {facts['nproc']} CPUs, "
        f"{facts['cpu']}; code {facts['code']}; load {facts['load']}): {n:,} generated events "
        f"({len(users):,} users), the update stage in process (`BatchUpdater` over `MemoryStore`, "
        f"batches of {args.batch}, the real tagger, no encoder), median of {args.repeats} "
        "interleaved runs.",
        "",
        "| update stage | µs / event | events/s |",
        "| --- | --- | --- |",
        f"| experiment off | {off / n * 1e6:.1f} | {n / off:,.0f} |",
        f"| experiment on | {on / n * 1e6:.1f} | {n / on:,.0f} |",
        "",
        f"- Added cost: **{(on - off) / n * 1e6:.1f} µs per event** "
        f"({on / off:.2f}x the base stage); spread off {min(off_s) / n * 1e6:.1f}-"
        f"{max(off_s) / n * 1e6:.1f}, on {min(on_s) / n * 1e6:.1f}-{max(on_s) / n * 1e6:.1f} µs.",
        f"- Field `xp`: median {sizes[len(sizes) // 2]:,} bytes, p99 "
        f"{sizes[int(len(sizes) * 0.99)]:,} bytes per user (no lists stored: no encoder); "
        f"{held} of {len(users):,} users in the holdout.",
        "- In the worker the stage also encodes texts and writes Redis (see the breakdown "
        "above), so the share is smaller there; the field rides in the user's existing write.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    text = asyncio.run(main_async(args))
    print(text)
    if args.write:
        write_section(Path("BENCHMARKS.md"), SECTION, text, title="Benchmarks")


if __name__ == "__main__":
    main()
