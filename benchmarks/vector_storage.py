"""Stored vector formats against float32: cosine parity and recommendation hit-rate.

python benchmarks/vector_storage.py --users 500 --days 60     # ~10 min on 2 cores
python benchmarks/vector_storage.py --timing                   # codec cost only, ~30 s

The recommendation evaluation's protocol (``stream/evaluation/recs.py``: generated traffic,
real encoder vectors from its cache, each buyer's last purchase held out, hit-rate@10 at the
purchase and session cuts) with one difference: every user's embedding profile is kept once
per stored format and **written and read back after every event** (the worker does so once
per batch, so this is the worst case for rounding that accumulates across writes). All
formats see the same events, tags, popularity and index, so the differences are the
storage's alone. At each cut, every format's long-term, short-term and interest vectors are
compared with the float32 one's (cosine), and every method's hit-rate is reported.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record, Tag, apply
from profiles.embedding.codec import Format
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile
from profiles.embedding.text import combine, event_texts, item_text
from profiles.recommend.index import ItemIndex
from profiles.tags.event_tags import event_tags
from profiles.tags.extractor import TagExtractor
from stream.evaluation.recs import (
    CUTS,
    METHODS,
    Outcome,
    _interactions,
    _item,
    _score,
    holdouts,
    text_vectors,
    with_channel,
)
from stream.simulation.generator import TrafficConfig, TrafficGenerator

FORMATS: tuple[Format, ...] = ("f32", "f16", "i8")


def _cosines(ref: EmbeddingProfile, other: EmbeddingProfile) -> dict[str, list[float]]:
    """Cosine of each of ``other``'s vectors with ``ref``'s (an interest with its nearest
    interest of ``ref``: near-equal weights may swap ranks), and whether both hold the same
    interests (event counts in rank order)."""
    out: dict[str, list[float]] = defaultdict(list)
    for name, a, b in (
        ("long-term", ref.long_term(), other.long_term()),
        ("short-term", ref.short_term(), other.short_term()),
    ):
        if a is not None and b is not None:
            out[name].append(float(a @ b))
    ri, oi = ref.interest_list(), other.interest_list()
    same = [i.events for i in ri] == [i.events for i in oi]
    out["interest clusters equal"].append(float(same))
    if ri:
        refs = np.stack([i.vector for i in ri])
        nearest = [float(np.max(refs @ i.vector)) for i in oi]
        out["interests"].extend(nearest)
        if same:
            out["interests, users with the same interests"].extend(nearest)
    return out


def run(args: argparse.Namespace) -> str:
    started = time.perf_counter()
    gen = TrafficGenerator(TrafficConfig(seed=args.seed, users=args.users, products=args.products))
    catalog = gen.catalog()
    events = list(gen.history(days=args.days))
    items: dict[str, dict[str, Any]] = {ev["product_id"]: ev for ev in catalog}
    texts = {item_text(ev["title"], ev["category"]) for ev in catalog}
    for ev in events:
        if ev["type"] == "product":
            items[ev["product_id"]] = ev
            texts.add(item_text(ev["title"], ev["category"]))
        texts.update(t for t, _ in event_texts(ev, items))
    base_id, raw, _ = text_vectors(texts, args.cache)
    model_id, vectors, _ = with_channel(base_id, raw, 1.0)
    dim = int(next(iter(vectors.values())).shape[0])
    configs = {f: EmbeddingConfig(model_id, dim, storage=f) for f in FORMATS}
    held = holdouts(events)
    config = ProfileConfig()
    tagger = TagExtractor()
    index = ItemIndex(dim, capacity=len(catalog))
    items = {}
    for ev in catalog:
        items[ev["product_id"]] = ev
        index.upsert(_item(ev, vectors, tagger))

    profiles: dict[str, Profile] = {}
    variants: dict[str, dict[Format, EmbeddingProfile]] = {}
    done: set[str] = set()
    outcomes: dict[Format, list[Outcome]] = defaultdict(list)
    cosines: dict[tuple[Format, str, str], list[float]] = defaultdict(list)
    blob_bytes: dict[Format, list[int]] = defaultdict(list)
    codec_s: dict[Format, float] = defaultdict(float)
    writes = 0

    def tag(ev: dict[str, Any]) -> list[tuple[str, float]]:
        return event_tags(ev, tagger, items)

    def learn(profile: Profile, ev: dict[str, Any], ts: int, w: float, tags: Sequence[Tag]) -> None:
        if w <= 0:
            return
        vec = combine(event_texts(ev, items), vectors)
        if vec is not None:
            for emb in variants[profile.user_id].values():
                emb.learn_one(vec, w, ts, tags)

    def score(profile: Profile, h: Any, cut: str) -> None:
        mine = variants[profile.user_id]
        for f in FORMATS:
            profile.embedding = mine[f]
            outcomes[f].extend(_score(index, profile, h, cut, config))
            if f != "f32":
                for name, values in _cosines(mine["f32"], mine[f]).items():
                    cosines[f, cut, name].extend(values)

    for i, ev in enumerate(events):
        if ev["type"] == "product":
            items[ev["product_id"]] = ev
            index.upsert(_item(ev, vectors, tagger))
            continue
        user = ev["user_id"]
        if user not in done:
            h = held.get(user)
            profile = profiles.get(user)
            if profile is None:
                profile = profiles[user] = Profile(user)
                variants[user] = {f: EmbeddingProfile(configs[f]) for f in FORMATS}
            if h is not None and i == h.session_at:
                score(profile, h, "session")
            if h is not None and i == h.purchase_at:
                score(profile, h, "purchase")
                done.add(user)
                del profiles[user], variants[user]
            else:
                apply(
                    profile, [Record(InputPartition("site-events", 0), i, ev)], config, tag, [learn]
                )
                writes += 1
                for f, emb in variants[user].items():
                    t0 = time.perf_counter()
                    blob = emb.to_bytes()
                    variants[user][f], _ = EmbeddingProfile.load(blob, configs[f])
                    codec_s[f] += time.perf_counter() - t0
                    if i % 97 == 0:
                        blob_bytes[f].append(len(blob))
        for pid, w in _interactions(ev):
            index.record(pid, w, int(ev["ts"]))
    return report(
        args,
        outcomes,
        cosines,
        blob_bytes,
        codec_s,
        writes,
        len(events),
        model_id,
        time.perf_counter() - started,
    )


def report(
    args: argparse.Namespace,
    outcomes: dict[Format, list[Outcome]],
    cosines: dict[tuple[Format, str, str], list[float]],
    blob_bytes: dict[Format, list[int]],
    codec_s: dict[Format, float],
    writes: int,
    n_events: int,
    model_id: str,
    seconds: float,
) -> str:
    lines = [
        f"`python benchmarks/vector_storage.py --users {args.users} --products {args.products} "
        f"--days {args.days:g} --seed {args.seed}`: {n_events:,} events, model `{model_id}`, "
        f"{writes:,} writes (a write and read back of every format after every event), "
        f"{seconds:.0f} s.",
        "",
        "| format | `e` bytes (median) | x f32 | encode+decode µs/write |",
        "| --- | ---: | ---: | ---: |",
    ]
    base = float(np.median(blob_bytes["f32"]))
    for f in FORMATS:
        med = float(np.median(blob_bytes[f]))
        lines.append(
            f"| {f} | {med:,.0f} | {med / base:.2f} | {codec_s[f] / max(1, writes) * 1e6:.0f} |"
        )
    lines += [
        "",
        "Cosine with the float32-stored vector, at the cuts (min / 0.1 % / median):",
        "",
        "| format | cut | vector | n | min | p0.1 | median |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for (f, cut, name), values in sorted(cosines.items()):
        v = np.asarray(values)
        if name == "interest clusters equal":
            lines.append(
                f"| {f} | {cut} | share with the same interests | {len(v)} | | | {v.mean():.4f} |"
            )
            continue
        lines.append(
            f"| {f} | {cut} | {name} | {len(v)} | {v.min():.6f} | "
            f"{np.quantile(v, 0.001):.6f} | {np.median(v):.6f} |"
        )
    lines += ["", "Hit-rate@10 per method (f32 / f16 / i8, ratio to f32):", ""]
    lines += [
        "| cut | method | f32 | f16 | i8 | f16/f32 | i8/f32 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for cut in CUTS:
        for method in METHODS:
            rates = {
                f: float(
                    np.mean([o.hit for o in outcomes[f] if o.cut == cut and o.method == method])
                )
                for f in FORMATS
            }
            lines.append(
                f"| {cut} | {method} | {rates['f32']:.4f} | {rates['f16']:.4f} | "
                f"{rates['i8']:.4f} | {rates['f16'] / rates['f32']:.4f} | "
                f"{rates['i8'] / rates['f32']:.4f} |"
            )
    return "\n".join(lines)


def timing(cache: Path, rounds: int = 9, calls: int = 1000) -> str:
    """µs to encode (``to_bytes``) and decode (``load``) one profile of 300 real event
    vectors (long, short, 5 interests), formats interleaved, median of ``rounds``."""
    with np.load(cache) as data:
        vecs, model = data["vectors"][:3000], str(data["model"])
    dim = int(vecs.shape[1])
    configs = {f: EmbeddingConfig(model, dim, storage=f) for f in FORMATS}
    rng = np.random.default_rng(0)
    p = EmbeddingProfile(configs["f32"])
    for i in range(300):
        tags = [(f"t{i % 9}", 1.0), (f"tag{i % 13}", 0.5)]
        p.learn_one(
            vecs[rng.integers(len(vecs))], 1.0 + i % 3, 1_767_225_600_000 + i * 600_000, tags
        )
    enc: dict[Format, list[float]] = defaultdict(list)
    dec: dict[Format, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for f in FORMATS:
            t0 = time.perf_counter()
            for _ in range(calls):
                blob = p.to_bytes(f)
            enc[f].append((time.perf_counter() - t0) / calls * 1e6)
            t0 = time.perf_counter()
            for _ in range(calls):
                EmbeddingProfile.load(blob, configs[f])
            dec[f].append((time.perf_counter() - t0) / calls * 1e6)
    lines = [
        f"One profile ({len(p.interest_list())} interests, dim {dim}), {calls} calls x {rounds} "
        "rounds, formats interleaved, medians:",
        "",
        "| format | `e` bytes | encode µs | decode µs | encode x f32 | decode x f32 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    e32, d32 = float(np.median(enc["f32"])), float(np.median(dec["f32"]))
    for f in FORMATS:
        e, d = float(np.median(enc[f])), float(np.median(dec[f]))
        lines.append(
            f"| {f} | {len(p.to_bytes(f)):,} | {e:.1f} | {d:.1f} | {e / e32:.2f} | {d / d32:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--days", type=float, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rtp-evaluate-recs/vectors.npz"))
    parser.add_argument("--timing", action="store_true", help="only the codec's cost per profile")
    args = parser.parse_args()
    print(timing(args.cache) if args.timing else run(args))


if __name__ == "__main__":
    main()
