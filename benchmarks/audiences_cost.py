"""Added cost per event of audiences in the update stage, measured side by side.

    python benchmarks/audiences_cost.py            # 20k events, 10 audiences
    python benchmarks/audiences_cost.py --write    # ... and update BENCHMARKS.md

The worker's update stage in process (``BatchUpdater`` over a ``MemoryStore``, batches of
``--batch`` records, real tagger, the core features: no encoder), once without audiences and
once with ``--audiences`` rules (a mix over spend, orders, tags, recency, churn level, language
and consent), interleaved ``--repeats`` times on the same events; medians. Also counted: the
index operations each written user adds to the batch's one Redis pipeline, and the CPU of the
sweep's re-decision per due user (its Redis reads and writes are not in that figure).
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

from benchmarks.common import DataSpec, generate_events, machine_facts, write_section
from profiles.audiences.definitions import AudienceBook, definitions_from
from profiles.audiences.membership import decide
from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.store import Commit, CommitResult, MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.tags.extractor import TagExtractor

SECTION = "## Audiences: added cost per event (issue 20)"
DAY = 86_400_000


def rules(n: int) -> dict[str, Any]:
    shapes: list[dict[str, Any]] = [
        {"field": "spend", "op": ">=", "value": 200},
        {"field": "orders", "op": ">=", "value": 2},
        {"field": "days_since_last_event", "op": "<=", "value": 7},
        {"field": "days_since_purchase", "op": ">", "value": 30},
        {"field": "churn_level", "op": "in", "value": ["medium", "high"]},
        {"field": "language", "op": "==", "value": "en"},
        {"field": "tags", "op": "contains_any", "value": ["手机", "咖啡", "shoes"]},
        {
            "all": [
                {"field": "orders", "op": ">=", "value": 1},
                {"not": {"field": "consent", "op": "==", "value": False}},
                {"field": "days_since_last_event", "op": "<=", "value": 30},
            ]
        },
        {
            "any": [
                {"field": "spend", "op": ">", "value": 1000},
                {"field": "events", "op": ">", "value": 20},
            ]
        },
        {"field": "value_tier", "op": "in", "value": ["champions", "loyal"]},
    ]
    return {"audiences": [{"name": f"a{i}", "rule": shapes[i % len(shapes)]} for i in range(n)]}


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.written = 0

    async def commit(self, commit: Commit) -> CommitResult:
        self.ops += len(commit.ops)
        self.written += len(commit.profiles)
        return await super().commit(commit)


async def run_once(
    records: list[Record], tagger: Any, book: AudienceBook | None, batch: int
) -> tuple[float, CountingStore, int]:
    config = ProfileConfig()
    store = CountingStore()
    updater = BatchUpdater(
        store, config, tagger, builtin_features(partitions=4, config=config, audiences=book)
    )
    changes = 0
    started = time.perf_counter()
    for i in range(0, len(records), batch):
        result = await updater.process(records[i : i + batch])
        changes += len(result.changes("audience_changed"))
    return time.perf_counter() - started, store, changes


async def main_async(args: argparse.Namespace) -> None:
    events = generate_events(DataSpec(n=args.events, users=args.users, products=args.products))
    records = [Record(InputPartition("bench", 0), i, e) for i, e in enumerate(events)]
    tagger = TagExtractor()
    tagger.warm_up()
    book = AudienceBook()
    book.current = definitions_from(rules(args.audiences), 1)
    await run_once(records, tagger, None, args.batch)  # warm-up, not timed
    off_s: list[float] = []
    on_s: list[float] = []
    on_store: CountingStore | None = None
    off_store: CountingStore | None = None
    changes = 0
    for _ in range(args.repeats):
        wall, off_store, _ = await run_once(records, tagger, None, args.batch)
        off_s.append(wall)
        wall, on_store, changes = await run_once(records, tagger, book, args.batch)
        on_s.append(wall)
    assert on_store is not None and off_store is not None
    off, on = statistics.median(off_s), statistics.median(on_s)
    n = len(records)
    added_ops = (on_store.ops - off_store.ops) / max(on_store.written, 1)
    # The sweep's CPU per due user: every stored user re-decided a month after the history.
    profiles, _ = await on_store.load(list(on_store.profiles), ())
    later = max(p.last_ts or 0 for p in profiles.values()) + 30 * DAY
    started = time.perf_counter()
    for profile in profiles.values():
        decide(book, profile, later, 4)
    sweep_us = (time.perf_counter() - started) / max(len(profiles), 1) * 1e6
    facts = machine_facts()
    lines = [
        f"`python benchmarks/audiences_cost.py`: the update stage in process (`BatchUpdater`, "
        f"`MemoryStore`, real tagger, core features, batches of {args.batch}) on {n:,} generated "
        f"events ({args.users:,} users), without and with {args.audiences} audience rules "
        "(spend, orders, tags, recency, churn level, language, consent, nested all/any/not), "
        f"interleaved, median of {args.repeats} runs each.",
        "",
        "| update stage | µs / event | events/s |",
        "| --- | --- | --- |",
        f"| audiences off | {off / n * 1e6:.1f} | {n / off:,.0f} |",
        f"| {args.audiences} audiences | {on / n * 1e6:.1f} | {n / on:,.0f} |",
        "",
        f"- Added cost: **{(on - off) / n * 1e6:.1f} µs per event** ({on / off:.2f}× the stage "
        f"without); {changes:,} `audience_changed` events ({changes / n:.2f} per event).",
        f"- Redis: **{added_ops:.2f} more index operations per written user** in the batch's one "
        "pipeline (SADD of each current membership, SREM of those left, ZADD/ZREM of the due "
        "index, SADD to the population set at the first decision); no extra round trip.",
        f"- Sweep: {sweep_us:.1f} µs of CPU per due user to re-decide "
        f"({len(profiles):,} users a month later), plus its Redis reads and writes.",
        f"- Machine: {facts['nproc']} CPUs, {facts['cpu']}, load {facts['load']}; "
        f"{facts['date']}; code: {facts['code']}.",
    ]
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section(SECTION, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--audiences", type=int, default=10)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
