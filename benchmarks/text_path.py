"""Text path benchmark: raw encoder vs the batched pipeline (cold and warm cache) vs a naive
one-at-a-time baseline, side by side in one run, on the same generated events.

    python benchmarks/text_path.py --device cpu --events 2000
    python benchmarks/text_path.py --device cuda --events 40000 --model .model/minilm-fp16

The pipeline part is the worker's update stage in process (``BatchUpdater`` with the
real encoder, the two-tier vector cache and, with ``--redis-url``, the Redis store):
no Kafka, so the figures isolate text encoding and profile math from Faust's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record, apply
from profiles.embedding.cache import EmbeddingCache
from profiles.embedding.embedder import Embedder
from profiles.embedding.feature import vector_learner
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile
from profiles.embedding.text import combine, event_texts
from profiles.encoder.encoder import Encoder, EncoderConfig
from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.tags.event_tags import event_tags
from stream.simulation.generator import TrafficConfig, TrafficGenerator

TEXT_KINDS = {"click", "add_to_cart", "purchase", "review", "search"}


class SpaceTagger:
    """Whitespace tags, for machines without jieba (said in the output)."""

    def text(self, text: str) -> tuple[tuple[str, float], ...]:
        words = [w for w in text.lower().split() if len(w) > 1][:5]
        return tuple((w, 1 / len(words)) for w in words)

    def category(self, path: Sequence[str]) -> tuple[tuple[str, float], ...]:
        return ((path[-1].lower(), 1.0),) if path else ()


def tagger() -> tuple[Any, str]:
    try:
        from profiles.tags.extractor import TagExtractor

        t = TagExtractor()
        t.warm_up()
        return t, "jieba + English (profiles.tags.extractor)"
    except ImportError:
        return SpaceTagger(), "whitespace (jieba not installed here)"


def events(n: int, users: int, seed: int) -> list[dict[str, Any]]:
    gen = TrafficGenerator(TrafficConfig(seed=seed, users=users, products=max(2000, users)))
    out = []
    for event in gen.history(365):
        if event["type"] in TEXT_KINDS and event["user_id"] != "catalog-service":
            out.append(event)
            if len(out) >= n:
                break
    return out


def records(evs: list[dict[str, Any]], prefix: str) -> list[Record]:
    return [
        Record(InputPartition("bench", 0), i, {**e, "user_id": prefix + e["user_id"]})
        for i, e in enumerate(evs)
    ]


class GpuSampler:
    """Mean GPU utilisation while a block runs (nvidia-smi every 100 ms)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=2,
                    check=True,
                ).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                return
            self._stop.wait(0.1)

    def __enter__(self) -> GpuSampler:
        if torch.cuda.is_available():
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(statistics.mean(self.samples), 1) if self.samples else None


def make_store(redis_url: str | None) -> Any:
    if not redis_url:
        return MemoryStore()
    from profiles.redis.store import RedisStore

    return RedisStore.from_url(redis_url)


async def pipeline(
    encoder: Encoder,
    recs: list[Record],
    batch: int,
    cache: EmbeddingCache,
    redis_url: str | None,
    text_tagger: Any,
) -> dict[str, Any]:
    store = make_store(redis_url)
    if redis_url:
        await store.load_scripts()
    config = EmbeddingConfig(encoder.model_id, encoder.dim)
    features = builtin_features(partitions=1, embedder=Embedder(cache, config))
    updater = BatchUpdater(store, ProfileConfig(), text_tagger, features)
    latencies = []
    started = time.perf_counter()
    with GpuSampler() as gpu:
        for i in range(0, len(recs), batch):
            t0 = time.perf_counter()
            await updater.process(recs[i : i + batch])
            latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    if redis_url:
        await store.close()
    latencies.sort()
    return {
        "events_per_s": round(len(recs) / elapsed, 1),
        "batch_latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "batch_latency_p99_ms": round(
            1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1
        ),
        "gpu_util_mean_pct": gpu.mean,
        "texts_encoded": cache.misses,
    }


