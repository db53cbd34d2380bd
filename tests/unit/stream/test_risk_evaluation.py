"""The planted abuse and the risk evaluation on a small generated history."""

from __future__ import annotations

from pathlib import Path

from stream.evaluation import risk
from stream.simulation.attacks import AttackConfig, plant
from stream.simulation.generator import TrafficConfig, TrafficGenerator


def test_planted_incidents_are_in_time_order_and_at_known_times() -> None:
    gen = TrafficGenerator(TrafficConfig(seed=3, users=80))
    history = list(gen.history(8))
    config = AttackConfig(per_kind=3, first_day=1.0, last_day=7.0)
    events, incidents = plant(history, gen.catalog(), config, gen.config.start_ms)
    ts = [int(e["ts"]) for e in events]
    assert ts == sorted(ts) and len(events) > len(history)
    assert [e for e in events if not e["event_id"].startswith("atk-")] == history
    kinds = {i.kind for i in incidents}
    assert {"bot", "card_testing", "review_spam"} <= kinds
    for incident in incidents:
        mine = [
            e
            for e in events
            if e["event_id"].startswith("atk-") and e["user_id"] == incident.user_id
        ]
        assert min(int(e["ts"]) for e in mine) == incident.start
        assert max(int(e["ts"]) for e in mine) == incident.end
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids)
    # Off unless asked for: the plain history is untouched.
    assert list(gen.history(8)) == history


def test_the_report_finds_the_bots_and_writes_its_section(tmp_path: Path) -> None:
    text = risk.evaluate(users=80, days=8, per_kind=3, seed=3)
    assert text.startswith(risk.SECTION)
    bot = next(line for line in text.splitlines() if line.startswith("| bot"))
    assert "| 3 | 1.00 | 1.00 | 1.00 (3/3) |" in bot
    out = tmp_path / "EVALUATION.md"
    assert (
        risk.main(
            [
                "--users",
                "60",
                "--days",
                "6",
                "--per-kind",
                "2",
                "--write",
                "--evaluation-file",
                str(out),
            ]
        )
        == 0
    )
    assert risk.SECTION in out.read_text(encoding="utf-8")
