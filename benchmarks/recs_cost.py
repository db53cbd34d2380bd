"""Added cost per event of recommendations in the update stage, measured side by side.

    python benchmarks/recs_cost.py                      # 20k events, generator catalog
    python benchmarks/recs_cost.py --extra-items 97000  # ... in a 100k-item index

The worker's update stage in process (``BatchUpdater`` over a ``MemoryStore``, batches of
``--batch`` records, real tagger), once without a recommender and once with one (defaults:
``BlendConfig()``, 10-minute throttle, 0.1 shift), interleaved ``--repeats`` times on the same
events; medians. The encoder is a deterministic hash-to-vector stand-in of dim 384 and every
text is encoded before timing, so the figures are the recommendation work alone (throttle
checks, popularity contributions, list computation in a worker thread) and not encoding,
Kafka or Redis. ``--extra-items`` adds random catalog items to the index (vector search cost
grows with the catalog).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.common import DataSpec, generate_events, machine_facts
from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.embedding.cache import EmbeddingCache
from profiles.embedding.embedder import Embedder
from profiles.embedding.profile import EmbeddingConfig
from profiles.embedding.text import item_text
from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.recommend.index import Item, ItemIndex
from profiles.recommend.mirror import to_item
from profiles.recommend.recommender import Recommender, RecsConfig
from profiles.tags.extractor import TagExtractor

DIM = 384


class HashEncoder:
    """A text's vector from its hash: deterministic, model-shaped, no model cost."""

    model_id = "hash-384"
    dim = DIM

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(DIM)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32)


def build_index(
    catalog: list[dict[str, Any]], vectors: dict[str, np.ndarray], tagger: Any, extra: int
) -> ItemIndex:
    index = ItemIndex(DIM, capacity=len(catalog) + extra + 1)
    for ev in catalog:
        index.upsert(to_item(ev, vectors[item_text(ev["title"], ev["category"])], tagger))
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(20_000)]
    for i in range(extra):
        v = rng.standard_normal(DIM).astype(np.float32)
        tags = frozenset(rng.choice(words, 4).tolist()) | {f"c{i % 97}"}
        index.upsert(Item(f"x{i}", v, tags, (f"c{i % 97}",), 1.0))
    return index


async def run_once(
    records: list[Record],
    embedder: Embedder,
    tagger: Any,
    index: ItemIndex | None,
    batch: int,
) -> dict[str, float]:
    config = ProfileConfig()
    rec = (
        None
        if index is None
        else Recommender(index, RecsConfig(), config.half_life_ms, embedder.config)
    )
    features = builtin_features(partitions=4, embedder=embedder, recommender=rec, config=config)
    updater = BatchUpdater(MemoryStore(), config, tagger, features)
    lists = 0
    recs_s = 0.0
    started = time.perf_counter()
    for i in range(0, len(records), batch):
        result = await updater.process(records[i : i + batch])
        lists += len(result.recommendations)
        recs_s += result.recs_seconds
    wall = time.perf_counter() - started
    return {"wall": wall, "lists": lists, "recs_s": recs_s}


async def main_async(args: argparse.Namespace) -> None:
    events = generate_events(DataSpec(n=args.events, users=args.users, products=args.products))
    catalog = [e for e in events if e["type"] == "product"]
    tagger = TagExtractor()
    tagger.warm_up()
    embedder = Embedder(
        EmbeddingCache(HashEncoder(), capacity=1_000_000), EmbeddingConfig("hash-384", DIM)
    )
    records = [Record(InputPartition("bench", 0), i, e) for i, e in enumerate(events)]
    # Encode every text once, before timing (both variants then hit the same warm cache).
    from profiles.embedding.text import event_texts

    items = {e["product_id"]: e for e in catalog}
    texts = [t for e in events for t, _ in event_texts(e, items)]
    vectors = await embedder.vectors(texts)
    index = build_index(catalog, vectors, tagger, args.extra_items)
    user_events = sum(1 for e in events if e["type"] != "product")
    # Warm-up pass of each variant (jieba caches, numpy), not timed.
    await run_once(records, embedder, tagger, None, args.batch)
    samples: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for _ in range(args.repeats):
        samples["off"].append(await run_once(records, embedder, tagger, None, args.batch))
        samples["on"].append(await run_once(records, embedder, tagger, index, args.batch))
    off = statistics.median(s["wall"] for s in samples["off"])
    on = statistics.median(s["wall"] for s in samples["on"])
    lists = statistics.median(s["lists"] for s in samples["on"])
    recs_s = statistics.median(s["recs_s"] for s in samples["on"])
    facts = machine_facts()
    n = len(records)
    print(f"- Machine: {facts['nproc']} CPUs, {facts['cpu']}; code: {facts['code']}")
    print(
        f"- {n:,} events ({user_events:,} user events, {len(catalog):,} catalog), "
        f"{args.users:,} users; index of {len(index):,} items; batches of {args.batch}; "
        f"median of {args.repeats} interleaved runs"
    )
    print()
    print("| update stage | µs / event | events/s |")
    print("| --- | --- | --- |")
    print(f"| recommendations off | {off / n * 1e6:.1f} | {n / off:,.0f} |")
    print(f"| recommendations on | {on / n * 1e6:.1f} | {n / on:,.0f} |")
    print()
    print(
        f"- Added cost: **{(on - off) / n * 1e6:.1f} µs per event** ({on / off:.2f}× the stage "
        f"without); {lists:,.0f} lists computed ({lists / user_events:.3f} per user event), "
        f"{recs_s / max(lists, 1) * 1000:.2f} ms per list in the worker thread"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--extra-items", type=int, default=0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
