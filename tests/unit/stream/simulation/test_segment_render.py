"""Generated traffic rendered as Segment calls translates back to the same events."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson

from schemas.segment import Refusal, translate
from schemas.validate import Limits, Rejected, decode
from stream.simulation.anonymous import with_logins
from stream.simulation.generator import TrafficConfig, TrafficGenerator
from stream.simulation.segment import RENDERERS, as_translated, render

ROOT = Path(__file__).resolve().parents[4]


def _traffic() -> list[dict[str, object]]:
    config = TrafficConfig(users=60, products=120, erasure_rate=0.01, refund_p=0.3, removal_p=0.1)
    gen = TrafficGenerator(config)
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
        "track:Product Removed",
        "track:Order Refunded",
        "track:Order Cancelled",
    }, calls


def test_anonymous_sessions_and_logins_round_trip() -> None:
    events = list(with_logins(_traffic(), share=0.5))
    kinds: Counter[str] = Counter()
    for event in events:
        if event["type"] not in RENDERERS:
            continue
        call = render(event)
        anonymous = str(event["user_id"]).startswith("anon:")
        assert ("userId" in call) != anonymous and ("anonymousId" in call) == (
            anonymous or event["type"] == "identify")  # fmt: skip
        kinds["identify" if event["type"] == "identify" else "anon" if anonymous else "user"] += 1
        assert translate(call) == as_translated(event)
    assert min(kinds.values()) > 0 and len(kinds) == 3, kinds


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


def test_produce_format_segment_writes_calls_that_validate(tmp_path: Path) -> None:
    out = tmp_path / "segment.jsonl"
    common = [sys.executable, "-m", "stream"]
    produce = [*common, "produce", "--history-days", "2", "--users", "20", "--products", "40"]
    fixes = ["--refunds", "0.5", "--removals", "0.2"]
    cmd = [*produce, *fixes, "--format", "segment", "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    types = Counter(str(line["type"]) for line in lines)
    assert types["track"] > 0 and types["page"] > 0, types
    names = Counter(str(line.get("event")) for line in lines)
    assert names["Product Removed"] > 0, names
    assert names["Order Refunded"] + names["Order Cancelled"] > 0, names
    assert set(types) <= {"track", "page", "product", "user_erasure"}, types
    checked = subprocess.run(
        [*common, "validate", str(out)], cwd=ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(lines)} events, {len(lines)} valid, 0 invalid" in checked.stdout
    # The default stays our own events.
    plain = tmp_path / "ours.jsonl"
    subprocess.run([*produce, "--out", str(plain)], check=True, cwd=ROOT)
    assert not any(b'"messageId"' in line for line in plain.read_bytes().splitlines())
    assert b'"refund"' not in plain.read_bytes()  # no corrections unless asked for
    bad = subprocess.run([*produce, "--refunds", "2", "--out", str(plain)], cwd=ROOT)
    assert bad.returncode != 0


def test_produce_logins_writes_anonymous_calls_and_identifies_that_validate(
    tmp_path: Path,
) -> None:
    out = tmp_path / "logins.jsonl"
    produce = [sys.executable, "-m", "stream", "produce", "--history-days", "1"]
    cmd = [*produce, "--users", "15", "--products", "30", "--logins", "0.5"]
    cmd += ["--format", "segment", "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    identifies = [c for c in lines if c["type"] == "identify"]
    anonymous = [c for c in lines if c["type"] != "identify" and "anonymousId" in c]
    assert identifies and anonymous and all("userId" not in c for c in anonymous)
    validate = [sys.executable, "-m", "stream", "validate", str(out)]
    checked = subprocess.run(validate, cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
