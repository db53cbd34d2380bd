"""Cost of review sentiment: per review text, and added per event in the update stage.

    python benchmarks/sentiment_cost.py           # print
    python benchmarks/sentiment_cost.py --write   # ... and replace its BENCHMARKS.md section

Reviews: the generator writes a review days after a purchase, so a short history holds
almost none; here every purchase is followed by a review of its first item one second later,
written from the generator's own review sentences (``REVIEW_EN`` / ``REVIEW_ZH``: a lead and a
follow-up sentence of one sentiment, positive, middling or negative; language and sentiment
drawn per purchase with a fixed seed).

1. The scorer alone (``SentimentScorer.score``) on those review texts, by language,
   and on long reviews (each text repeated to ~1,500 characters); median µs per review over
   ``--repeats`` passes.
2. The worker's update stage in process (``BatchUpdater`` over a ``MemoryStore``, real jieba
   tagger, batches of ``--batch`` records, no encoder: ``RTP_EMBEDDINGS=false``-like), once
   with the built-in churn feature only and once with sentiment added, interleaved; the
   difference is the sentiment work: scoring every review text of a batch, folding it into
   the user's state, the per-product contributions, the alert checks and the ``sn`` field's
   encoding. No Kafka, no Redis. Run on the whole stream (reviews are ~1 % of its events: the
   difference is within the noise) and on its purchases and reviews alone (half reviews),
   which gives the cost per review.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DataSpec, generate_events, machine_facts, write_section
from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.sentiment.feature import SentimentFeature
from profiles.sentiment.scorer import SentimentScorer, han_share
from profiles.tags.extractor import TagExtractor

SECTION = "## Review sentiment cost (issue 19)"
STARS = {"pos": 5, "mid": 3, "neg": 1}


def with_reviews(events: list[dict[str, Any]], seed: int = 19) -> list[dict[str, Any]]:
    """``events`` with a review after every purchase (see the module's docstring)."""
    from stream.simulation.catalog_words import REVIEW_EN, REVIEW_ZH

    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for e in events:
        out.append(e)
        if e["type"] != "purchase":
            continue
        pool, noun = (REVIEW_ZH, "商品") if rng.random() < 0.5 else (REVIEW_EN, "item")
        kind = rng.choice(("pos", "mid", "neg"))
        text = rng.choice(pool[f"{kind}_lead"]).format(noun=noun) + " " + rng.choice(pool[kind])
        out.append(
            {
                "event_id": f"{e['event_id']}-review",
                "type": "review",
                "schema_version": 1,
                "user_id": e["user_id"],
                "ts": int(e["ts"]) + 1000,
                "product_id": e["items"][0]["product_id"],
                "rating": STARS[kind],
                "text": text,
            }
        )
    return out


def per_review(scorer: SentimentScorer, texts: list[str], repeats: int) -> float:
    passes = []
    for _ in range(repeats):
        started = time.perf_counter()
        for text in texts:
            scorer.score(text)
        passes.append((time.perf_counter() - started) / len(texts) * 1e6)
    return statistics.median(passes)


async def stage(
    records: list[Record], tagger: TagExtractor, sentiment: SentimentFeature | None, batch: int
) -> float:
    features = builtin_features(partitions=4, sentiment=sentiment)
    updater = BatchUpdater(MemoryStore(), ProfileConfig(), tagger, features, cache_users=100_000)
    started = time.perf_counter()
    for i in range(0, len(records), batch):
        await updater.process(records[i : i + batch])
    return time.perf_counter() - started


async def main_async(args: argparse.Namespace) -> str:
    spec = DataSpec(n=args.events, users=args.users, products=args.products)
    events = with_reviews(generate_events(spec))
    reviews = [e for e in events if e["type"] == "review"]
    scorer = SentimentScorer()
    zh = [e["text"] for e in reviews if han_share(e["text"]) >= 1.0]
    en = [e["text"] for e in reviews if han_share(e["text"]) <= 0.0]
    rows: list[tuple[str, int, float]] = []
    for name, texts in (("English (VADER)", en), ("Chinese (linear head)", zh)):
        mean_len = sum(map(len, texts)) / max(1, len(texts))
        rows.append((f"{name}, ~{mean_len:.0f} chars", len(texts), per_review(scorer, texts, 5)))
        long = [(t + " ") * max(1, 1500 // (len(t) + 1)) for t in texts[:300]]
        rows.append((f"{name}, ~1,500 chars", len(long), per_review(scorer, long, 3)))

    tagger = TagExtractor()
    tagger.warm_up()
    feature = SentimentFeature(scorer, 4)
    table: list[str] = []
    per_review_us = 0.0
    streams = (
        ("all events", events),
        ("purchases and reviews only", [e for e in events if e["type"] in ("purchase", "review")]),
    )
    for name, stream in streams:
        records = [Record(InputPartition("bench", 0), i, e) for i, e in enumerate(stream)]
        await stage(records, tagger, feature, args.batch)  # warm-up (jieba, VADER), not timed
        off, on = [], []
        for _ in range(args.repeats):
            off.append(await stage(records, tagger, None, args.batch))
            on.append(await stage(records, tagger, feature, args.batch))
        n = len(records)
        t_off, t_on = statistics.median(off), statistics.median(on)
        added = (t_on - t_off) / n * 1e6
        table.append(
            f"| {name} | {n:,} | {t_off / n * 1e6:.1f} | {t_on / n * 1e6:.1f} | {added:+.1f} |"
        )
        per_review_us = (t_on - t_off) / len(reviews) * 1e6
    share = len(reviews) / len(events)
    facts = machine_facts()
    lines = [
        "`python benchmarks/sentiment_cost.py --write`. Scoring runs once per batch for every",
        "review text (in a worker thread beyond 2,500 characters); the rest is per applied",
        "review.",
        "",
        "| review texts | reviews | µs / review (median) |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {count:,} | {us:.0f} |" for name, count, us in rows),
        "",
        "| update stage (in process, no encoder) | events | churn only µs/event "
        "| + sentiment µs/event | added µs/event |",
        "| --- | ---: | ---: | ---: | ---: |",
        *table,
        "",
        "- On all events the difference is within the run-to-run noise (reviews are rare).",
        f"- Added cost: **{per_review_us:.0f} µs per review** (from the purchases-and-reviews "
        f"run), so **{per_review_us * share:.1f} µs per event** at this stream's review share "
        f"({len(reviews):,} reviews in {len(events):,} events, {share:.1%}: one per purchase).",
        f"- {len(events):,} generated events ({args.users:,} users, {args.products:,} "
        f"products), batches of {args.batch}, median of {args.repeats} interleaved runs after "
        "a warm-up.",
        f"- Machine: {facts['nproc']} CPUs, {facts['cpu']}, shared with other sessions; "
        f"code: {facts['code']}; {facts['date']}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="replace the BENCHMARKS.md section")
    args = parser.parse_args()
    body: Any = asyncio.run(main_async(args))
    print(body)
    if args.write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
