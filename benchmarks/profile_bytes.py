"""Redis bytes per user, by field, with vectors stored as float32 (before) and compactly.

    python benchmarks/profile_bytes.py                       # 10k users, ~4 min on 2 cores
    python benchmarks/profile_bytes.py --users 100000 --days 1

Generated traffic (``TrafficGenerator``, seed 7: the catalog, then ``--days`` of history of
``--users`` users) goes through the worker's real update stage (``build_updater`` with every
default feature: embeddings, segments, churn, recommendations) into a scratch
``redis-server``, in batches of ``--batch`` records, once per stored vector format (Redis
flushed in between; everything else is the same). Then, for every profile hash
``rtp:p:{user}``: ``MEMORY USAGE`` (``SAMPLES 0``: the whole value) and ``HSTRLEN`` of each
field. Vectors are all-MiniLM-L6-v2's, looked up in the recommendation evaluation's cache
(``/tmp/rtp-evaluate-recs/vectors.npz``, written by ``python -m stream.evaluation.recs`` or
``benchmarks/vector_storage.py``); texts it lacks get a deterministic hash vector of the same
dimension (counted in the report), so no model runs here: the vectors' values do not change
their stored size, only how many interests a user keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import redis.asyncio as aioredis

from benchmarks.common import machine_facts, scratch_services
from profiles.churn.risk import RiskConfig
from profiles.churn.tracker import ChurnTracker
from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.embedding.cache import EmbeddingCache
from profiles.embedding.codec import Format
from profiles.embedding.embedder import Embedder
from profiles.pipeline.builtin import CODECS
from profiles.pipeline.feature import stored_fields
from profiles.redis import keys
from profiles.redis.store import RedisStore
from profiles.tags.extractor import TagExtractor
from stream.settings import Settings
from stream.simulation.generator import TrafficConfig, TrafficGenerator
from stream.worker.compose import (
    Models,
    build_updater,
    embedding_config,
    recommendations_for,
    segmenter_for,
)

FIELDS = ("v", "d", *stored_fields(CODECS))


class CachedEncoder:
    """Real vectors from the evaluation's cache; a hash vector for a text it lacks."""

    def __init__(self, cache: Path) -> None:
        self.table: dict[str, np.ndarray] = {}
        self.model_id, self.dim = "all-MiniLM-L6-v2", 384
        if cache.exists():
            with np.load(cache) as data:
                self.model_id = str(data["model"])
                vectors = data["vectors"]
                self.dim = int(vectors.shape[1])
                self.table = dict(zip(data["texts"].tolist(), vectors, strict=True))
        self.hits = self.misses = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            v = self.table.get(text)
            if v is None:
                self.misses += 1
                seed = int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")
                g = np.random.default_rng(seed).standard_normal(self.dim)
                v = g / np.linalg.norm(g)
            else:
                self.hits += 1
            rows.append(v)
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), self.dim)