def naive(
    encoder: Encoder, recs: list[Record], redis_url: str | None, text_tagger: Any
) -> dict[str, Any]:
    """One event at a time, one model call per text, one Redis command per field."""
    import orjson

    client = None
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url)
    memory: dict[str, dict[str, bytes]] = {}
    config = EmbeddingConfig(encoder.model_id, encoder.dim)
    started = time.perf_counter()
    for rec in recs:
        uid = rec.event["user_id"]
        key = f"naive:{uid}"
        if client is not None:
            fields = {f: client.hget(key, f) for f in ("v", "d", "e")}
        else:
            fields = dict(memory.get(key, {}))
        if fields.get("d"):
            profile = Profile.from_bytes(uid, int(fields["v"] or 0), fields["d"])
        else:
            profile = Profile(uid)
        profile.embedding, _ = EmbeddingProfile.load(fields.get("e"), config)
        vectors = {text: encoder.encode([text])[0] for text, _ in event_texts(rec.event, {})}
        apply(
            profile,
            [rec],
            ProfileConfig(),
            lambda e: event_tags(e, text_tagger, {}),
            [vector_learner(lambda e, v=vectors: combine(event_texts(e, {}), v))],  # type: ignore[misc]
        )
        profile.version += 1
        new = {
            "v": str(profile.version).encode(),
            "d": profile.to_bytes(),
            "e": profile.embedding.to_bytes(),
        }
        if client is not None:
            for field, value in new.items():
                client.hset(key, field, value)
        else:
            memory[key] = new
    elapsed = time.perf_counter() - started
    if client is not None:
        client.close()
    _ = orjson
    return {"events_per_s": round(len(recs) / elapsed, 1), "events": len(recs)}


def raw_rate(encoder: Encoder, texts: list[str], repeats: int) -> dict[str, Any]:
    rates = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        encoder.encode(texts)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rates.append(len(texts) / (time.perf_counter() - t0))
    return {
        "sentences_per_s": round(statistics.median(rates), 1),
        "texts": len(texts),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="", help="model dir ('' = bundled all-MiniLM-L6-v2)")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=2000, help="events per pipeline batch")
    parser.add_argument("--encode-batch", type=int, default=256)
    parser.add_argument("--naive-events", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    encoder = Encoder(
        EncoderConfig(model=args.model, device=args.device, batch_size=args.encode_batch)
    )
    text_tagger, tagger_name = tagger()
    evs = events(args.events, args.users, args.seed)
    distinct = list(dict.fromkeys(t for e in evs for t, _ in event_texts(e, {})))
    encoder.encode(distinct[: min(512, len(distinct))])  # warm-up: kernels, allocator

    result: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "model": encoder.model_id,
        "device": encoder.device,
        "dtype": encoder.dtype,
        "encode_batch": args.encode_batch,
        "pipeline_batch": args.batch,
        "events": len(evs),
        "distinct_texts": len(distinct),
        "tagger": tagger_name,
        "store": "redis" if args.redis_url else "memory",
        "mean_chars": round(statistics.mean(len(t) for t in distinct), 1),
    }
    result["raw_encoder"] = raw_rate(encoder, distinct, args.repeats)
    if args.redis_url:
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()
    cold, warm = [], []
    for rep in range(args.repeats):
        cache = EmbeddingCache(encoder, capacity=10**6)  # fresh LRU; no Redis tier: truly cold
        cold.append(
            asyncio.run(
                pipeline(
                    encoder,
                    records(evs, f"c{rep}-"),
                    args.batch,
                    cache,
                    args.redis_url,
                    text_tagger,
                )
            )
        )
        warm.append(
            asyncio.run(
                pipeline(
                    encoder,
                    records(evs, f"w{rep}-"),
                    args.batch,
                    cache,
                    args.redis_url,
                    text_tagger,
                )
            )
        )
    pick = lambda runs: sorted(runs, key=lambda r: r["events_per_s"])[len(runs) // 2]  # noqa: E731
    result["pipeline_cold"] = pick(cold)
    result["pipeline_warm"] = pick(warm)
    result["naive"] = naive(
        encoder, records(evs[: args.naive_events], "n-"), args.redis_url, text_tagger
    )
    raw = result["raw_encoder"]["sentences_per_s"]
    result["ratios"] = {
        "cold_events_vs_raw_sentences": round(result["pipeline_cold"]["events_per_s"] / raw, 3),
        "cold_vs_naive": round(
            result["pipeline_cold"]["events_per_s"] / result["naive"]["events_per_s"], 1
        ),
        "warm_vs_naive": round(
            result["pipeline_warm"]["events_per_s"] / result["naive"]["events_per_s"], 1
        ),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
