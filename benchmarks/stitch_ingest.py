"""Ingest cost of Segment calls carrying both ids (identity stitching), BENCHMARKS.md.

``route`` in process on 20,000 ``Product Viewed`` calls of 500 users, in batches of 500, with
only a ``userId`` and with a ``userId`` and an ``anonymousId`` on every call; median of 3.

    python benchmarks/stitch_ingest.py
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import orjson

from schemas.validate import Limits
from stream.worker.ingest import Inbound, route

NOW = 1_767_225_600_000
CALLS, BATCH, USERS = 20_000, 500, 500


def call(i: int, both: bool) -> dict[str, Any]:
    props = {"product_id": f"p{i % 50}", "name": "trail shoe", "category": "Shoes"}
    c: dict[str, Any] = {"type": "track", "event": "Product Viewed", "messageId": f"m{i}"}
    c |= {"userId": f"u{i % USERS}", "timestamp": NOW - 1000, "properties": props}
    if both:
        c["anonymousId"] = f"a{i % USERS}"
    return c


def run(both: bool) -> tuple[float, int]:
    msgs = [Inbound("in", 0, i, None, orjson.dumps(call(i, both))) for i in range(CALLS)]
    times, size = [], 0
    for _ in range(3):
        started, size = time.perf_counter(), 0
        for s in range(0, CALLS, BATCH):
            routed = route(msgs[s : s + BATCH], Limits(), 8, NOW)
            size += sum(len(b) for bs in routed.bundles.values() for b in bs)
        times.append(time.perf_counter() - started)
    return statistics.median(times), size


def main() -> None:
    for both in (False, True):
        seconds, size = run(both)
        name = "both ids" if both else "userId only"
        print(f"{name}: {seconds / CALLS * 1e6:.1f} us/call, {CALLS / seconds:,.0f} calls/s, "
              f"routed bytes {size:,}")  # fmt: skip
    print("load", os.getloadavg())


if __name__ == "__main__":
    main()
