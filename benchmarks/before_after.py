"""The worker of two checkouts, side by side on one broker, one Redis and one pre-filled topic.

    python benchmarks/before_after.py --old /path/to/old/checkout --new . --events 30000

Each round runs the real worker (``python -m stream worker``) of both trees, for every
configuration of ``throughput.py`` (core: optional model features off; default), with the
order of the trees flipped every round (old, new, then new, old, ...) so a drift in the
machine's load falls on both. A worker runs with its tree as working directory and first on
``PYTHONPATH``, so that tree's code is what is imported (the shared venv's editable install
points at another checkout). Everything else is ``throughput.py``'s measurement: fresh app id,
fresh topics and a flushed Redis per run, ``/stats`` polled, group join excluded.

The machine this project runs on is shared: only the ratio of medians measured in the same
run means anything. Samples are appended to ``--json`` as they come, so a run cut short
still leaves its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis

from benchmarks.common import (
    DataSpec,
    encode,
    generate_events,
    median,
    scratch_services,
    service_pid,
)
from benchmarks.throughput import (
    BUSY_CORES,
    VARIANTS,
    Child,
    Meter,
    Options,
    _settled,
    console,
    prefill,
    run_child,
    worker_child,
)
from stream.devtools.services import BROKER, REDIS


class TreeChild(Child):
    """A worker started from another checkout: its directory first on the import path."""

    def __init__(self, base: Child, tree: Path) -> None:
        env = {**base.env, "PYTHONPATH": str(tree)}
        super().__init__(base.name, base.argv, env, base.port, base.log_path)
        self.tree = tree

    def start(self) -> Child:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.tree,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self


async def run(
    opts: Options, trees: dict[str, Path], out: Path
) -> dict[str, list[dict[str, float]]]:
    messages = encode(generate_events(opts.data))
    results: dict[str, list[dict[str, float]]] = {}
    with scratch_services() as (services, base):
        brokers = services.broker_url.removeprefix("kafka://")
        meter = Meter(service_pid(services, BROKER), service_pid(services, REDIS))
        (base / "faust").mkdir()
        topic = f"bench-in-{uuid.uuid4().hex[:8]}"
        rate = await prefill(brokers, topic, messages)
        console.log(f"pre-filled {topic}: {len(messages):,} events at {rate:,.0f}/s")
        del messages
        gc.collect()
        redis = aioredis.Redis.from_url(services.redis_url)
        try:
            for rep in range(1, opts.repeats + 1):
                order = list(trees) if rep % 2 else list(reversed(trees))
                for name in opts.pipelines:
                    variant = VARIANTS[name]
                    for label in order:
                        await redis.flushdb()
                        tag = f"{label}-{rep}-{uuid.uuid4().hex[:6]}"
                        child = TreeChild(
                            worker_child(services, base, topic, tag, opts, variant), trees[label]
                        )
                        s = await run_child(child, meter, opts.data.n, opts, _settled)
                        row = {
                            "rate": s.rate,
                            "ingest": s.extra.get("ingest_rate", float("nan")),
                            "cpu": s.cpu,
                            "others": s.others,
                            "dead": s.extra.get("dead", 0.0),
                            "emitted": s.extra.get("emitted", 0.0),
                            "encoded": s.extra.get("encoded", 0.0),
                            "encoder_s": s.extra.get("encoder_s", 0.0),
                        }
                        key = f"{name}:{label}"
                        results.setdefault(key, []).append(row)
                        console.log(
                            f"[{rep}] {key:<13} {s.rate:>7,.0f} events/s end to end, ingest "
                            f"{row['ingest']:,.0f}/s (cpu {s.cpu:.0%}, others "
                            f"{s.others:.2f} cores, dead {row['dead']:.0f})"
                        )
                        out.write_text(json.dumps(results, indent=1))
        finally:
            await redis.aclose()
    return results


def _value(row: dict[str, float], metric: str) -> float:
    # CPU seconds per event, in µs: less sensitive than wall time to others' load on the
    # machine (they take cores away, not instructions), though not immune (caches, SMT).
    if metric == "cpu_us":
        return 1e6 * row["cpu"] / row["rate"]
    return row[metric]


def table(results: dict[str, list[dict[str, float]]], pipelines: tuple[str, ...]) -> str:
    lines = [
        "| configuration, measure | old: runs | old median | new: runs | new median | new/old |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in pipelines:
        for metric, what in (
            ("rate", "end to end, events/s"),
            ("ingest", "ingest stage, events/s"),
            ("cpu_us", "worker CPU µs/event"),
        ):
            cells = []
            meds = []
            for label in ("old", "new"):
                rows = results.get(f"{name}:{label}", [])
                values = [_value(r, metric) for r in rows]
                runs = ", ".join(
                    f"{v:,.0f}" + ("†" if r["others"] > BUSY_CORES else "")
                    for v, r in zip(values, rows, strict=True)
                )
                med = median(values)
                meds.append(med)
                cells += [runs, f"**{med:,.0f}**"]
            ratio = meds[1] / meds[0] if meds[0] else float("nan")
            lines.append(f"| {name}, {what} | " + " | ".join(cells) + f" | **{ratio:.2f}** |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="the checkout measured as 'old'")
    parser.add_argument("--new", type=Path, default=Path("."), help="the 'new' checkout")
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pipeline", action="append", choices=tuple(VARIANTS), default=None)
    parser.add_argument("--json", type=Path, default=Path("before_after.json"))
    args = parser.parse_args()
    opts = Options(
        data=DataSpec(n=args.events, users=5000, products=3000, seed=7),
        repeats=args.repeats,
        poll_s=0.05,
        batch_max=2000,
        batch_within=0.05,
        bundle_max=64,
        with_iter=False,
        session_timeout=6.0,
        run_timeout=600.0,
        pipelines=tuple(args.pipeline or VARIANTS),
    )
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    started = time.monotonic()
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    results = asyncio.run(run(opts, trees, args.json))
    print(table(results, opts.pipelines))
    print(f"\nload average before: {load}; {time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
