"""Cost of online segmentation: per-vector assignment and per-merge model update.

    python benchmarks/segments.py                 # k = 16, 64, 256; print a table
    python benchmarks/segments.py --write         # ... and update BENCHMARKS.md
    python benchmarks/segments.py --no-redis      # skip the Redis merge round trip

Per vector (what a worker pays for every user a batch touches): the clustering features
(``behaviour_vector`` on a stored profile dict, standardise, concatenate with the embedding),
``predict`` (squared distances to all centres, for hysteresis), ``delta`` (reusing predict's
labels) and ``choose_many`` (hysteresis). Per merge (once per worker and merge interval, not per
event): ``apply`` (learning rate, dead-centre check, id matching) and the whole
``CentroidStore.merge`` on a real ``redis-server`` (WATCH, read, decode, apply, reservoir,
encode, MULTI/EXEC; AOF ``appendfsync always`` as in dev). Vectors are 384 + 9 dims; medians
over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# One BLAS thread, as a worker should run these small products: with the default (one per
# CPU) a busy 2-CPU machine showed 30x outliers from threads spinning against each other.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import redis.asyncio as aioredis

from benchmarks.common import BENCHMARKS_MD, machine_facts, markdown_table, median
from profiles.redis.segments import MODEL_KEY, CentroidStore
from profiles.segments.features import (
    BEHAVIOUR_FEATURES,
    FeatureConfig,
    Standardizer,
    behaviour_vector,
    clustering_vectors,
)
from profiles.segments.hysteresis import choose_many
from profiles.segments.kmeans import MiniBatchKMeans, Model
from stream.evaluation.markdown import write_section

SECTION = "## Segmentation update cost (issue 4)"
EMBED_DIM = 384
DIM = EMBED_DIM + len(BEHAVIOUR_FEATURES)
DAY_MS = 86_400_000


@dataclass
class Row:
    k: int
    features_us: float
    predict_us: float
    delta_us: float
    choose_us: float
    apply_ms: float
    merge_ms: float | None
    model_kib: float

    @property
    def per_vector_us(self) -> float:
        return self.features_us + self.predict_us + self.delta_us + self.choose_us


def _timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def _users(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    """Stored-profile-like stats dicts with plausible spreads."""
    kinds = ("click", "add_to_cart", "purchase", "review", "search")
    now = 1_767_225_600_000
    users = []
    for _ in range(n):
        counts = {k: int(c) for k, c in zip(kinds, rng.poisson([30, 4, 1, 0.3, 6]), strict=True)}
        users.append(
            {
                "counts": counts,
                "orders": counts["purchase"],
                "spend_cents": {"CNY": int(rng.integers(0, 500_000))},
                "last_ts": now - int(rng.integers(0, 30 * DAY_MS)),
                "last_purchase_ts": now - int(rng.integers(0, 60 * DAY_MS)),
            }
        )
    return users


def _planted(rng: np.random.Generator, n: int, groups: int) -> np.ndarray:
    means = rng.normal(0.0, 1.0, (groups, DIM))
    X = means[rng.integers(groups, size=n)] + rng.normal(0.0, 1.0, (n, DIM))
    X[:, :EMBED_DIM] /= np.linalg.norm(X[:, :EMBED_DIM], axis=1, keepdims=True)
    return X


def _model(km: MiniBatchKMeans, X: np.ndarray, batch: int) -> Model:
    """A model in steady state: seeded, trained, its reservoir full (as the store keeps it)."""
    model = km.empty()
    for start in range(0, len(X), batch):
        B = X[start : start + batch]
        if model.seeded:
            model = km.apply(model, km.delta(model, B))
        model = km.seed(model, B)
    return model


def measure(
    k: int, batch: int, repeats: int, redis_url: str | None, rng: np.random.Generator
) -> Row:
    X = _planted(rng, max(20 * k, 4000), groups=k)
    km = MiniBatchKMeans(k, DIM)
    model = _model(km, X, batch)
    B = X[:batch]

    users = _users(rng, batch)
    std = Standardizer()
    std.learn_many(np.vstack([behaviour_vector(u, 1_767_225_600_000) for u in users]))
    embeddings = B[:, :EMBED_DIM]
    cfg = FeatureConfig()

    def features() -> np.ndarray:
        rows = np.vstack([behaviour_vector(u, 1_767_225_600_000) for u in users])
        return clustering_vectors(embeddings, rows, std, cfg)

    labels, d2 = km.predict(model, B)
    current: list[int | None] = [model.ids[j] for j in labels]
    delta = km.delta(model, B, labels=labels)
    per = 1e6 / batch
    row = Row(
        k=k,
        features_us=_timed(features, repeats) * per,
        predict_us=_timed(lambda: km.predict(model, B), repeats) * per,
        delta_us=_timed(lambda: km.delta(model, B, labels=labels), repeats) * per,
        choose_us=_timed(lambda: choose_many(current, d2, model.ids), repeats) * per,
        apply_ms=_timed(lambda: km.apply(model, delta), repeats) * 1e3,
        merge_ms=None,
        model_kib=len(model.to_bytes()) / 1024,
    )
    if redis_url is not None:
        row.merge_ms = asyncio.run(_merge_ms(redis_url, km, model, delta, B, repeats))
    return row


async def _merge_ms(
    url: str, km: MiniBatchKMeans, model: Model, delta: Any, B: np.ndarray, repeats: int
) -> float:
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushdb()
        await client.hset(MODEL_KEY, mapping={"v": model.version, "d": model.to_bytes()})
        store = CentroidStore(client)
        std = Standardizer()
        std.learn_many(np.zeros((1, len(BEHAVIOUR_FEATURES))))
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            await store.merge(delta, std, km, B[:32])
            times.append(time.perf_counter() - start)
        return median(times[1:]) * 1e3
    finally:
        await client.aclose()


def _pipeline_figures(text: str) -> tuple[float | None, float | None]:
    """(warm µs per event, profile_updated per input event) from the pipeline section."""
    warm = re.search(r"total, warm tag cache[^|]*\|\s*([\d.]+)", text)
    users = re.search(r"\(([\d.]+) per input event\)", text)
    return (
        float(warm.group(1)) if warm else None,
        float(users.group(1)) if users else None,
    )


def render(rows: list[Row], batch: int, repeats: int, facts: dict[str, str]) -> str:
    bench = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else ""
    warm_us, users_per_event = _pipeline_figures(bench)
    headers = [
        "k",
        "features µs/vec",
        "predict µs/vec",
        "delta µs/vec",
        "hysteresis µs/vec",
        "**per vector µs**",
        "vectors/s (predict + delta)",
        "apply ms",
        "store merge ms",
        "model KiB",
    ]
    table = []
    for r in rows:
        assign = r.predict_us + r.delta_us
        table.append(
            [
                str(r.k),
                f"{r.features_us:.2f}",
                f"{r.predict_us:.2f}",
                f"{r.delta_us:.2f}",
                f"{r.choose_us:.2f}",
                f"**{r.per_vector_us:.2f}**",
                f"{1e6 / assign:,.0f}",
                f"{r.apply_ms:.2f}",
                "" if r.merge_ms is None else f"{r.merge_ms:.1f}",
                f"{r.model_kib:,.0f}",
            ]
        )
    lines = [
        SECTION,
        "",
        "What online segmentation (`profiles/segments/`) adds to a worker. Per vector: every user "
        "a batch touches is featurised, assigned (`predict`, distances to all centres for "
        "hysteresis), accumulated (`delta`, reusing the labels) and given a segment "
        "(`choose_many`). Per merge: a worker folds its delta into the shared model "
        "(`apply`, alone, and the whole `CentroidStore.merge` on Redis), once per merge "
        "interval, whatever the traffic. Regenerate with `python benchmarks/segments.py --write`.",
        "",
        markdown_table(headers, table),
        "",
    ]
    if warm_us is not None:
        share = [
            f"k={r.k}: {r.per_vector_us / warm_us:.0%} if every event were a new vector"
            + (
                f", {r.per_vector_us * users_per_event / warm_us:.1%} at "
                f"{users_per_event} touched users per event"
                if users_per_event is not None
                else ""
            )
            for r in rows
        ]
        lines += [
            f"- Share of the pipeline's warm per-event cost ({warm_us} µs/event, "
            "`benchmarks/breakdown.py` above): " + "; ".join(share) + ". The worker featurises "
            "each touched user once per batch, so the second figure is the one to expect.",
        ]
    else:
        lines += ["- No pipeline breakdown in BENCHMARKS.md: per-vector cost only."]
    lines += [
        "- `apply` and the merge run once per worker per merge interval (e.g. every few "
        "seconds): at k=256 a 1 s interval costs "
        + (
            f"{rows[-1].merge_ms / 10:.1f}% of one core."
            if rows[-1].merge_ms is not None
            else "(merge not measured)."
        )
        + " The model blob is mostly the float32 reservoir (2,000 × 393 × 4 B ≈ 3 MiB), "
        "rewritten (and appended to the AOF) at every merge.",
        "",
        "Conditions:",
        "",
        f"- Date: {facts['date']}",
        f"- Machine: {facts['nproc']} CPUs (`nproc`), {facts['cpu']}, {facts['ram']} RAM; "
        f"numpy {np.__version__}, BLAS threads: {os.environ['OPENBLAS_NUM_THREADS']} "
        "(`OPENBLAS_NUM_THREADS`; the script sets 1 unless told otherwise)",
        f"- Python {facts['python']}, redis-py {facts['redis-py']}, "
        f"redis-server {facts['redis-server']} (AOF `appendfsync always`, loopback)",
        f"- Vectors: {DIM} dims (384 embedding + {len(BEHAVIOUR_FEATURES)} behaviour), batches "
        f"of {batch} vectors, default `MiniBatchKMeans(k, {DIM})` (reservoir 2,000) fitted on "
        f"planted groups first; median of {repeats} repeats after a warm-up",
        "- Store merge: delta of one batch + standardizer increment + 32 vectors offered to "
        "the reservoir, no contention",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--batch", type=int, default=256, help="vectors per batch")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-redis", action="store_true", help="skip the store merge")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    rows = []
    if args.no_redis:
        for k in args.k:
            rows.append(measure(k, args.batch, args.repeats, None, rng))
    else:
        from benchmarks.common import scratch_services

        with scratch_services(redis_only=True) as (services, _):
            for k in args.k:
                rows.append(measure(k, args.batch, args.repeats, services.redis_url, rng))
    body = render(rows, args.batch, args.repeats, machine_facts())
    print(body)
    if args.write:
        write_section(BENCHMARKS_MD, SECTION, body, title="Benchmarks")
        print(f"wrote {SECTION!r} in {BENCHMARKS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
