"""``python -m stream validate FILE.jsonl`` run as a user would, on a temporary file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from schemas import framing
from schemas.validate import Limits, validate_output
from stream.worker import dead_letters
from stream.worker.ingest import Inbound, route

ROOT = Path(__file__).resolve().parents[3]
TS = "2024-05-01T10:00:00Z"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RTP_DATA_DIR": str(ROOT / ".dev" / "faust-test")}
    return subprocess.run(
        [sys.executable, "-m", "stream", "validate", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _line(obj: object) -> bytes:
    return orjson.dumps(obj) + b"\n"


def test_validate_summarises_reasons_with_line_numbers(tmp_path: Path) -> None:
    ours = {"event_id": "e", "type": "search", "schema_version": 1, "user_id": "u", "ts": 1.7e12}
    segment = {"type": "track", "messageId": "m", "userId": "u", "timestamp": TS}
    viewed = {**segment, "event": "Product Viewed", "properties": {"product_id": "p"}}
    lines = [
        _line({**ours, "query": "boots"}),  # 1 valid
        b"\n",  # 2 blank: skipped
        _line(viewed),  # 3 valid (Segment)
        b"{oops\n",  # 4
        _line({"type": "group", "userId": "u"}),  # 5
        _line({**segment, "event": "Order Refunded", "properties": {}}),  # 6 no order_id
        _line({**ours}),  # 7 no query
        _line({"type": "group", "groupId": "g"}),  # 8
        _line({"type": "group"}),  # 9
        _line({"type": "group"}),  # 10: beyond the 3 examples shown
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(lines))
    done = _run(str(path))
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert f"{path}: 9 events, 2 valid, 7 invalid" in out
    assert "valid by kind: click 1, search 1" in out
    assert "       4  unsupported_segment_event" in out
    for number in (5, 8, 9):
        assert f"line {number}: " in out
    assert "line 10:" not in out
    assert "       1  invalid_json" in out and "line 4: " in out
    assert "       2  schema_violation" in out and "line 6: " in out and "line 7: " in out


def test_validate_passes_a_clean_file_and_fails_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    event = {"event_id": "e", "type": "search", "schema_version": 1, "user_id": "u"}
    path.write_bytes(_line({**event, "ts": 1_714_557_600_000, "query": "q"}))
    done = _run(str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 events, 1 valid, 0 invalid" in done.stdout
    missing = _run(str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr


def test_ingest_dead_letter_of_a_framed_value_names_its_schema_id() -> None:
    value = framing.frame(b'{"type": "group", "userId": "u"}', 77)
    message = Inbound("site-events", 3, 10, None, value)
    routed = route([message], Limits(registry_framing=True), 4, 1_735_689_600_000)
    (dead,) = routed.dead
    assert (dead.reason, dead.schema_id) == ("unsupported_segment_event", 77)
    headers = dead_letters.headers(dead.reason, dead.detail, "site-events", 3, 10, "ingest", (), 77)
    parsed = dead_letters.parse(headers)
    assert parsed[dead_letters.SCHEMA_ID] == "77"
    validate_output("dead_letter", parsed)
