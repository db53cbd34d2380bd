"""Per-event cost of each piece of the pipeline, in-process, on the throughput benchmark's data.

    python benchmarks/breakdown.py                  # 100k events, 5 runs, print a table
    python benchmarks/breakdown.py --write          # ... and update BENCHMARKS.md
    python benchmarks/breakdown.py --no-embeddings  # as a worker with RTP_EMBEDDINGS=false
    python benchmarks/breakdown.py --cprofile 30    # one pass under cProfile, top 30 functions

No Kafka and no Faust: the pieces the worker runs per batch are called directly, in the
order the worker calls them, on batches of ``--batch`` consecutive events. Redis is a real
``redis-server`` and a real broker (our own, on free ports; Redis with AOF ``appendfsync
always`` as in dev), for the commit and for emitting ``profile_updated``. Every figure is
microseconds per *input* event (all N, catalog events included), the median over ``--runs``
runs, so the rows add up to what one event costs the worker besides Faust.

The text encoder is the exception: every distinct text is encoded once, before the runs (as
a fresh worker with an empty vector cache would), and that single pass is reported; the runs
then look vectors up in the warm cache, as a worker does in steady state.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import os
import pstats
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships with the project

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console

from benchmarks.common import (
    BENCHMARKS_MD,
    DataSpec,
    cpu_seconds,
    facts_lines,
    generate_events,
    machine_busy,
    machine_facts,
    markdown_table,
    median,
    message_key,
    others_cores,
    scratch_services,
    service_pid,
    write_subsection,
)
from profiles.churn.bgnbd import BGNBDParams
from profiles.core.config import ProfileConfig
from profiles.core.profile import Profile, Record, apply
from profiles.embedding.cache import EmbeddingCache
from profiles.embedding.embedder import Embedder
from profiles.embedding.feature import vector_learner
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile
from profiles.embedding.text import combine, event_texts
from profiles.pipeline.builtin import CODECS
from profiles.pipeline.downstream import profile_updated
from profiles.pipeline.store import Commit
from profiles.redis.store import RedisStore
from profiles.risk.detector import RiskDetector
from profiles.sentiment.scorer import SentimentScorer
from profiles.sentiment.state import SentimentState, item_fields
from profiles.tags.event_tags import event_tags
from profiles.tags.extractor import Tag, TagExtractor
from profiles.value.population import fit_value
from profiles.value.scorer import ValueScorer
from schemas.validate import Limits, decode
from stream.devtools.services import BROKER, REDIS
from stream.settings import Settings
from stream.worker.compose import Models, build_updater, embedding_config, encoder_from
from stream.worker.ingest import Inbound, route, unpack

SUBSECTION = "### Per-event cost breakdown (`benchmarks/breakdown.py`)"
#: The core variant gets its own subsection, so both can stand side by side.
SUBSECTION_CORE = "### Per-event cost breakdown, core (`benchmarks/breakdown.py --no-embeddings`)"
PARTITIONS = 4
TOPIC = "site-events"
OUTPUT_TOPIC = "profile-updated"
#: Runs during which other processes used more cores than this are left out of the medians.
BUSY_CORES = 0.25

console = Console(stderr=True, highlight=False)

#: Row order and wording of the table; the keys are what :class:`Timings` accumulates.
PIECES: tuple[tuple[str, str], ...] = (
    ("decode", "decode + validate (`schemas.validate.decode`)"),
    ("bundle", "routing + bundling (`stream.worker.ingest.route` minus its decode)"),
    ("unpack", "bundle decode in the update stage (`stream.worker.ingest.unpack`)"),
    ("tags_cold", "tag extraction, cold cache (`event_tags`, fresh `TagExtractor`)"),
    ("tags_warm", "tag extraction, warm cache (same events again)"),
    ("apply", "profile apply (`profiles.core.profile.apply`, tags and vectors precomputed)"),
    ("risk", "risk flags (`RiskDetector.learn` per applied event: windows, rules, anomaly score)"),
    ("value", "customer value (`ValueScorer.update` per written customer: RFM, tier, expected)"),
    ("sentiment", "review sentiment (score the batch's review texts, fold into users, products)"),
    ("encode", "text encoder, cold: every distinct text once (`EmbeddingCache` → `Encoder`)"),
    ("vectors", "vector lookup, warm cache (`event_texts` + `EmbeddingCache.get_many`)"),
    ("embed_combine", "event vector (`event_texts` + `combine`)"),
    ("embed_learn", "embedding update (`EmbeddingProfile.add` per event + `flush` per user)"),
    ("serialize", "serialization (`Profile.to_bytes`, once per user per batch)"),
    ("embed_serialize", "vector serialization (`EmbeddingProfile.to_bytes`)"),
    ("downstream", "`profile_updated` payload (`profile_updated` + `orjson.dumps`)"),
    ("load", "Redis load of users not cached yet (`RedisStore.load`)"),
    ("commit", "Redis commit (`RedisStore.commit` minus its serialization)"),
    ("emit", "emit `profile_updated` (plain aiokafka `send` + acks; Faust adds its own)"),
)
EMBEDDING_PIECES = frozenset(
    {"encode", "vectors", "embed_combine", "embed_learn", "embed_serialize"}
)
#: What a fresh worker pays: empty tag and vector caches, as in every throughput repetition.
FRESH_TOTAL = tuple(k for k, _ in PIECES if k not in ("tags_warm", "vectors"))
#: A worker whose caches are warm: no encoding, warm tags, vectors looked up.
STEADY_TOTAL = tuple(k for k, _ in PIECES if k not in ("tags_cold", "encode"))
#: The pieces inside ``BatchUpdater.process``, for the cross-check.
UPDATER_PIECES = (
    "tags_cold",
    "apply",
    "risk",
    "value",
    "sentiment",
    "vectors",
    "embed_combine",
    "embed_learn",
    "serialize",
    "embed_serialize",
    "load",
    "commit",
)


@dataclass
class Timings:
    """Seconds per piece for one run."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    others: float = 0.0  # cores used by processes not ours during the run

    @contextmanager
    def clock(self, piece: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[piece] += time.perf_counter() - started


@dataclass(frozen=True)
class Prepared:
    """The input topic's content as the ingest agent would receive it, in batches."""

    batches: list[list[Inbound]]
    catalog: dict[str, dict[str, Any]]
    limits: Limits
    now_ms: int
    n: int


@dataclass(frozen=True)
class Vectors:
    """The encoder's state after one cold pass over every text of the data."""

    cache: EmbeddingCache
    config: EmbeddingConfig
    encode_seconds: float
    distinct: int
    device: str


def prepare(spec: DataSpec, batch: int) -> Prepared:
    events = generate_events(spec)
    offsets = [0] * PARTITIONS
    inbound: list[Inbound] = []
    for event in events:
        key = message_key(event)
        # Any stable key -> partition map will do: only "source" fences depend on it.
        partition = zlib.crc32(key) % PARTITIONS
        inbound.append(Inbound(TOPIC, partition, offsets[partition], key, orjson.dumps(event)))
        offsets[partition] += 1
    catalog = {e["product_id"]: e for e in events if e["type"] == "product"}
    settings = Settings()
    limits = Limits(
        max_bytes=settings.ingest.max_message_bytes,
        max_future_ms=int(settings.ingest.max_future_s * 1000),
        earliest_ms=settings.ingest.earliest_ms,
    )
    batches = [inbound[i : i + batch] for i in range(0, len(inbound), batch)]
    return Prepared(batches, catalog, limits, int(time.time() * 1000), len(events))


def _texts(records: Sequence[Record], catalog: dict[str, dict[str, Any]]) -> list[str]:
    """The batch's distinct texts, as ``BatchUpdater._vectors`` collects them."""
    texts = (text for r in records for text, _ in event_texts(r.event, catalog))
    return list(dict.fromkeys(t for t in texts if t))


def encode_all(batches: list[list[Record]], catalog: dict[str, dict[str, Any]]) -> Vectors:
    """Encode every distinct text once, batch by batch, as a fresh worker would."""
    settings = Settings()
    encoder = encoder_from(settings)  # as the worker loads it
    # No Redis tier: a cold start has nothing in it, and the LRU then serves every run.
    cache = EmbeddingCache(encoder, capacity=10_000_000)
    started = time.perf_counter()
    for records in batches:
        texts = _texts(records, catalog)
        if texts:
            cache.get_many(texts)
    seconds = time.perf_counter() - started
    config = embedding_config(settings, encoder.model_id, encoder.dim)
    device = f"{encoder.device} {encoder.dtype}"
    return Vectors(cache, config, seconds, cache.misses, device)


# ------------------------------------------------------------------------- the pieces


def run_ingest(prep: Prepared, t: Timings) -> list[list[Record]]:
    """Ingest (decode alone, then route) and the update stage's unpack; returns records."""
    for messages in prep.batches:
        with t.clock("decode"):
            for message in messages:
                decode(message.value, prep.limits, prep.now_ms)
    routed = []
    with t.clock("route"):
        for messages in prep.batches:
            routed.append(route(messages, prep.limits, PARTITIONS, prep.now_ms))
    if any(r.dead for r in routed):
        raise RuntimeError(f"{sum(len(r.dead) for r in routed)} events rejected by decode")
    batches: list[list[Record]] = []
    with t.clock("unpack"):
        for r in routed:
            batches.append(
                [rec for bundles in r.bundles.values() for b in bundles for rec in unpack(b)]
            )
    t.seconds["bundle"] = t.seconds.pop("route") - t.seconds["decode"]
    return batches


def run_tags(
    batches: list[list[Record]], catalog: dict[str, dict[str, Any]], t: Timings
) -> dict[str, list[Tag]]:
    """Tags of every user event, first with empty caches, then again with warm ones."""
    tagger = TagExtractor()
    tags: dict[str, list[Tag]] = {}
    for piece in ("tags_cold", "tags_warm"):
        with t.clock(piece):
            for records in batches:
                for rec in records:
                    if rec.event["type"] != "product":
                        tags[rec.event["event_id"]] = event_tags(rec.event, tagger, catalog)
    return tags


class _TimedEmbedding(EmbeddingProfile):
    """Times the embedding update: ``add`` (which ``apply``'s learner calls per event) and
    the ``flush`` that learns the queue once per user (``learn_many``, run by :func:`_serialize`
    before the bytes, as the feature's first read does)."""

    def __init__(self, config: EmbeddingConfig, timings: Timings) -> None:
        super().__init__(config)
        self._timings = timings

    def add(
        self, vec: np.ndarray, weight: float, ts: int, tags: Sequence[tuple[str, float]]
    ) -> None:
        with self._timings.clock("embed_add"):  # inside apply's own clock
            super().add(vec, weight, ts, tags)

    def flush(self) -> None:
        if self._pending:  # reads flush too: only a real one is timed
            with self._timings.clock("embed_flush"):
                super().flush()


def _by_user(records: Sequence[Record]) -> tuple[dict[str, list[Record]], list[dict[str, Any]]]:
    by_user: dict[str, list[Record]] = defaultdict(list)
    products = []
    for rec in records:
        if rec.event["type"] == "product":
            products.append(rec.event)
        else:
            by_user[rec.event["user_id"]].append(rec)
    return by_user, products


@dataclass
class UpdateContext:
    """What the update stage works with, besides the batches."""

    store: RedisStore
    producer: AIOKafkaProducer
    catalog: dict[str, dict[str, Any]]
    tags: dict[str, list[Tag]]
    vectors: Vectors | None
    now_ms: int
    service_pids: tuple[int | None, ...] = ()

    def our_cpu(self) -> float:
        """CPU seconds of this process (all threads) and of our broker and Redis."""
        return time.process_time() + sum(cpu_seconds(pid) for pid in self.service_pids)


async def run_update(batches: list[list[Record]], ctx: UpdateContext, t: Timings) -> None:
    """The update stage's work per batch, piece by piece, against a flushed Redis."""
    config = ProfileConfig()
    cache: dict[str, Profile] = {}
    batch_vectors: dict[str, np.ndarray] = {}
    scorer = SentimentScorer()
    detector = RiskDetector()
    value = ValueScorer(bgnbd=lambda: BGNBDParams(0.64, 51.1, 0.82, 1.24, "mbgnbd"))

    def risk(
        profile: Profile, event: dict[str, Any], ts: int, weight: float, tags: Sequence[Tag]
    ) -> None:
        with t.clock("risk"):
            detector.learn(profile, event, ts, weight, tags)

    def tagger(event: dict[str, Any]) -> list[Tag]:
        return ctx.tags[event["event_id"]]

    def embed(event: dict[str, Any]) -> np.ndarray | None:
        with t.clock("embed_combine"):
            return combine(event_texts(event, ctx.catalog), batch_vectors)

    for records in batches:
        by_user, products = _by_user(records)
        missing = [uid for uid in by_user if uid not in cache]
        with t.clock("load"):
            loaded, _ = await ctx.store.load(missing, ())
        for uid, profile in loaded.items():
            if ctx.vectors is not None:
                profile.embedding = _TimedEmbedding(ctx.vectors.config, t)
            cache[uid] = profile
        if ctx.vectors is not None:
            with t.clock("vectors"):
                texts = _texts(records, ctx.catalog)
                batch_vectors = dict(zip(texts, ctx.vectors.cache.get_many(texts), strict=True))
        touched = []
        learners = [*([vector_learner(embed)] if ctx.vectors else []), risk]
        with t.clock("apply"):
            for uid, recs in by_user.items():
                profile = cache[uid]
                base = profile.version
                if apply(profile, recs, config, tagger, learners).applied:
                    profile.version = base + 1
                    touched.append(profile)
        if value.fit is None:  # RFM cuts and Gamma-Gamma from the first batch's customers
            value.fit = fit_value(list(cache.values()), max(r.event["ts"] for r in records))
        with t.clock("value"):
            for profile in touched:  # as ValueFeature.compute: every written user
                value.update(profile, profile.last_ts or 0)
        with t.clock("sentiment"):
            _sentiment(records, cache, scorer)
        _serialize(touched, t)
        with t.clock("downstream"):
            payloads = [
                orjson.dumps(profile_updated(p, config.half_life_ms, ctx.now_ms)) for p in touched
            ]
        with t.clock("commit"):
            fields = {
                p.user_id: {k: v for c in CODECS for k, v in c.encode(p).items()} for p in touched
            }
            result = await ctx.store.commit(Commit(profiles=touched, fields=fields, items=products))
        if result.conflicts:
            raise RuntimeError(f"unexpected version conflicts: {sorted(result.conflicts)[:5]}")
        with t.clock("emit"):
            # As the update agent: queue every send, then wait for the broker's acks.
            sent = [
                await ctx.producer.send(OUTPUT_TOPIC, payload, key=p.user_id.encode())
                for p, payload in zip(touched, payloads, strict=True)
            ]
            await asyncio.gather(*sent)
    # apply() ran the embedding pieces and the commit serialised every profile itself: those
    # costs have rows of their own, so take them out here.
    t.seconds["apply"] -= t.seconds["embed_combine"] + t.seconds["embed_add"] + t.seconds["risk"]
    t.seconds["embed_learn"] = t.seconds.pop("embed_add", 0.0) + t.seconds.pop("embed_flush", 0.0)
    t.seconds["commit"] -= t.seconds["serialize"] + t.seconds["embed_serialize"]


def _sentiment(
    records: Sequence[Record], cache: dict[str, Profile], scorer: SentimentScorer
) -> None:
    """What the sentiment feature does per batch (defaults: 90/30-day half-lives, 0.3)."""
    reviews = [r.event for r in records if r.event["type"] == "review"]
    scores = scorer.scores([e["text"] for e in reviews])
    for e in reviews:
        profile = cache[e["user_id"]]
        state = SentimentState.from_dict(profile.parts.get("sentiment"))
        score = scores[e["text"]]
        state.add(score, int(e["rating"]), int(e["ts"]), 90 * 86_400_000, 0.3)
        profile.parts["sentiment"] = state.to_dict()
        item_fields(e["product_id"], score, 0.3)


def _serialize(touched: Sequence[Profile], t: Timings) -> None:
    for profile in touched:  # the queued events, learnt per user (timed as embed_learn)
        if profile.embedding is not None:
            profile.embedding.flush()
    with t.clock("serialize"):
        for profile in touched:
            profile.to_bytes()
    with t.clock("embed_serialize"):
        for profile in touched:
            if profile.embedding is not None:
                profile.embedding.to_bytes()


async def run_updater(
    batches: list[list[Record]], store: RedisStore, vectors: Vectors | None, t: Timings
) -> None:
    """Cross-check: the real BatchUpdater on the same batches (fresh profiles, flushed Redis,
    the warm vector cache)."""
    # One owner partition, every user cached: the pipeline alone, as the pieces measure it.
    settings = Settings.from_env({"RTP_CACHE_USERS": "200000", "RTP_PARTITIONS": "1"})
    models = Models(None if vectors is None else Embedder(vectors.cache, vectors.config))
    updater = build_updater(settings, store, TagExtractor(), models, churn=None)
    with t.clock("updater"):
        for records in batches:
            await updater.process(records)


async def one_run(prep: Prepared, ctx: UpdateContext) -> Timings:
    t = Timings()
    machine, ours, started = machine_busy(), ctx.our_cpu(), time.perf_counter()
    gc.collect()
    batches = run_ingest(prep, t)
    gc.collect()
    ctx.tags = run_tags(batches, prep.catalog, t)
    await ctx.store.client.flushdb()
    gc.collect()
    await run_update(batches, ctx, t)
    await ctx.store.client.flushdb()
    gc.collect()
    await run_updater(batches, ctx.store, ctx.vectors, t)
    if ctx.vectors is not None:
        t.seconds["encode"] = ctx.vectors.encode_seconds
    wall = time.perf_counter() - started
    t.others = others_cores(machine, machine_busy(), ctx.our_cpu() - ours, wall)
    return t


# ------------------------------------------------------------------------- driver


async def measure(
    prep: Prepared, runs: int, embeddings: bool, cprofile_top: int
) -> tuple[list[Timings], Vectors | None]:
    vectors = None
    if embeddings:
        console.log("encoding every distinct text once (the cold-cache cost; CPU: minutes)")
        vectors = encode_all(run_ingest(prep, Timings()), prep.catalog)
        console.log(
            f"  {vectors.distinct:,} texts in {vectors.encode_seconds:.1f}s "
            f"({vectors.distinct / vectors.encode_seconds:,.0f} texts/s, {vectors.device})"
        )
    with scratch_services() as (services, _):
        store = RedisStore.from_url(services.redis_url)
        producer = AIOKafkaProducer(
            bootstrap_servers=services.broker_url.removeprefix("kafka://"),
            acks="all",
            enable_idempotence=False,
        )
        await producer.start()
        try:
            await store.load_scripts()
            TagExtractor().warm_up()  # jieba's dictionary loads once per process, as in a worker
            await producer.send_and_wait(OUTPUT_TOPIC, b"warm-up")  # creates the topic
            pids = (service_pid(services, BROKER), service_pid(services, REDIS))
            ctx = UpdateContext(store, producer, prep.catalog, {}, vectors, prep.now_ms, pids)
            if cprofile_top:
                await profile_once(prep, ctx, cprofile_top)
                return [], vectors
            results = []
            for i in range(1, runs + 1):
                started = time.perf_counter()
                results.append(await one_run(prep, ctx))
                console.log(
                    f"run {i}/{runs}: {time.perf_counter() - started:.1f}s "
                    f"(other processes: {results[-1].others:.2f} cores)"
                )
            return results, vectors
        finally:
            await producer.stop()
            await store.close()


async def profile_once(prep: Prepared, ctx: UpdateContext, top: int) -> None:
    """One run under cProfile; prints the top functions by own time, in µs per event."""
    profiler = cProfile.Profile()
    profiler.enable()
    await one_run(prep, ctx)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(out.getvalue())
    rows = _per_event_rows(stats, prep.n, top)
    print(markdown_table(["function", "own µs/event", "cumulative µs/event", "calls/event"], rows))


def _per_event_rows(stats: pstats.Stats, n: int, top: int) -> list[list[str]]:
    entries = stats.stats  # type: ignore[attr-defined]
    ranked = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    rows = []
    for (path, line, name), (_, calls, own, cumulative, _) in ranked:
        where = f"{Path(path).parent.name}/{Path(path).name}:{line}" if line else path
        rows.append(
            [
                f"`{name}` ({where})",
                f"{own / n * 1e6:.2f}",
                f"{cumulative / n * 1e6:.2f}",
                f"{calls / n:.2f}",
            ]
        )
    return rows


def render(all_results: Sequence[Timings], n: int, vectors: Vectors | None) -> str:
    # Runs slowed by someone else's job are left out when there are clean ones.
    results = [r for r in all_results if r.others <= BUSY_CORES] or list(all_results)
    keys = [k for k, _ in PIECES if vectors is not None or k not in EMBEDDING_PIECES]
    per_event = {k: [r.seconds[k] / n * 1e6 for r in results] for k in [*keys, "updater"]}
    med = {k: median(v) for k, v in per_event.items()}
    fresh = sum(med[k] for k in FRESH_TOTAL if k in med)
    steady = sum(med[k] for k in STEADY_TOTAL if k in med)
    rows = []
    for key, title in PIECES:
        if key not in med:
            continue
        share = f"{med[key] / fresh:.0%}" if key in FRESH_TOTAL else ""
        spread = "one pass" if key == "encode" else _spread(per_event[key])
        rows.append([title, f"{med[key]:.2f}", spread, share])
    rows += [
        [
            "**total, fresh worker** (cold caches, as in each throughput run)",
            f"**{fresh:.1f}**",
            "",
            "100%",
        ],
        ["total, steady state (warm caches, nothing to encode)", f"{steady:.1f}", "", ""],
    ]
    table = markdown_table(["piece", "µs/event (median)", "min – max", "share of fresh"], rows)
    parts = sum(med[k] for k in UPDATER_PIECES if k in med)
    notes = [
        f"- Pieces alone, fresh: {1e6 / fresh:,.0f} events/s; steady state: "
        f"{1e6 / steady:,.0f} events/s (one core, no Kafka, no Faust).",
        f"- Cross-check: the real `BatchUpdater.process` on the same batches takes "
        f"{med['updater']:.1f} µs/event vs {parts:.1f} for the sum of its pieces "
        "(cold tags, warm vectors).",
    ]
    busy = sum(r.others > BUSY_CORES for r in all_results)
    verdict = (
        f"{len(all_results) - len(results)} run(s) above {BUSY_CORES} left out of the medians"
        if len(results) < len(all_results) or not busy
        else f"every run was above {BUSY_CORES}: the figures are slowed by someone else's job"
    )
    notes.append(
        f"- Other processes used {', '.join(f'{r.others:.2f}' for r in all_results)} cores "
        f"during the runs; {verdict}."
    )
    if vectors is not None:
        notes.append(
            f"- Encoder: {vectors.distinct:,} distinct texts in {n:,} events, "
            f"{vectors.encode_seconds:.1f} s ({vectors.distinct / vectors.encode_seconds:,.0f} "
            f"texts/s, {vectors.device}, default `RTP_ENCODE_BATCH`/`RTP_MAX_TOKENS`)."
        )
    return "\n".join([table, "", *notes])


def _spread(values: Sequence[float]) -> str:
    return f"{min(values):.2f} – {max(values):.2f}"


def conditions(spec: DataSpec, runs: int, batch: int, facts: dict[str, str]) -> list[str]:
    return [
        *facts_lines(facts),
        f"- Data: {spec.describe()} (the same events as the throughput run)",
        f"- {runs} runs, median shown; batches of {batch} consecutive events, "
        f"{PARTITIONS} routed partitions; Redis and Tansu on loopback, Redis AOF "
        "`appendfsync always`",
        "- Per event = piece time / all N input events; every run starts with empty profile "
        "and tag caches and a flushed Redis",
        "- Not measured here: segmentation (`RTP_SEGMENTS`) and churn risk (`RTP_CHURN`), "
        "which the default worker also runs (throughput row (c) includes them); nor "
        "Faust's own per-message cost (throughput row (b))",
    ]


def main(argv: list[str] | None = None) -> int:
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    parser = argparse.ArgumentParser(
        description="Per-event cost of the pipeline's pieces, in-process, in µs/event.",
    )
    parser.add_argument("--events", type=int, default=100_000, help="N (default 100000)")
    parser.add_argument("--runs", type=int, default=5, help="runs; medians are shown")
    parser.add_argument("--batch", type=int, default=2000, help="events per batch")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--no-embeddings",
        action="store_true",
        help="leave out the encoder and embedding pieces (a worker with RTP_EMBEDDINGS=false)",
    )
    parser.add_argument(
        "--cprofile",
        type=int,
        default=0,
        metavar="TOP",
        help="instead: one run under cProfile, print the TOP functions",
    )
    parser.add_argument(
        "--write", action="store_true", help="update the issue-2 section of BENCHMARKS.md"
    )
    parser.add_argument(
        "--md",
        type=Path,
        default=BENCHMARKS_MD,
        help="the file --write updates (default: BENCHMARKS.md of this checkout)",
    )
    args = parser.parse_args(argv)
    if args.write and args.cprofile:
        parser.error("--cprofile figures include the profiler's overhead; do not --write them")
    spec = DataSpec(n=args.events, users=args.users, products=args.products, seed=args.seed)
    console.log(f"generating {spec.n:,} events")
    prep = prepare(spec, args.batch)
    results, vectors = asyncio.run(measure(prep, args.runs, not args.no_embeddings, args.cprofile))
    if not results:
        return 0
    body = "\n".join(
        [
            render(results, prep.n, vectors),
            "",
            "Conditions:",
            "",
            *conditions(spec, args.runs, args.batch, machine_facts()),
            f"- Load average (1/5/15 min) before the run: {load_before}",
        ]
    )
    print(body)
    if args.write:
        write_subsection(SUBSECTION_CORE if args.no_embeddings else SUBSECTION, body, args.md)
        console.log(f"updated {args.md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
