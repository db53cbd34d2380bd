"""The worker's per-batch recording: positions, lag gauges, the event-time watermark."""

from __future__ import annotations

import time

from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.pipeline.updater import BatchResult
from stream.worker.ingest import Inbound, Routed
from stream.worker.metrics import Metrics
from stream.worker.observe import Observer


def test_positions_become_lag_and_are_forgotten_with_their_partition() -> None:
    metrics = Metrics()
    observer = Observer(metrics)
    stamp = int(time.time() * 1000) - 10_000
    messages = [
        Inbound("in", 0, 4, None, b"{}", timestamp_ms=stamp),
        Inbound("in", 1, 9, None, b""),
    ]
    observer.ingest(messages, Routed(kinds={"page_view": 2}))
    assert observer.positions == {("in", 0): (5, stamp), ("in", 1): (10, 0)}
    observer.lag({("in", 0): 8, ("in", 1): 10, ("in", 2): 3, ("in", 3): None})
    sample = metrics.registry.get_sample_value
    assert sample("rtp_consumer_lag_messages", {"topic": "in", "partition": "0"}) == 3
    assert sample("rtp_consumer_lag_seconds", {"topic": "in", "partition": "0"}) >= 10
    assert sample("rtp_consumer_lag_messages", {"topic": "in", "partition": "1"}) == 0
    assert sample("rtp_consumer_lag_messages", {"topic": "in", "partition": "2"}) is None
    assert sample("rtp_events_total", {"kind": "page_view"}) == 2
    observer.keep({("in", 1)}, {"in"})
    assert list(observer.positions) == [("in", 1)]
    assert sample("rtp_consumer_lag_messages", {"topic": "in", "partition": "0"}) is None


def test_update_moves_the_watermark_forward_only() -> None:
    metrics = Metrics()
    observer = Observer(metrics)
    records = [
        Record(InputPartition("in", 0), 1, {"ts": 2_000}),
        Record(InputPartition("in", 0), 2, {"ts": 1_000}),
    ]
    bundle = Inbound("routed", 3, 7, None, b"")
    observer.update([bundle], records, BatchResult(applied=2), 0.01, None)
    assert observer.watermark_ms == 2_000
    observer.update(
        [bundle], [Record(InputPartition("in", 0), 3, {"ts": 500})], BatchResult(), 0.01, None
    )
    assert observer.watermark_ms == 2_000
    assert observer.positions == {("routed", 3): (8, 0)}
    sample = metrics.registry.get_sample_value
    assert sample("rtp_events_applied_total", {"outcome": "applied"}) == 2
    assert sample("rtp_messages_consumed_total", {"stage": "update"}) == 2


def test_risk_flags_are_counted_by_rule_and_status() -> None:
    from profiles.core.profile import Profile
    from profiles.pipeline.feature import Emit
    from profiles.risk.detector import RiskChange

    metrics = Metrics()
    observer = Observer(metrics)
    p = Profile("u")

    def emit(rule: str, status: str) -> Emit:
        change = RiskChange(p, rule, status, {}, 1)
        return Emit("risk", "risk_flag", "u", lambda now: {}, change)

    result = BatchResult(emits=[emit("bot_clicks", "opened"), emit("bot_clicks", "opened")])
    result.emits.append(emit("takeover", "cleared"))
    observer.update([Inbound("routed", 0, 1, None, b"")], [], result, 0.01, None)
    sample = metrics.registry.get_sample_value
    assert sample("rtp_risk_flags_total", {"rule": "bot_clicks", "status": "opened"}) == 2
    assert sample("rtp_risk_flags_total", {"rule": "takeover", "status": "cleared"}) == 1
    assert sample("rtp_emitted_total", {"type": "risk_flag"}) == 3
