"""Cost of the hashed text channel per distinct text (profiles.embedding.channel).

    python benchmarks/text_channel.py [--texts 5000] [--repeats 5]

Texts: the generator's Chinese item texts (``title | category path``) and queries, as the
worker meets them. Measured: :func:`mix` on batches of 256 texts (the worker's encode batch;
every text counted as unreadable, so each one is hashed) and on single texts, after the
transformer, which is not timed. Medians over ``--repeats`` runs of CPU time
(``time.process_time``: on a shared machine wall time counts the waits for a core too), µs per
text, one BLAS thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from profiles.embedding.channel import features, mix
from profiles.embedding.text import event_texts, item_text
from stream.simulation.generator import TrafficConfig, TrafficGenerator

DIM = 384
BATCH = 256


def chinese_texts(n: int) -> list[str]:
    gen = TrafficGenerator(TrafficConfig(seed=7, users=300, products=3000))
    catalog = gen.catalog()
    items = {ev["product_id"]: ev for ev in catalog}
    texts = dict.fromkeys(item_text(ev["title"], ev["category"]) for ev in catalog)
    for ev in gen.history(days=5):
        texts.update(dict.fromkeys(t for t, _ in event_texts(ev, items)))
    zh = [t for t in texts if any("\u4e00" <= c <= "\u9fff" for c in t)]
    return zh[:n]


def per_text_us(texts: list[str], batch: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(len(texts), DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    unk = np.full(len(texts), 0.7)
    runs = []
    for _ in range(repeats):
        started = time.process_time()
        for i in range(0, len(texts), batch):
            mix(texts[i : i + batch], vecs[i : i + batch], unk[i : i + batch])
        runs.append((time.process_time() - started) / len(texts) * 1e6)
    return float(np.median(runs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    texts = chinese_texts(args.texts)
    n_features = np.mean([len(features(t)) for t in texts])
    print(f"{len(texts)} Chinese texts, {n_features:.1f} features each on average")
    print("| call | µs per text |")
    print("| --- | ---: |")
    print(f"| mix, batches of {BATCH} | {per_text_us(texts, BATCH, args.repeats):.1f} |")
    single = texts[: min(len(texts), 1000)]
    print(f"| mix, one text per call | {per_text_us(single, 1, args.repeats):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
