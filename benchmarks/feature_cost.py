"""The side-by-side harness of the feature cost benchmarks (``risk_cost.py``,
``experiment_cost.py``): one feature's added cost per event in the update stage.

The worker's update stage in process (``BatchUpdater`` over a ``MemoryStore``, batches of
``--batch`` records, the real tagger, the base profile only: no encoder), once without and once
with the feature (the keyword arguments of ``builtin_features`` that add it, made anew for every
run), interleaved ``--repeats`` times on the same events; medians. A benchmark adds its own
lines about the feature's stored field from the last timed run's store.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import DataSpec, generate_events, machine_facts
from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.tags.extractor import TagExtractor
from stream.evaluation.markdown import write_section

#: The ``builtin_features`` keyword arguments that add the measured feature (called per run,
#: so a stateful feature starts afresh every time).
Adds = Callable[[], dict[str, Any]]


@dataclass
class SideBySide:
    """The timed runs: seconds without and with the feature, the events' users, and the store
    of the last run with it."""

    n: int
    users: list[str]
    off_s: list[float]
    on_s: list[float]
    store: MemoryStore

    @property
    def off(self) -> float:
        return statistics.median(self.off_s)

    @property
    def on(self) -> float:
        return statistics.median(self.on_s)


async def run_once(
    records: list[Record], tagger: Any, adds: dict[str, Any], batch: int
) -> tuple[float, MemoryStore]:
    config = ProfileConfig()
    features = builtin_features(partitions=4, config=config, **adds)
    store = MemoryStore()
    updater = BatchUpdater(store, config, tagger, features)
    started = time.perf_counter()
    for i in range(0, len(records), batch):
        await updater.process(records[i : i + batch])
    return time.perf_counter() - started, store


async def side_by_side(args: argparse.Namespace, adds: Adds) -> SideBySide:
    events = generate_events(DataSpec(n=args.events, users=args.users, products=args.products))
    records = [Record(InputPartition("bench", 0), i, e) for i, e in enumerate(events)]
    tagger = TagExtractor()
    tagger.warm_up()
    await run_once(records[:5000], tagger, adds(), args.batch)  # warm-up, not timed
    off_s: list[float] = []
    on_s: list[float] = []
    store = MemoryStore()
    for _ in range(args.repeats):
        off_s.append((await run_once(records, tagger, {}, args.batch))[0])
        wall, store = await run_once(records, tagger, adds(), args.batch)
        on_s.append(wall)
    users = sorted({e["user_id"] for e in events if e["type"] != "product"})
    return SideBySide(len(records), users, off_s, on_s, store)


def report(
    section: str,
    script: str,
    label: str,
    args: argparse.Namespace,
    result: SideBySide,
    notes: list[str],
) -> str:
    """The BENCHMARKS.md section: the table of ``label`` off and on, the added cost, then the
    benchmark's own ``notes`` (bullets) and the closing remark on the worker."""
    n, off, on, off_s, on_s = result.n, result.off, result.on, result.off_s, result.on_s
    facts = machine_facts()
    lines = [
        section,
        "",
        f"`python benchmarks/{script}` ({facts['date']}; {facts['nproc']} CPUs, "
        f"{facts['cpu']}; code {facts['code']}; load {facts['load']}): {n:,} generated events "
        f"({len(result.users):,} users), the update stage in process (`BatchUpdater` over "
        f"`MemoryStore`, batches of {args.batch}, the real tagger, no encoder), median of "
        f"{args.repeats} interleaved runs.",
        "",
        "| update stage | µs / event | events/s |",
        "| --- | --- | --- |",
        f"| {label} off | {off / n * 1e6:.1f} | {n / off:,.0f} |",
        f"| {label} on | {on / n * 1e6:.1f} | {n / on:,.0f} |",
        "",
        f"- Added cost: **{(on - off) / n * 1e6:.1f} µs per event** "
        f"({on / off:.2f}x the base stage); spread off {min(off_s) / n * 1e6:.1f}-"
        f"{max(off_s) / n * 1e6:.1f}, on {min(on_s) / n * 1e6:.1f}-{max(on_s) / n * 1e6:.1f} µs.",
        *notes,
        "- In the worker the stage also encodes texts and writes Redis (see the breakdown "
        "above), so the share is smaller there; the field rides in the user's existing write.",
    ]
    return "\n".join(lines) + "\n"


def main(
    doc: str, section: str, measure: Callable[[argparse.Namespace], Coroutine[Any, Any, str]]
) -> None:
    """The benchmarks' command line: sizes, repeats, ``--write`` to update BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    text = asyncio.run(measure(args))
    print(text)
    if args.write:
        write_section(Path("BENCHMARKS.md"), section, text, title="Benchmarks")
