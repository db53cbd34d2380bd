"""Per-event cost of ``decode`` for our own events, Segment-spec calls and registry framing.

    python benchmarks/decode_formats.py

In-process, one message at a time (as ingest calls it): microseconds per call, the best of
5 repeats of 20,000 calls each, for a typical view and a two-item order in each format.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from schemas.framing import frame
from schemas.validate import Limits, decode

NOW_MS = 1_735_689_600_000
LIMITS = Limits(registry_framing=True)
CONTEXT = {"library": {"name": "analytics.js", "version": "4.1.0"}, "ip": "203.0.113.9"}
VIEW = {
    "type": "track",
    "event": "Product Viewed",
    "messageId": "ajs-next-1714557600000-1",
    "userId": "u-1001",
    "anonymousId": "a-77",
    "timestamp": "2024-05-01T10:00:00.000Z",
    "context": CONTEXT,
    "properties": {"product_id": "p-1", "name": "Trail Shoes", "category": "Shoes", "price": 80.5},
}
ORDER = {
    "type": "track",
    "event": "Order Completed",
    "messageId": "m-5",
    "userId": "u-1001",
    "timestamp": "2024-05-01T10:05:00.250Z",
    "context": CONTEXT,
    "properties": {
        "order_id": "o-1",
        "total": 633.0,
        "currency": "EUR",
        "products": [
            {"product_id": "p-1", "name": "Phone", "price": 299.0, "quantity": 2},
            {"product_id": "p-7", "price": 35.0},
        ],
    },
}


def per_call_us(raw: bytes, calls: int = 20_000) -> float:
    assert isinstance(decode(raw, LIMITS, NOW_MS), dict)
    best = min(timeit.repeat(lambda: decode(raw, LIMITS, NOW_MS), number=calls, repeat=5))
    return best / calls * 1e6


def main() -> None:
    ours_view = orjson.dumps(decode(orjson.dumps(VIEW), LIMITS, NOW_MS))
    ours_order = orjson.dumps(decode(orjson.dumps(ORDER), LIMITS, NOW_MS))
    rows = [
        ("our click", ours_view),
        ("our click, framed", frame(ours_view, 7)),
        ("Segment Product Viewed", orjson.dumps(VIEW)),
        ("Segment Product Viewed, framed", frame(orjson.dumps(VIEW), 7)),
        ("our purchase (2 items)", ours_order),
        ("Segment Order Completed (2 products)", orjson.dumps(ORDER)),
    ]
    print("| message | bytes | µs/call |")
    print("| --- | --- | --- |")
    for name, raw in rows:
        print(f"| {name} | {len(raw)} | {per_call_us(raw):.2f} |")


if __name__ == "__main__":
    main()
