"""Embedding update per batch: the per-event ``learn_one`` loop against the batch path.

A realistic batch (default 2,000 events over 300 warm users, dim 384, default settings:
long 30 days, short 30 minutes, 5 interests at cosine 0.5) is applied to copies of the same
profiles both ways, interleaved, and timed per event; the breakdown times each estimator
alone. The final states of both ways are compared (cosine of every stored vector).

    python benchmarks/embedding_update.py [--events 2000] [--users 300] [--write]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Small matrices: BLAS threads only contend (as the other benchmarks, unless told otherwise).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import facts_lines, machine_facts, markdown_table, median, write_section
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile

HEADING = "## Embedding update per batch (issue 15 item 2)"
MINUTE = 60_000
KIND_WEIGHTS = [1.0, 1.0, 1.0, 3.0, 5.0]  # mostly clicks, some carts and purchases
TAGS = [f"tag{i}" for i in range(40)]

Event = tuple[np.ndarray, float, int, list[tuple[str, float]]]


def _vector(rng: np.random.Generator, topics: np.ndarray) -> np.ndarray:
    v = topics[rng.integers(len(topics))] + 0.5 * rng.standard_normal(topics.shape[1])
    return v / np.linalg.norm(v)  # the feature learns unit vectors (text.combine)


def _tags(rng: np.random.Generator) -> list[tuple[str, float]]:
    return [(TAGS[int(i)], 1.0) for i in rng.choice(len(TAGS), size=2, replace=False)]


def build(
    args: argparse.Namespace,
) -> tuple[dict[str, EmbeddingProfile], dict[str, list[Event]]]:
    """Warm profiles (``--history`` events each, over the past days) and one batch by user."""
    rng = np.random.default_rng(args.seed)
    config = EmbeddingConfig("bench", args.dim)
    now = 1_700_000_000_000
    topics = {f"u{i}": rng.standard_normal((6, args.dim)) for i in range(args.users)}
    profiles: dict[str, EmbeddingProfile] = {}
    for uid, mine in topics.items():
        profile = EmbeddingProfile(config)
        for ts in sorted(rng.integers(now - 20 * 1440 * MINUTE, now, size=args.history).tolist()):
            profile.learn_one(_vector(rng, mine), 1.0, ts, _tags(rng))
        profiles[uid] = profile
    # Skewed activity: a few users make many of the batch's events (Zipf-like weights).
    share = 1.0 / np.arange(1, args.users + 1) ** 0.8
    users = rng.choice(list(topics), size=args.events, p=share / share.sum())
    batch: dict[str, list[Event]] = {}
    for i, uid in enumerate(users.tolist()):
        ts = now + i * 30 - (int(rng.integers(0, 5 * MINUTE)) if rng.random() < 0.1 else 0)
        w = float(rng.choice(KIND_WEIGHTS))
        batch.setdefault(uid, []).append((_vector(rng, topics[uid]), w, ts, _tags(rng)))
    return profiles, batch


def old_loop(profile: EmbeddingProfile, events: list[Event]) -> None:
    for vec, w, ts, tags in events:
        profile.learn_one(vec, w, ts, tags)


def new_batch(profile: EmbeddingProfile, events: list[Event]) -> None:
    for vec, w, ts, tags in events:  # what the feature's learner does per event
        profile.add(vec, w, ts, tags)
    profile.flush()  # what the first read (to_bytes) does, once per user


def _columns(events: list[Event]) -> tuple[np.ndarray, list[float], list[int], list[Any]]:
    return (
        np.stack([e[0] for e in events]),
        [e[1] for e in events],
        [e[2] for e in events],
        [e[3] for e in events],
    )


def means_loop(profile: EmbeddingProfile, events: list[Event]) -> None:
    for vec, w, ts, _ in events:
        profile.long.learn_one(vec, w, ts)
        profile.short.learn_one(vec, w, ts)


def means_batch(profile: EmbeddingProfile, events: list[Event]) -> None:
    vectors, weights, times, _ = _columns(events)
    profile.long.learn_many(vectors, weights, times)
    profile.short.learn_many(vectors, weights, times)


def interests_loop(profile: EmbeddingProfile, events: list[Event]) -> None:
    for vec, w, ts, tags in events:
        profile.interests.learn_one(vec, w, ts, tags)


def interests_batch(profile: EmbeddingProfile, events: list[Event]) -> None:
    profile.interests.learn_many(*_columns(events))


MODES: list[tuple[str, Callable[[EmbeddingProfile, list[Event]], None]]] = [
    ("whole update, old: `EmbeddingProfile.learn_one` per event", old_loop),
    ("whole update, new: `add` per event + one `flush` (`learn_many`) per user", new_batch),
    ("long + short means, old: `DecayedMean.learn_one` per event", means_loop),
    (
        "long + short means, new: `DecayedMean.learn_many` per user (columns built inside)",
        means_batch,
    ),
    ("interests, old: `Interests.learn_one` per event", interests_loop),
    ("interests, new: `Interests.learn_many` per user (columns built inside)", interests_batch),
]


def run(
    profiles: dict[str, EmbeddingProfile],
    batch: dict[str, list[Event]],
    mode: Callable[[EmbeddingProfile, list[Event]], None],
) -> tuple[float, dict[str, EmbeddingProfile]]:
    mine = copy.deepcopy(profiles)  # untimed: each run starts from the same warm state
    # CPU time of this process: on a shared machine wall time mostly measures the others.
    started = time.process_time()
    for uid, events in batch.items():
        mode(mine[uid], events)
    return time.process_time() - started, mine


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b) / float(np.linalg.norm(a) * np.linalg.norm(b))


def parity(old: dict[str, EmbeddingProfile], new: dict[str, EmbeddingProfile]) -> tuple[float, int]:
    """Lowest cosine over every stored vector of both ways, and how many interest lists differ
    in shape (count of interests, events each)."""
    worst, shape = 1.0, 0
    for uid, a in old.items():
        b = new[uid]
        for va, vb in ((a.long_term(), b.long_term()), (a.short_term(), b.short_term())):
            if va is not None and vb is not None:
                worst = min(worst, _cos(va, vb))
        ia, ib = a.interest_list(), b.interest_list()
        if [i.events for i in ia] != [i.events for i in ib]:
            shape += 1
            continue
        for x, y in zip(ia, ib, strict=True):
            worst = min(worst, _cos(x.vector, y.vector))
    return worst, shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--history", type=int, default=30, help="events per warm profile")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="write the BENCHMARKS.md section")
    args = parser.parse_args()
    profiles, batch = build(args)
    n = sum(len(v) for v in batch.values())
    times: dict[str, list[float]] = {name: [] for name, _ in MODES}
    states: dict[str, dict[str, EmbeddingProfile]] = {}
    run(profiles, batch, new_batch)  # warm-up
    for r in range(args.repeats):
        order = MODES if r % 2 == 0 else MODES[::-1]  # interleaved: load drifts hit both
        for name, mode in order:
            seconds, state = run(profiles, batch, mode)
            times[name].append(seconds / n * 1e6)
            states[name] = state
    worst, shape = parity(states[MODES[0][0]], states[MODES[1][0]])
    rows = []
    for i, (name, _) in enumerate(MODES):
        med = median(times[name])
        ratio = "" if i % 2 == 0 else f"**{median(times[MODES[i - 1][0]]) / med:.1f} x**"
        spread = f"{min(times[name]):.2f} – {max(times[name]):.2f}"
        rows.append([name, f"{med:.2f}", spread, ratio])
    table = markdown_table(["path", "CPU µs / event (median)", "min – max", "speedup"], rows)
    sizes = sorted((len(v) for v in batch.values()), reverse=True)
    body = "\n".join(
        [
            "Issue 15 item 2: the embedding update per user per batch as array operations. "
            "`python benchmarks/embedding_update.py --write` applies one batch to copies of the "
            "same warm profiles both ways, interleaved, and times it per event "
            "(`profiles/embedding/profile.py`, `estimators.py`).",
            "",
            table,
            "",
            f"- Batch: {n:,} events over {len(batch)} users (skewed: the busiest has "
            f"{sizes[0]}, median {sizes[len(sizes) // 2]}), dim {args.dim}, default settings "
            "(long 30 days, short 30 minutes, 5 interests, join cosine 0.5), ~10 % late events; "
            f"each profile warm from {args.history} earlier events (its interests full)",
            f"- CPU time of the process (`time.process_time`: the machine is shared), median of "
            f"{args.repeats} repeats after a warm-up, modes interleaved; BLAS "
            f"threads {os.environ['OPENBLAS_NUM_THREADS']} (`OPENBLAS_NUM_THREADS`)",
            f"- Parity of the two whole-update states: lowest cosine over every long, short and "
            f"interest vector {worst:.9f}; users whose interest lists differ in shape: {shape}",
            *facts_lines(machine_facts()),
        ]
    )
    print(body)
    if args.write:
        write_section(HEADING, body)


if __name__ == "__main__":
    main()
