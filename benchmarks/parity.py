"""Encoder parity: vectors from another device/dtype vs reference vectors (CPU fp32).

python benchmarks/parity.py make --out ref.npz            # here: CPU fp32 references
python benchmarks/parity.py check --ref ref.npz --model DIR --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from profiles.embedding.text import event_texts
from profiles.encoder.encoder import Encoder, EncoderConfig
from stream.simulation.generator import TrafficConfig, TrafficGenerator


def sample_texts(n: int) -> list[str]:
    gen = TrafficGenerator(TrafficConfig(seed=5, users=300, products=500))
    texts: list[str] = []
    for event in [*gen.catalog(), *gen.history(30)]:
        texts.extend(t for t, _ in event_texts(event, {}))
    distinct = list(dict.fromkeys(texts))
    step = max(1, len(distinct) // n)
    return [*distinct[::step][:n], "", "😀🎉", "x" * 5000]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["make", "check"])
    parser.add_argument("--out", default="ref.npz")
    parser.add_argument("--ref", default="ref.npz")
    parser.add_argument("--model", default="")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=400)
    args = parser.parse_args()
    if args.action == "make":
        texts = sample_texts(args.n)
        vectors = Encoder(EncoderConfig(device="cpu")).encode(texts)
        np.savez_compressed(args.out, vectors=vectors, texts=np.array(texts, dtype=object))
        print(f"wrote {len(texts)} reference vectors to {args.out}")
        return
    ref = np.load(args.ref, allow_pickle=True)
    encoder = Encoder(EncoderConfig(model=args.model, device=args.device))
    got = encoder.encode(list(ref["texts"]))
    cos = np.sum(got * ref["vectors"], axis=1)
    print(
        json.dumps(
            {
                "device": encoder.device,
                "dtype": encoder.dtype,
                "texts": len(cos),
                "cosine_min": round(float(cos.min()), 6),
                "cosine_mean": round(float(cos.mean()), 6),
            }
        )
    )


if __name__ == "__main__":
    main()