async def one_format(
    fmt: Format,
    events: list[dict[str, Any]],
    encoder: CachedEncoder,
    client: aioredis.Redis,
    batch: int,
) -> tuple[dict[str, np.ndarray], float]:
    """Write every event through the updater with vectors stored as ``fmt``; per-user figures."""
    await client.flushall()
    settings = Settings.from_env({"RTP_CACHE_USERS": "200000", "RTP_PARTITIONS": "4"})
    config = embedding_config(settings, encoder.model_id, encoder.dim)
    config = dataclasses.replace(config, storage=fmt)
    embedder = Embedder(EmbeddingCache(encoder, capacity=1_000_000), config)
    tagger = TagExtractor()
    store = RedisStore(client)
    segmenter = segmenter_for(settings, client, encoder.dim)
    await segmenter.start()
    mirror, recommender = recommendations_for(settings, client, embedder, tagger)
    churn = ChurnTracker(RiskConfig(horizon_days=settings.churn.horizon_days))
    models = Models(embedder, segmenter, mirror, recommender)
    updater = build_updater(settings, store, tagger, models, churn)
    records = [Record(InputPartition("bench", 0), i, e) for i, e in enumerate(events)]
    n_catalog = sum(1 for e in events if e["type"] == "product" and "seen_in" not in e)
    started = time.perf_counter()
    await updater.process(records[:n_catalog])
    await mirror.load()
    for i in range(n_catalog, len(records), batch):
        await updater.process(records[i : i + batch])
        if (i // batch) % 50 == 0:
            await segmenter.sync()
    wall = time.perf_counter() - started
    users = sorted({str(e["user_id"]) for e in events if e["type"] != "product"})
    out: dict[str, list[int]] = {name: [] for name in ("memory", *FIELDS)}
    for at in range(0, len(users), 1000):
        chunk = users[at : at + 1000]
        pipe = client.pipeline(transaction=False)
        for user in chunk:
            key = keys.profile(user)
            pipe.memory_usage(key, samples=0)
            for field in FIELDS:
                pipe.hstrlen(key, field)
        replies = await pipe.execute()
        step = 1 + len(FIELDS)
        for j in range(len(chunk)):
            row = replies[j * step : (j + 1) * step]
            out["memory"].append(int(row[0] or 0))
            for field, value in zip(FIELDS, row[1:], strict=True):
                out[field].append(int(value or 0))
    return {k: np.asarray(v) for k, v in out.items()}, wall


def _fmt(values: np.ndarray, q: float) -> str:
    return f"{np.quantile(values, q):,.0f}" if values.size else "-"


def report(
    args: argparse.Namespace,
    results: dict[Format, tuple[dict[str, np.ndarray], float]],
    n_events: int,
    encoder: CachedEncoder,
) -> str:
    facts = machine_facts()
    formats = list(results)
    base = formats[0]
    lines = [
        f"`python benchmarks/profile_bytes.py --users {args.users} --days {args.days:g} "
        f"--batch {args.batch}`: {n_events:,} events (catalog of {args.products:,} products, "
        f"then {args.days:g} days of {args.users:,} users, `TrafficGenerator(seed={args.seed})`) "
        "through `build_updater` (embeddings, segments, churn, recommendations: the defaults) "
        f"into `redis-server {facts['redis-server']}`; vectors `{encoder.model_id}` "
        f"(dim {encoder.dim}) from the evaluation's cache, "
        f"{encoder.misses / max(1, encoder.hits + encoder.misses):.1%} of lookups hash vectors.",
        f"Machine: {facts['nproc']} CPUs, {facts['cpu']}; {facts['date']}; {facts['code']}.",
        "",
        "Bytes per profile hash (`MEMORY USAGE key SAMPLES 0`), "
        f"{len(results[base][0]['memory']):,} users:",
        "",
        "| vectors stored as | median | p99 | mean | x " + base + " (median) | write wall s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    base_med = float(np.median(results[base][0]["memory"]))
    for fmt in formats:
        mem = results[fmt][0]["memory"]
        lines.append(
            f"| {fmt} | **{_fmt(mem, 0.5)}** | {_fmt(mem, 0.99)} | {mem.mean():,.0f} | "
            f"{float(np.median(mem)) / base_med:.2f} | {results[fmt][1]:.0f} |"
        )
    lines += [
        "",
        "Bytes per field (`HSTRLEN`; median / p99 over users that have the field):",
        "",
        "| field | holds | " + " | ".join(formats) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in formats) + " |",
    ]
    holds = {
        "v": "version",
        "d": "profile JSON (stats, tags, fences)",
        "e": "embedding (long, short, interest vectors)",
        "s": "segment",
        "c": "churn state",
        "r": "last recommendations",
        "rv": "their long-term vector (float16)",
    }
    for field in FIELDS:
        cells = []
        for fmt in formats:
            v = results[fmt][0][field]
            v = v[v > 0]
            cells.append(f"{_fmt(v, 0.5)} / {_fmt(v, 0.99)}" if v.size else "-")
        lines.append(f"| `{field}` | {holds.get(field, '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    gen = TrafficGenerator(TrafficConfig(seed=args.seed, users=args.users, products=args.products))
    events = [*gen.catalog(), *gen.history(days=args.days)]
    encoder = CachedEncoder(args.cache)
    results: dict[Format, tuple[dict[str, np.ndarray], float]] = {}
    with scratch_services(redis_only=True) as (services, _):
        client = aioredis.Redis.from_url(services.redis_url)
        try:
            for fmt in args.formats:
                results[fmt] = await one_format(fmt, events, encoder, client, args.batch)
                print(f"{fmt}: {results[fmt][1]:.0f} s", file=sys.stderr)
        finally:
            await client.aclose()
    print(report(args, results, len(events), encoder))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--formats", nargs="+", default=["f32", "f16", "i8"])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rtp-evaluate-recs/vectors.npz"))
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
