"""Encoder throughput: sentences/s for product-title-like texts, printed as one JSON object.

    python benchmarks/encoder_rate.py --device cpu --threads 2 --batch-size 256 --n 2048
    python benchmarks/encoder_rate.py --device cuda --n 50000 --model /models/minilm-fp16

Texts are distinct (so the encoder's dedupe saves nothing) and at most ``--max-length``
tokens. ``--int8`` measures dynamic int8 even when the encoder's quality gate refuses it,
and reports the refusal next to the rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

import profiles.encoder.encoder as encoder_mod
from profiles.encoder.encoder import Encoder, EncoderConfig, Int8QualityError

_VOCAB = (
    "red blue black white green running shoes women men kids leather wallet phone case "
    "wireless earbuds noise cancelling headphones kitchen knife set organic tea coffee beans "
    "laptop stand usb-c cable fast charger summer dress winter jacket waterproof hiking boots "
    "lego toy baby stroller yoga mat steel water bottle gaming mouse mechanical keyboard "
    "4k monitor desk lamp cotton t-shirt slim fit jeans skincare serum vitamin c moisturizer"
)
WORDS = _VOCAB.split()


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{' '.join(rng.choices(WORDS, k=rng.randint(3, 24)))} {i}" for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Encoder throughput, as JSON.")
    parser.add_argument("--model", default="", help="model dir or cached HF id; '' = bundled")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n", type=int, default=2048, help="texts per timed run")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = leave")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; best is reported")
    parser.add_argument("--int8", action="store_true", help="dynamic int8 (CPU)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    config = EncoderConfig(
        model=args.model,
        device=args.device,
        max_length=args.max_length,
        batch_size=args.batch_size,
        int8=args.int8,
    )
    refused = None
    started = time.perf_counter()
    try:
        enc = Encoder(config)
    except Int8QualityError as exc:
        refused = str(exc)
        encoder_mod.INT8_MIN_COSINE = -1.0  # measure anyway; the refusal is reported
        enc = Encoder(config)
    load_s = time.perf_counter() - started

    texts = make_texts(args.n)
    tokens = enc._tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]
    enc.encode(make_texts(min(args.n, args.batch_size), seed=1))  # warm-up: kernels, caches
    runs = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        enc.encode(texts)  # returns host numpy, so GPU work is finished when this returns
        runs.append(time.perf_counter() - started)
    best = min(runs)
    result = {
        "model_id": enc.model_id,
        "device": enc.device,
        "device_name": (
            torch.cuda.get_device_name(enc.device)
            if enc.device.startswith("cuda")
            else platform.processor() or platform.machine()
        ),
        "dtype": enc.dtype,
        "pooling": enc.pooling,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "n": args.n,
        "mean_tokens": sum(map(len, tokens)) / len(tokens),
        "load_s": round(load_s, 3),
        "seconds": [round(r, 4) for r in runs],
        "sentences_per_s": round(args.n / best, 1),
        "int8_refused": refused,
        "torch": torch.__version__,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
