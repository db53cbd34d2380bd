"""Recommendation latency per user with 100k and 1M catalog items, and index upsert cost.

    python benchmarks/recommend.py                  # 100k and 1M items; print a table
    python benchmarks/recommend.py --write          # ... and update BENCHMARKS.md
    python benchmarks/recommend.py --sizes 100000   # one size only

Latency only, so synthetic data is fine: random unit vectors of dim 384 (what the
recommendation maths sees from all-MiniLM-L6-v2, without encoding a million titles) and
tags shaped like ``TagExtractor``'s output (a category path of three levels over 12 top
categories, plus four title words drawn Zipf-like from 20,000). Each user has 5 interest
vectors and a long-term vector (each the mean of a few items' vectors plus noise, so the
neighbours are real neighbours), 40 tags (``BlendConfig().user_tags``) and 20 purchased
items. One call is :func:`profiles.recommend.blend.recommend` with ``BlendConfig()`` (k = 10,
50 candidates per vector and from tags); p50/p99 are over the users of one pass, and the
figures are the median over ``--repeats`` passes. ``top_k`` and ``by_tags`` are timed alone
too, to show where the time goes.

Upserts: a new item (amortised, doubling included), a replacement with a new vector (a title
change: same row, tag postings diffed) and a removal (discontinued), each timed over 10,000
calls on the full index. The index is built with upserts from an empty one (capacity 1024),
so the build time includes every doubling.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks.common import BENCHMARKS_MD, machine_facts, markdown_table, median
from profiles.recommend.blend import BlendConfig, recommend
from profiles.recommend.index import Item, ItemIndex
from stream.evaluation.markdown import write_section

SECTION = "## Recommendation latency (issue 6)"
DIM = 384
TOPS, LEAVES, SUBLEAVES = 12, 8, 6
VOCAB = 20_000
TITLE_WORDS = 4
UPSERTS = 10_000
USER_TAGS = 40  # BlendConfig().user_tags
BATCH = 32  # users whose vectors share one matrix pass in the batched top_k figure


@dataclass
class Row:
    items: int
    build_s: float
    p50_ms: float
    p99_ms: float
    top_k_ms: float
    batched_ms: float
    by_tags_ms: float
    cold_ms: float
    new_us: float
    update_us: float
    remove_us: float
    rss_gib: float


@dataclass(frozen=True)
class User:
    long_term: np.ndarray
    interests: list[tuple[np.ndarray, float, list[str]]]
    tags: list[tuple[str, float]]
    purchased: set[str]


class Catalog:
    """Random items, generated in chunks so 1M x 384 never needs a float64 copy."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        ranks = np.arange(1, VOCAB + 1, dtype=np.float64)
        self.word_p = ranks**-1.0 / np.sum(ranks**-1.0)

    def vectors(self, n: int) -> np.ndarray:
        out = np.empty((n, DIM), dtype=np.float32)
        for start in range(0, n, 100_000):
            block = self.rng.standard_normal((min(100_000, n - start), DIM), dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[start : start + block.shape[0]] = block
        return out

    def tags(self, n: int) -> list[tuple[frozenset[str], tuple[str, ...]]]:
        top = self.rng.integers(TOPS, size=n)
        leaf = self.rng.integers(LEAVES, size=n)
        sub = self.rng.integers(SUBLEAVES, size=n)
        words = self.rng.choice(VOCAB, size=(n, TITLE_WORDS), p=self.word_p)
        out: list[tuple[frozenset[str], tuple[str, ...]]] = []
        for t, lf, s, ws in zip(
            top.tolist(), leaf.tolist(), sub.tolist(), words.tolist(), strict=True
        ):
            path = (f"cat{t}", f"cat{t}.{lf}", f"cat{t}.{lf}.{s}")
            out.append((frozenset([*path, *(f"w{w}" for w in ws)]), path))
        return out


def build(n: int, rng: np.random.Generator) -> tuple[ItemIndex, np.ndarray, float]:
    cat = Catalog(rng)
    vecs = cat.vectors(n)
    tags = cat.tags(n)
    started = time.perf_counter()
    index = ItemIndex(DIM)
    for i in range(n):
        t, path = tags[i]
        index.upsert(Item(f"p{i:07d}", vecs[i], t, path, 10.0))
    build_s = time.perf_counter() - started
    # Rolling popularity on a Zipf-ish tenth of the catalog.
    hot = rng.choice(n, size=n // 10, replace=False)
    weights = np.asarray(rng.pareto(1.2, size=hot.shape[0])) + 1.0
    for row, w in zip(hot.tolist(), weights.tolist(), strict=True):
        index.record(f"p{row:07d}", w, ts=1_767_225_600_000)
    return index, vecs, build_s


def make_users(
    index: ItemIndex, vecs: np.ndarray, n_users: int, rng: np.random.Generator
) -> list[User]:
    n = vecs.shape[0]
    users = []
    for _ in range(n_users):
        seeds = rng.integers(n, size=(5, 4))
        interests = []
        for group in seeds:
            v = vecs[group].mean(axis=0) + 0.05 * rng.standard_normal(DIM).astype(np.float32)
            v /= np.linalg.norm(v)
            tags = sorted(index.tags_of(f"p{int(group[0]):07d}"))[:5]
            interests.append((v.astype(np.float32), float(rng.random()), tags))
        long_term = np.mean([v for v, _, _ in interests], axis=0)
        long_term /= np.linalg.norm(long_term)
        tag_pool = sorted({t for _, _, ts in interests for t in ts})
        words = rng.choice(VOCAB, size=USER_TAGS, p=Catalog(rng).word_p)
        tag_pool += [f"w{int(w)}" for w in words]
        user_tags = [(t, float(rng.random())) for t in tag_pool[:USER_TAGS]]
        purchased = {f"p{int(r):07d}" for r in rng.integers(n, size=20)}
        users.append(User(long_term.astype(np.float32), interests, user_tags, purchased))
    return users


def _times_ms(fn: Callable[[User], Any], users: list[User]) -> list[float]:
    out = []
    for user in users:
        start = time.perf_counter()
        fn(user)
        out.append((time.perf_counter() - start) * 1e3)
    return out


def _per_call_us(fn: Callable[[int], Any], calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        fn(i)
    return (time.perf_counter() - start) / calls * 1e6


def measure(n: int, n_users: int, repeats: int, rng: np.random.Generator) -> Row:
    print(f"building {n:,} items...", file=sys.stderr)
    index, vecs, build_s = build(n, rng)
    users = make_users(index, vecs, n_users, rng)
    cfg = BlendConfig()

    def rec(u: User) -> Any:
        return recommend(index, u.long_term, u.interests, u.tags, u.purchased, cfg, events=100)

    def top_k(u: User) -> Any:
        queries = np.vstack([*(v for v, _, _ in u.interests), u.long_term])
        return index.top_k(queries, cfg.per_interest, u.purchased)

    def by_tags(u: User) -> Any:
        return index.by_tags({t for t, _ in u.tags}, cfg.per_interest, u.purchased)

    def cold(u: User) -> Any:
        return recommend(index, None, [], [], u.purchased, cfg)

    for fn in (rec, top_k, by_tags, cold):  # warm-up: posting arrays, caches, page faults
        _times_ms(fn, users[:5])

    def batched(group: list[User]) -> Any:
        queries = np.vstack(
            [np.vstack([*(v for v, _, _ in u.interests), u.long_term]) for u in group]
        )
        return index.top_k(queries, cfg.per_interest)

    batches = [users[i : i + BATCH] for i in range(0, len(users) - BATCH + 1, BATCH)]
    batched(batches[0])
    p50s, p99s, tk, bt, cs, bk = [], [], [], [], [], []
    for r in range(repeats):
        print(f"  pass {r + 1}/{repeats}", file=sys.stderr)
        times = _times_ms(rec, users)
        p50s.append(float(np.percentile(times, 50)))
        p99s.append(float(np.percentile(times, 99)))
        tk.append(float(np.median(_times_ms(top_k, users))))
        bt.append(float(np.median(_times_ms(by_tags, users))))
        cs.append(float(np.median(_times_ms(cold, users))))
        per_user = []
        for group in batches:
            start = time.perf_counter()
            batched(group)
            per_user.append((time.perf_counter() - start) * 1e3 / len(group))
        bk.append(float(np.median(per_user)))

    new_vecs = Catalog(rng).vectors(UPSERTS)
    new_tags = Catalog(rng).tags(UPSERTS)
    new_us = _per_call_us(
        lambda i: index.upsert(
            Item(f"n{i:07d}", new_vecs[i], new_tags[i][0], new_tags[i][1], 10.0)
        ),
        UPSERTS,
    )
    update_us = _per_call_us(
        lambda i: index.upsert(
            Item(f"p{i:07d}", new_vecs[i], new_tags[i][0], new_tags[i][1], 12.0)
        ),
        UPSERTS,
    )
    remove_us = _per_call_us(lambda i: index.remove(f"n{i:07d}"), UPSERTS)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return Row(
        items=n,
        build_s=build_s,
        p50_ms=median(p50s),
        p99_ms=median(p99s),
        top_k_ms=median(tk),
        batched_ms=median(bk),
        by_tags_ms=median(bt),
        cold_ms=median(cs),
        new_us=new_us,
        update_us=update_us,
        remove_us=remove_us,
        rss_gib=rss,
    )


def render(rows: list[Row], n_users: int, repeats: int, facts: dict[str, str]) -> str:
    headers = [
        "items",
        "**p50 ms/user**",
        "**p99 ms/user**",
        "top_k (6 vectors) ms",
        f"top_k, {BATCH} users per call, ms/user",
        "by_tags ms",
        "cold start ms",
        "upsert new µs",
        "upsert update µs",
        "remove µs",
        "build s",
        "peak RSS GiB",
    ]
    table = [
        [
            f"{r.items:,}",
            f"**{r.p50_ms:.1f}**",
            f"**{r.p99_ms:.1f}**",
            f"{r.top_k_ms:.1f}",
            f"{r.batched_ms:.1f}",
            f"{r.by_tags_ms:.1f}",
            f"{r.cold_ms:.2f}",
            f"{r.new_us:.1f}",
            f"{r.update_us:.1f}",
            f"{r.remove_us:.1f}",
            f"{r.build_s:.0f}",
            f"{r.rss_gib:.1f}",
        ]
        for r in rows
    ]
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default (one per CPU)")
    lines = [
        SECTION,
        "",
        "Time to compute one user's 10 recommendations (`profiles/recommend/blend.py:recommend`, "
        "`BlendConfig()` defaults: 5 interest vectors + the long-term vector, 50 candidates "
        "each and 50 from tags, blended score, interest quotas + MMR) on an in-memory "
        "`ItemIndex`, and the cost of keeping the index current. Regenerate with "
        "`python benchmarks/recommend.py --write`.",
        "",
        markdown_table(headers, table),
        "",
        "- The cosine search is one (6 × 384) · (384 × N) float32 product plus an "
        "`argpartition`: it reads the whole matrix once per user, so it grows linearly with "
        "the catalog and is memory-bandwidth bound at 1M items (1.5 GB per pass; this "
        "machine streams about 10 GB/s, so about 150 ms is the floor of an exact search). Tag "
        "candidates cost what the user's posting lists hold (Zipf-distributed words, 3 "
        "category levels). Cold-start users (popularity) do not touch the matrix.",
        f"- Batching users amortises the matrix pass: `top_k` takes the vectors of {BATCH} "
        "users at once (one (192 × 384) · (384 × N) product) for the per-user cost in the "
        "batched column. The worker recommends for the users a batch touched, so computing "
        "their neighbours in one `top_k` call and blending per user is the way to cut "
        "the cost at 1M items; `recommend` takes one user today.",
        "- Upserts are O(dim) plus the tag and category postings that change; a new item "
        "includes its share of the doublings (amortised); a removal zeroes and masks the row "
        "and puts it on the free list.",
        "- Peak RSS is the benchmark process: the index (matrix grown to 2^20 rows = 1.6 GB, "
        "the old matrix alive during the last doubling, per-item tags and postings) plus the "
        "benchmark's own copy of the random vectors (1.5 GB at 1M).",
        "",
        "Conditions:",
        "",
        f"- Date: {facts['date']}",
        f"- Machine: {facts['nproc']} CPUs (`nproc`), {facts['cpu']}, {facts['ram']} RAM; "
        f"numpy {np.__version__}, BLAS threads: {blas}; Python {facts['python']}; "
        "CPU only (numpy path)",
        f"- Code: {facts['code']}",
        f"- Data: synthetic (latency only): random unit vectors, dim {DIM}; tags = 3 category "
        f"levels ({TOPS} × {LEAVES} × {SUBLEAVES}) + {TITLE_WORDS} title words Zipf over "
        f"{VOCAB:,}; popularity recorded on 10% of items. {n_users} users per pass, each with "
        f"5 interests (mean of 4 random items + noise), {USER_TAGS} tags (their interests' "
        "tags, then Zipf title words), 20 purchased items; p50/p99 "
        f"over the users of a pass, median over {repeats} passes after a warm-up.",
        f"- Load average when written: {facts['load']}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--users", type=int, default=200, help="users per pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    for n in args.sizes:
        rows.append(measure(n, args.users, args.repeats, rng))
        print(rows[-1], file=sys.stderr)
    body = render(rows, args.users, args.repeats, machine_facts())
    print(body)
    if args.write:
        write_section(BENCHMARKS_MD, SECTION, body, title="Benchmarks")
        print(f"wrote {SECTION!r} in {BENCHMARKS_MD}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
