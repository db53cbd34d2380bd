"""What one worker records per batch: counters, histograms, positions, lag, the watermark.

:class:`Observer` owns the per-batch recording into the worker's :class:`Metrics`: the stages
(:mod:`stream.worker.flow`) call :meth:`Observer.ingest` and :meth:`Observer.update` after
each batch, the agents keep the positions to the owned partitions on a rebalance and turn
them into lag gauges on a timer. The event-time watermark it keeps is the churn sweep's
clock in replays (``RTP_CHURN_CLOCK=event``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection
from typing import TYPE_CHECKING

from profiles.risk.detector import RiskChange
from stream.worker.ingest import Inbound, Routed
from stream.worker.metrics import Metrics

if TYPE_CHECKING:
    from profiles.core.profile import Record
    from profiles.embedding.embedder import Embedder
    from profiles.pipeline.updater import BatchResult


class Observer:
    """Records each batch of one worker into its :class:`Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # (topic, partition) -> (next offset to process, broker timestamp ms of the last one)
        self.positions: dict[tuple[str, int], tuple[int, int]] = {}
        self.watermark_ms = 0  # latest event time seen by this worker
        self._cache_seen = (0, 0, 0)

    def ingest(self, messages: list[Inbound], routed: Routed) -> None:
        """An ingest batch was routed and acknowledged."""
        m = self.metrics
        m.consumed.labels("ingest").inc(len(messages))
        m.batches.labels("ingest").inc()
        m.last_batch.labels("ingest").set(len(messages))
        for kind, n in routed.kinds.items():
            m.events.labels(kind).inc(n)
        for d in routed.dead:
            m.dead.labels(d.reason, "ingest").inc()
        m.batch_size.labels("ingest").observe(len(messages))
        self._advance(messages)

    def update(
        self,
        bundles: list[Inbound],
        records: list[Record],
        result: BatchResult,
        elapsed: float,
        embedder: Embedder | None,
    ) -> None:
        """An update batch was applied and its outputs sent (``elapsed``: applying it)."""
        m = self.metrics
        m.consumed.labels("update").inc(len(bundles))
        m.batches.labels("update").inc()
        m.last_batch.labels("update").set(len(bundles))
        m.catalog_items.inc(result.items)
        m.conflicts.inc(result.conflicts)
        m.model_changes.inc(result.model_changes)
        m.pair_updates.inc(result.counts.get("pair_updates", 0))
        m.complement_reads.inc(result.counts.get("complement_reads", 0))
        m.refunds_unmatched.inc(result.counts.get("refunds_unmatched", 0))
        m.merges.inc(result.counts.get("merges", 0))
        m.links_refused.inc(result.counts.get("links_refused", 0))
        for name, n in result.counts.items():
            if name.startswith("xp/"):  # the experiment feature's "xp/<arm>/<count>"
                _, arm, what = name.split("/", 2)
                m.experiment.labels(arm, what).inc(n)
        m.last_update_seconds.set(elapsed)
        m.batch_size.labels("update").observe(len(records))
        m.batch_seconds.observe(elapsed)
        m.redis_seconds.observe(result.store_seconds)
        for outcome, n in (
            ("applied", result.applied),
            ("fenced", result.fenced),
            ("duplicate", result.duplicates),
            ("late", len(result.dead)),
        ):
            m.applied.labels(outcome).inc(n)
        for d in result.dead:
            m.dead.labels(d.reason, "update").inc()
        m.emitted.labels("profile_updated").inc(len(result.updated))
        m.emitted.labels("tombstone").inc(len(result.erased))
        for kind, n in Counter(e.kind for e in result.emits).items():  # every feature's kinds
            m.emitted.labels(kind).inc(n)
        for e in result.emits:
            if isinstance(e.change, RiskChange):
                m.risk_flags.labels(e.change.rule, e.change.status).inc()
        if result.recs_seconds:
            m.recommend_seconds.observe(result.recs_seconds)
        if result.counts["reviews_scored"]:
            m.sentiment_seconds.observe(result.seconds["sentiment"])
            m.reviews_scored.inc(result.counts["reviews_scored"])
        for r in records:
            self.watermark_ms = max(self.watermark_ms, int(r.event["ts"]))
        m.observe_latency([r.produced_ms for r in records], [int(r.event["ts"]) for r in records])
        self._encoder(embedder)
        self._advance(bundles)

    def _encoder(self, embedder: Embedder | None) -> None:
        if embedder is None:
            return
        cache, m = embedder.cache, self.metrics
        now = (cache.hits, cache.tier_hits, cache.misses)
        for source, new, old in zip(
            ("memory", "redis", "encoded"), now, self._cache_seen, strict=True
        ):
            m.texts.labels(source).inc(new - old)
        self._cache_seen = now
        m.encode_seconds.observe(embedder.stats.last_ms / 1000)
        m.unk_rate.set(float(getattr(cache.encoder, "last_unk_rate", 0.0)))

    def _advance(self, messages: list[Inbound]) -> None:
        for msg in messages:
            self.positions[(msg.topic, msg.partition)] = (msg.offset + 1, msg.timestamp_ms)

    def keep(self, owned: set[tuple[str, int]], topics: Collection[str]) -> None:
        """After a rebalance of the consumer of ``topics``: forget the positions (and lag
        gauges) of their partitions not ``owned`` (another consumer keeps its own)."""
        for tp in {tp for tp in self.positions if tp[0] in topics} - owned:
            del self.positions[tp]
            self.metrics.forget_partition(*tp)

    def lag(self, highwaters: dict[tuple[str, int], int | None]) -> None:
        """Lag gauges from the fetcher's end offsets and the positions reached."""
        now_ms = time.time() * 1000
        for (topic, partition), end in highwaters.items():
            if end is None:
                continue
            position, stamp = self.positions.get((topic, partition), (None, 0))
            if position is None:
                continue  # nothing consumed yet here: the group's committed offset says more
            behind = max(0, end - position)
            age = (now_ms - stamp) / 1000 if behind and stamp else 0.0
            self.metrics.set_lag(topic, partition, behind, max(0.0, age))
