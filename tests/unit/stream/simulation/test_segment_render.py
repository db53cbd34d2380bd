"""Generated traffic rendered as Segment calls translates back to the same events."""

from __future__ import annotations

from collections import Counter

import orjson

from schemas.segment import Refusal, translate
from schemas.validate import Limits, Rejected, decode
from stream.simulation.generator import TrafficConfig, TrafficGenerator
from stream.simulation.segment import RENDERERS, as_translated, render


def _traffic() -> list[dict[str, object]]:
    gen = TrafficGenerator(TrafficConfig(users=60, products=120, erasure_rate=0.01))
    return [*gen.catalog(), *gen.history(20)]


def test_round_trip_every_mapped_kind() -> None:
    events = _traffic()
    calls: Counter[str] = Counter()
    for event in events:
        call = render(event)
        if event["type"] not in RENDERERS:
            assert call is event  # sent as our own event
            continue
        calls[f"{call['type']}:{call.get('event', '')}"] += 1
        back = translate(call)
        assert not isinstance(back, Refusal), (event, call, back)
        assert back == as_translated(event)
    assert set(calls) == {
        "track:Product Viewed",
        "page:",
        "track:Product Added",
        "track:Products Searched",
        "track:Order Completed",
        "track:Product Reviewed",
    }, calls


def test_rendered_calls_pass_the_workers_decode() -> None:
    # Through the worker's own decode path (JSON bytes, contracts, limits), not just translate.
    events = _traffic()
    now = max(int(str(e["ts"])) for e in events) + 1
    for event in events:
        decoded = decode(orjson.dumps(render(event)), Limits(), now)
        assert not isinstance(decoded, Rejected), (event, decoded)
        assert decoded["event_id"] == event["event_id"]
        assert decoded["type"] == event["type"]


def test_calls_carry_segment_fields() -> None:
    purchase = next(e for e in _traffic() if e["type"] == "purchase")
    call = render(purchase)
    assert call["timestamp"].endswith("Z") and "T" in call["timestamp"]
    assert call["userId"] == purchase["user_id"]
    assert call["messageId"] == purchase["event_id"]
    assert call["properties"]["total"] == purchase["amount"]
    assert "session_id" not in call
