"""Prometheus metrics of one worker, served on its web port at ``/metrics``.

Each worker has its own registry (no global state), so tests and several apps in
one process do not collide. Names are listed in :data:`NAMES`; the Grafana
dashboard and its test use exactly these.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from profiles.embedding.embedder import Embedder

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
_FRESHNESS_BUCKETS = (*_LATENCY_BUCKETS, 86_400, 7 * 86_400, 30 * 86_400)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)


class Metrics:
    """The worker's instruments; agents call the small methods below."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "rtp_events_total", "Valid input events by kind", ["kind"], registry=r
        )
        self.dead = Counter(
            "rtp_dead_letters_total",
            "Dead-lettered messages by reason",
            ["reason", "stage"],
            registry=r,
        )
        self.applied = Counter(
            "rtp_events_applied_total",
            "Events applied to profiles, by outcome",
            ["outcome"],
            registry=r,
        )
        self.batch_size = Histogram(
            "rtp_batch_size", "Messages per batch", ["stage"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.redis_seconds = Histogram(
            "rtp_redis_commit_seconds",
            "Update batch time in the store (load + commit)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "rtp_update_batch_seconds",
            "Whole update batch: encode, apply, commit",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.encode_seconds = Histogram(
            "rtp_encode_seconds", "Encoder call per batch", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.texts = Counter(
            "rtp_texts_total",
            "Distinct texts per batch by where the vector came from",
            ["source"],
            registry=r,
        )
        self.unk_rate = Gauge(
            "rtp_encoder_unk_rate", "Share of [UNK] tokens, last batch", registry=r
        )
        self.latency = Histogram(
            "rtp_pipeline_latency_seconds",
            "Broker timestamp of the input message to profile commit",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.freshness = Histogram(
            "rtp_event_freshness_seconds",
            "Event time (ts) to profile commit",
            buckets=_FRESHNESS_BUCKETS,
            registry=r,
        )
        self.emitted = Counter(
            "rtp_emitted_total", "Downstream events sent, by type", ["type"], registry=r
        )
        self.risk_flags = Counter(
            "rtp_risk_flags_total",
            "Risk flags opened and cleared, by rule",
            ["rule", "status"],
            registry=r,
        )
        self.rebalances = Counter("rtp_rebalances_total", "Partition revocations", registry=r)
        self.audience_members = Gauge(
            "rtp_audience_members",
            "Users in each audience, read at the worker's last audience sweep",
            ["audience"],
            registry=r,
        )
        self.lag = Gauge(
            "rtp_consumer_lag_messages",
            "End offset minus position",
            ["topic", "partition"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "rtp_consumer_lag_seconds",
            "Age of the last consumed message while behind (0 when caught up)",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned = Gauge(
            "rtp_assigned_partitions", "Partitions of the routed topic owned", registry=r
        )
        self.recommend_seconds = Histogram(
            "rtp_recommend_seconds",
            "Recommendation lists computed in one update batch (all users together)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sentiment_seconds = Histogram(
            "rtp_sentiment_seconds",
            "Review texts scored in one update batch (all reviews together)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.reviews_scored = Counter(
            "rtp_reviews_scored_total", "Review texts scored for sentiment", registry=r
        )
        self.experiment = Counter(
            "rtp_experiment_total",
            "Experiment counts by arm: users assigned, conversions, users converted, "
            "click-throughs, lists held back (holdout); the exact, fenced ones are in Redis",
            ["arm", "count"],
            registry=r,
        )
        self.retries = Counter(
            "rtp_retries_total",
            "Batches (or sends) retried after an outage, by error",
            ["error"],
            registry=r,
        )
        self.index_items = Gauge(
            "rtp_item_index_items",
            "Catalog items in this worker's recommendation index",
            registry=r,
        )

        self.outages = Counter(
            "rtp_outages_total",
            "Outages begun (a dependency failing until an operation that failed succeeds)",
            ["dependency"],
            registry=r,
        )
        self.outage_active = Gauge(
            "rtp_outage_active", "1 while the dependency is down", ["dependency"], registry=r
        )
        self.crashes = Counter(
            "rtp_crashes_total",
            "Agents or Faust services (fetcher, consumer) that crashed",
            ["component"],
            registry=r,
        )
        self.skipped = Counter(
            "rtp_skipped_records_total",
            "Input records skipped without a dead letter (logged at ERROR with coordinates)",
            ["reason"],
            registry=r,
        )
        self.ready = Gauge(
            "rtp_ready", "1 when /health answers ready, 0 when it does not", registry=r
        )
        self.loop_lag = Histogram(
            "rtp_event_loop_lag_seconds",
            "How late the event loop ran a 100 ms timer: CPU work inside the loop stalls "
            "the web server, heartbeats and every other task by as much",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.loop_lag_max = Gauge(
            "rtp_event_loop_lag_max_seconds",
            "The largest event-loop lag since the worker started",
            registry=r,
        )
        self.consumed = Counter(
            "rtp_messages_consumed_total",
            "Messages consumed: input messages (ingest), bundles (update)",
            ["stage"],
            registry=r,
        )
        self.batches = Counter(
            "rtp_batches_total", "Batches taken, by stage", ["stage"], registry=r
        )
        self.last_batch = Gauge(
            "rtp_last_batch_messages", "Messages in the last batch, by stage", ["stage"], registry=r
        )
        self.last_update_seconds = Gauge(
            "rtp_last_update_batch_seconds", "Duration of the last update batch", registry=r
        )
        self.catalog_items = Counter(
            "rtp_catalog_items_total", "Catalog (product) events applied", registry=r
        )
        self.conflicts = Counter(
            "rtp_version_conflicts_total",
            "Users whose commit met a newer version (another worker wrote them): recomputed",
            registry=r,
        )
        self.model_changes = Counter(
            "rtp_model_changes_total",
            "Profiles whose stored vectors came from another model (discarded)",
            registry=r,
        )
        self.churn_swept = Counter(
            "rtp_churn_sweep_changes_total",
            "Churn levels the sweep found changed with time alone",
            registry=r,
        )
        self.churn_auc = Gauge(
            "rtp_churn_calibration_auc",
            "Held-out ROC AUC of the churn model and of its calibrator on matured outcomes "
            "(the calibrated score is used only while it is the higher)",
            ["score"],
            registry=r,
        )
        self.pair_updates = Counter(
            "rtp_pair_updates_total",
            "Pair-count increments sent to Redis (frequently bought together; fenced there)",
            registry=r,
        )
        self.refunds_unmatched = Counter(
            "rtp_refunds_unmatched_total",
            "Refunds given up waiting for their purchase (older than RTP_LATENESS_S, or "
            "beyond the waiting cap): the order was never seen",
            registry=r,
        )
        self.merges = Counter(
            "rtp_profile_merges_total",
            "Anonymous profiles merged into their user's (identity stitching; a redelivered "
            "merge is fenced and not counted)",
            registry=r,
        )
        self.links_refused = Counter(
            "rtp_links_refused_total",
            "Links of an anonymous profile already merged into another user (first link wins)",
            registry=r,
        )
        self.complement_reads = Counter(
            "rtp_complement_reads_total",
            "Items whose bought-together neighbours were read for the blend's complements",
            registry=r,
        )
        self.fence_epochs = Counter(
            "rtp_fence_epochs_total",
            "Input partitions whose offsets started again (new fence epoch)",
            ["topic"],
            registry=r,
        )

    def calibration(self, auc_model: float, auc_calibrated: float) -> None:
        self.churn_auc.labels("model").set(auc_model)
        self.churn_auc.labels("calibrated").set(auc_calibrated)

    def observe_latency(self, produced_ms: Sequence[int], event_ms: Sequence[int]) -> None:
        """Latency and freshness of (at most ``SAMPLE`` evenly spaced) records of a batch.

        A Python histogram observation costs ~1 µs; sampling keeps metrics off the per-event
        budget. Quantiles are unaffected; ``_count`` counts observations, not events.
        """
        now = time.time()
        for ms in _spread(produced_ms):
            if ms > 0:
                self.latency.observe(max(0.0, now - ms / 1000))
        for ms in _spread(event_ms):
            self.freshness.observe(max(0.0, now - ms / 1000))

    def set_lag(self, topic: str, partition: int, messages: int, seconds: float) -> None:
        self.lag.labels(topic, str(partition)).set(messages)
        self.lag_seconds.labels(topic, str(partition)).set(seconds)

    def forget_partition(self, topic: str, partition: int) -> None:
        for gauge in (self.lag, self.lag_seconds):
            with contextlib.suppress(KeyError):
                gauge.remove(topic, str(partition))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


SAMPLE = 64


def _spread(values: Sequence[int]) -> Sequence[int]:
    if len(values) <= SAMPLE:
        return values
    step = len(values) / SAMPLE
    return [values[int(i * step)] for i in range(SAMPLE)]


#: Every metric family the worker exports (what the dashboard may name).
NAMES: tuple[str, ...] = (
    "rtp_events_total",
    "rtp_dead_letters_total",
    "rtp_events_applied_total",
    "rtp_batch_size",
    "rtp_redis_commit_seconds",
    "rtp_update_batch_seconds",
    "rtp_encode_seconds",
    "rtp_texts_total",
    "rtp_encoder_unk_rate",
    "rtp_pipeline_latency_seconds",
    "rtp_event_freshness_seconds",
    "rtp_emitted_total",
    "rtp_risk_flags_total",
    "rtp_rebalances_total",
    "rtp_audience_members",
    "rtp_consumer_lag_messages",
    "rtp_consumer_lag_seconds",
    "rtp_assigned_partitions",
    "rtp_recommend_seconds",
    "rtp_sentiment_seconds",
    "rtp_reviews_scored_total",
    "rtp_experiment_total",
    "rtp_item_index_items",
    "rtp_retries_total",
    "rtp_outages_total",
    "rtp_outage_active",
    "rtp_crashes_total",
    "rtp_skipped_records_total",
    "rtp_ready",
    "rtp_fence_epochs_total",
    "rtp_messages_consumed_total",
    "rtp_batches_total",
    "rtp_last_batch_messages",
    "rtp_last_update_batch_seconds",
    "rtp_catalog_items_total",
    "rtp_version_conflicts_total",
    "rtp_model_changes_total",
    "rtp_churn_sweep_changes_total",
    "rtp_churn_calibration_auc",
    "rtp_pair_updates_total",
    "rtp_complement_reads_total",
    "rtp_refunds_unmatched_total",
    "rtp_profile_merges_total",
    "rtp_links_refused_total",
    "rtp_event_loop_lag_seconds",
    "rtp_event_loop_lag_max_seconds",
)


def _samples(metric: Counter | Gauge) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of a counter's totals or a gauge's values, read from the metric."""
    return [
        (sample.labels, sample.value)
        for family in metric.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    ]


def _total(metric: Counter | Gauge, **where: str) -> int:
    """The sum over the samples whose labels match ``where``."""
    found = _samples(metric)
    return int(sum(v for labels, v in found if all(labels.get(k) == x for k, x in where.items())))


def _by(metric: Counter | Gauge, label: str, zeros: bool = False) -> dict[str, int]:
    out: dict[str, int] = {}
    for labels, value in _samples(metric):
        if value or zeros:
            out[labels[label]] = out.get(labels[label], 0) + int(value)
    return out


class Stats:
    """What ``/stats`` and the demo show, read from the Prometheus instruments: one source
    for both views, so they cannot disagree."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics
        self.started_at = time.time()

    @property
    def assigned(self) -> int:
        return _total(self.m.assigned)

    @property
    def recommendations(self) -> int:
        return _total(self.m.emitted, type="recommendation")

    def dead(self) -> dict[str, int]:
        """Dead letters by reason, every stage together."""
        return _by(self.m.dead, "reason")

    def as_dict(self) -> dict[str, Any]:
        m = self.m
        applied = _by(m.applied, "outcome")
        lag = _by(m.lag, "topic", zeros=True)
        return {
            "started_at": self.started_at,
            "consumed": _total(m.consumed, stage="ingest"),
            "routed": _total(m.events),
            "applied": applied.get("applied", 0),
            "fenced": applied.get("fenced", 0),
            "duplicates": applied.get("duplicate", 0),
            "items": _total(m.catalog_items),
            "conflicts": _total(m.conflicts),
            "profiles_emitted": _total(m.emitted, type="profile_updated"),
            "tombstones": _total(m.emitted, type="tombstone"),
            "batches": _total(m.batches, stage="ingest"),
            "bundles": _total(m.consumed, stage="update"),
            "last_batch": _total(m.last_batch, stage="ingest"),
            "last_commit_ms": round(_value(m.last_update_seconds) * 1000, 3),
            "rebalances": _total(m.rebalances),
            "loop_lag_max_ms": round(_value(m.loop_lag_max) * 1000, 1),
            "assigned": self.assigned,
            "model_changes": _total(m.model_changes),
            "churn_swept": _total(m.churn_swept),
            "recommendations": self.recommendations,
            "retries": _total(m.retries),
            "lag": lag,
            "kinds": _by(m.events, "kind"),
            "dead": self.dead(),
            "uptime_s": round(time.time() - self.started_at, 3),
        }


def _value(gauge: Gauge) -> float:
    return sum(v for _, v in _samples(gauge))


def encoder_stats(embedder: Embedder | None) -> dict[str, Any]:
    """``/stats`` of the text encoder: the embedder's own counters (not the instruments)."""
    if embedder is None:
        return {"enabled": False}
    cache, enc = embedder.cache, embedder.stats
    encoder = cache.encoder
    return {
        "enabled": True,
        "model": embedder.config.model_id,
        "device": getattr(encoder, "device", "?"),
        "dtype": getattr(encoder, "dtype", "?"),
        "calls": enc.calls,
        "texts": enc.texts,
        "seconds": round(enc.seconds, 3),
        "last_ms": round(enc.last_ms, 1),
        "cache_hits": cache.hits,
        "tier_hits": cache.tier_hits,
        "encoded": cache.misses,
        "unk_rate": round(float(getattr(encoder, "last_unk_rate", 0.0)), 4),
    }
