"""Evaluate recommendations on generated traffic: hold out each user's last purchase.

``python -m stream.evaluation.recs --users 1500 --products 3000 --days 60 --seed 7 [--write]``

1. Generate the catalog and ``--days`` of traffic
   (:class:`stream.simulation.generator.TrafficGenerator`).
2. Encode every distinct text once with the real encoder (all-MiniLM-L6-v2 by default), in a
   separate process, and cache the vectors under ``/tmp`` (``--cache``): a rerun encodes
   nothing.
3. Replay the events in time order, as the worker would: ``product`` events upsert/remove
   items in an :class:`~profiles.recommend.index.ItemIndex` (vector = encoder on
   :func:`~profiles.embedding.text.item_text`, tags = ``TagExtractor`` on title + category);
   every interaction feeds the index's rolling popularity; each user's events build their
   profile with the worker's pure code (:func:`profiles.core.profile.apply` with
   :func:`~profiles.tags.event_tags.event_tags`, an :class:`EmbeddingProfile` fed by
   :func:`~profiles.embedding.text.event_texts` / :func:`~profiles.embedding.text.combine`).
4. Each user's last purchase is held out. When the replay reaches it, the user's profile
   (everything strictly before) is asked for 10 recommendations by each method, and the
   user's later events are dropped. Two cut points are scored: at the purchase itself (the
   brief's protocol; the purchase session's clicks and carts are in the profile) and at the
   start of that session (stricter: predict the purchase from earlier sessions only).
   Popularity is the index's as of the cut, so nothing from the future leaks in.
5. Report hit-rate@10 (the list holds at least one purchased item) and recall@10 (share of
   the order's items in the list) for the blend, vector-only, tags-only and popularity.

``--write`` replaces the ``## Recommendations (issue 6)`` section of ``EVALUATION.md``.
Users are replayed in ``--workers`` processes (each replays the whole stream for popularity
and builds only its share of the profiles).
"""

from __future__ import annotations

import os

# One BLAS thread per worker process: the products here are small, and the workers already
# use every core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import datetime as dt
import multiprocessing as mp
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from profiles.core.config import DEFAULT_KIND_WEIGHTS, ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record, apply
from profiles.embedding.channel import CHANNEL_WEIGHT, channel_model_id, mix
from profiles.embedding.feature import vector_learner
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile
from profiles.embedding.text import combine, event_texts, item_text
from profiles.recommend.blend import BlendConfig, recommend
from profiles.recommend.index import Item, ItemIndex
from profiles.segments.kmeans import MiniBatchKMeans
from profiles.tags.event_tags import event_tags
from profiles.tags.extractor import TagExtractor
from profiles.together.offline import OfflinePairs
from schemas.kinds import product_lines
from stream.evaluation.markdown import write_section
from stream.simulation.generator import TrafficConfig, TrafficGenerator

SECTION = "## Recommendations (issue 6)"
K = 10
#: Tags of the user profile handed to the blend (it keeps its ``user_tags`` strongest).
PROFILE_TAGS = 50
CUTS = ("purchase", "session")
#: name -> blend settings (None: global popularity). Ablations only change weights/diversity.
METHODS: dict[str, BlendConfig | None] = {
    "blend": BlendConfig(k=K),
    "blend, no diversity": BlendConfig(k=K, diversity=0.0),
    "vector only": BlendConfig(k=K, w_vector=1.0, w_tags=0.0, w_popularity=0.0),
    "tags only": BlendConfig(k=K, w_vector=0.0, w_tags=1.0, w_popularity=0.0),
    "popularity": None,
}


@dataclass(frozen=True)
class Holdout:
    """A user's held-out order: where the replay stops for them, and what they bought."""

    purchase_at: int  # index of the held-out purchase event
    session_at: int  # index of the first event of its session
    targets: frozenset[str]


@dataclass(frozen=True)
class Outcome:
    """One user, one cut, one method."""

    user: str
    cut: str
    method: str
    hit: bool
    recall: float
    recommended: tuple[str, ...]


def holdouts(events: Sequence[Mapping[str, Any]]) -> dict[str, Holdout]:
    """Each buyer's last purchase (by event order) and the start of its session.

    >>> evs = [{"type": "click", "user_id": "u", "session_id": "s1"},
    ...        {"type": "purchase", "user_id": "u", "session_id": "s1",
    ...         "items": [{"product_id": "p1"}]},
    ...        {"type": "click", "user_id": "u", "session_id": "s2"},
    ...        {"type": "purchase", "user_id": "u", "session_id": "s2",
    ...         "items": [{"product_id": "p2"}, {"product_id": "p3"}]}]
    >>> h = holdouts(evs)["u"]
    >>> h.purchase_at, h.session_at, sorted(h.targets)
    (3, 2, ['p2', 'p3'])
    """
    first_of_session: dict[tuple[str, str], int] = {}
    last: dict[str, int] = {}
    for i, ev in enumerate(events):
        user = ev.get("user_id", "")
        session = ev.get("session_id")
        if session is not None:
            first_of_session.setdefault((user, session), i)
        if ev["type"] == "purchase":
            last[user] = i
    out = {}
    for user, i in last.items():
        ev = events[i]
        out[user] = Holdout(
            purchase_at=i,
            session_at=first_of_session.get((user, ev.get("session_id", "")), i),
            targets=frozenset(line["product_id"] for line in ev["items"]),
        )
    return out


def hit_and_recall(recommended: Sequence[str], targets: Iterable[str]) -> tuple[bool, float]:
    """Whether any target was recommended, and the share of targets that were.

    >>> hit_and_recall(["a", "b", "c"], {"c", "d"})
    (True, 0.5)
    >>> hit_and_recall([], {"a"})
    (False, 0.0)
    """
    wanted = set(targets)
    found = len(wanted.intersection(recommended))
    return found > 0, found / len(wanted) if wanted else 0.0


# ----------------------------------------------------------------------------- vectors


def _encode(texts: list[str]) -> tuple[str, int, np.ndarray, np.ndarray]:
    """Runs in a spawned process, so torch never loads in the parent (whose workers fork)."""
    from profiles.encoder.encoder import Encoder, EncoderConfig

    encoder = Encoder(EncoderConfig())
    if not texts:
        return encoder.model_id, encoder.dim, np.zeros((0, encoder.dim), np.float32), np.zeros(0)
    vecs, unk = encoder.encode_with_unk(texts)
    return encoder.model_id, encoder.dim, vecs, unk


def text_vectors(
    texts: Iterable[str], cache: Path
) -> tuple[str, dict[str, tuple[np.ndarray, float]], int]:
    """Transformer vectors of ``texts`` and their unknown-token rates (model id, text ->
    (vector, rate), how many were encoded now); only texts missing from ``cache`` are
    encoded, and the cache is rewritten with them. The text channel is applied by the
    caller: it is cheap, so runs with and without it share one cache."""
    wanted = sorted(set(texts))
    known: dict[str, tuple[np.ndarray, float]] = {}
    model_id = ""
    if cache.exists():
        with np.load(cache) as data:
            # Caches written before the unknown-token rates were kept are encoded again.
            if "unk" in data.files:
                model_id = str(data["model"])
                known = {
                    t: (v, float(u))
                    for t, v, u in zip(
                        data["texts"].tolist(), data["vectors"], data["unk"], strict=True
                    )
                }
    missing = [t for t in wanted if t not in known]
    if missing:
        started = time.perf_counter()
        print(f"encoding {len(missing):,} texts (cache: {cache})...", file=sys.stderr)
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            model, _, vecs, unk = pool.submit(_encode, missing).result()
        if model != model_id:
            known = {}
        model_id = model
        known.update((t, (v, float(u))) for t, v, u in zip(missing, vecs, unk, strict=True))
        cache.parent.mkdir(parents=True, exist_ok=True)
        names = sorted(known)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            model=np.array(model_id),
            texts=np.array(names),
            vectors=np.stack([known[t][0] for t in names]).astype(np.float32),
            unk=np.array([known[t][1] for t in names], dtype=np.float64),
        )
        tmp.replace(cache)
        print(f"encoded in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return model_id, {t: known[t] for t in wanted}, len(missing)


def with_channel(
    model_id: str, encoded: Mapping[str, tuple[np.ndarray, float]], weight: float | None
) -> tuple[str, dict[str, np.ndarray], float]:
    """The vectors the worker would use: :func:`~profiles.embedding.channel.mix` applied as
    :class:`~profiles.embedding.channel.ChannelEncoder` does (``weight`` None: no channel).
    Returns the model id, the vectors and the mixing cost in µs per mixed text (those with
    unknown tokens; the others are returned as they are)."""
    texts = list(encoded)
    if not texts:
        return model_id, {}, 0.0
    vectors = np.stack([encoded[t][0] for t in texts])
    if weight is None:
        return model_id, dict(zip(texts, vectors, strict=True)), 0.0
    unk = np.array([encoded[t][1] for t in texts])
    started = time.perf_counter()
    mixed = mix(texts, vectors, unk, weight)
    cost_us = (time.perf_counter() - started) / max(1, int((unk > 0).sum())) * 1e6
    return channel_model_id(model_id, weight), dict(zip(texts, mixed, strict=True)), cost_us


# ----------------------------------------------------------------------------- replay

# Shared with the forked workers (copy-on-write), never pickled.
_STATE: dict[str, Any] = {}


def _item(ev: Mapping[str, Any], vectors: Mapping[str, np.ndarray], tagger: TagExtractor) -> Item:
    title, category = ev["title"], list(ev["category"])
    tags = {t for t, _ in tagger.text(title)} | {t for t, _ in tagger.category(category)}
    return Item(
        product_id=ev["product_id"],
        vector=vectors[item_text(title, category)],
        tags=frozenset(tags),
        category=tuple(category),
        price=float(ev["price"]),
        discontinued=bool(ev.get("discontinued", False)),
    )


def _interactions(ev: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(product, weight) pairs an event adds to popularity: the profile's kind weights."""
    kind = ev["type"]
    w = DEFAULT_KIND_WEIGHTS.get(kind, 0.0)
    if kind == "review":
        w = w * ev["rating"] / 5.0
    return [(line["product_id"], w) for line in product_lines(ev)]


def _replay(shard: int) -> tuple[list[Outcome], dict[str, np.ndarray]]:
    """Replay the whole stream; build and score the profiles of this shard's users.

    Also returns each scored user's long-term vector at the session cut (for segment purity).
    """
    events: list[dict[str, Any]] = _STATE["events"]
    catalog: list[dict[str, Any]] = _STATE["catalog"]
    vectors: dict[str, np.ndarray] = _STATE["vectors"]
    held: dict[str, Holdout] = _STATE["holdouts"]
    shards: int = _STATE["shards"]
    emb_cfg: EmbeddingConfig = _STATE["embedding"]
    config = ProfileConfig()
    tagger = TagExtractor()
    index = ItemIndex(emb_cfg.dim, capacity=len(catalog))
    items: dict[str, dict[str, Any]] = {}
    for ev in catalog:
        items[ev["product_id"]] = ev
        index.upsert(_item(ev, vectors, tagger))
    profiles: dict[str, Profile] = {}
    done: set[str] = set()
    out: list[Outcome] = []
    at_cut: dict[str, np.ndarray] = {}

    def tag(ev: dict[str, Any]) -> list[tuple[str, float]]:
        return event_tags(ev, tagger, items)

    def embed(ev: dict[str, Any]) -> np.ndarray | None:
        return combine(event_texts(ev, items), vectors)

    learn = [vector_learner(embed)]
    # Pair counts of everyone's events so far (``stream.evaluation.together``), or None.
    together: dict[str, Any] | None = _STATE.get("together")
    pairs = None if together is None else OfflinePairs(together["session"], together["half_life"])
    for i, ev in enumerate(events):
        if ev["type"] == "product":
            items[ev["product_id"]] = ev
            index.upsert(_item(ev, vectors, tagger))
            continue
        user = ev["user_id"]
        if user not in done and int(user[1:]) % shards == shard:
            h = held.get(user)
            profile = profiles.get(user)
            if profile is None:
                profile = profiles[user] = Profile(user)
                profile.embedding = EmbeddingProfile(emb_cfg)
            paired = None
            if pairs is not None and together is not None:
                paired = (pairs, int(ev["ts"]), together)
            if h is not None and i == h.session_at:
                out.extend(_score(index, profile, h, "session", config, paired))
                long_term = profile.embedding.long_term() if profile.embedding else None
                if long_term is not None:
                    at_cut[user] = np.asarray(long_term, dtype=np.float32)
            if h is not None and i == h.purchase_at:
                out.extend(_score(index, profile, h, "purchase", config, paired))
                done.add(user)
                del profiles[user]
            else:
                apply(
                    profile, [Record(InputPartition("site-events", 0), i, ev)], config, tag, learn
                )
        if pairs is not None:  # after the cut: a list scored at i sees only what came before
            pairs.add(ev, i)
        for pid, w in _interactions(ev):
            index.record(pid, w, int(ev["ts"]))
    return out, at_cut


def _score(
    index: ItemIndex,
    profile: Profile,
    h: Holdout,
    cut: str,
    config: ProfileConfig,
    paired: tuple[OfflinePairs, int, dict[str, Any]] | None = None,
) -> list[Outcome]:
    emb = profile.embedding
    long_term = emb.long_term() if emb is not None else None
    interests = (
        [(i.vector, i.weight, [t for t, _ in i.tags]) for i in emb.interest_list()]
        if emb is not None
        else []
    )
    user_tags = profile.top_tags(PROFILE_TAGS, config.half_life_ms)
    purchased = set(profile.purchased)
    n_events = sum(profile.counts.values())
    complements: list[tuple[str, float]] = []
    if paired is not None:
        pairs, as_of, together = paired
        complements = pairs.complements(profile.purchased, as_of, together["min_count"], K)
    out = []
    methods: dict[str, BlendConfig | None] = _STATE.get("methods", METHODS)
    for name, cfg in methods.items():
        if cfg is None:
            ids = [pid for pid, _ in index.popular(K, exclude=purchased)]
        else:
            recs = recommend(
                index,
                long_term,
                interests,
                user_tags,
                purchased,
                cfg,
                events=n_events,
                complements=complements,
            )
            ids = [r.product_id for r in recs]
        hit, rec = hit_and_recall(ids, h.targets)
        out.append(Outcome(profile.user_id, cut, name, hit, rec, tuple(ids)))
    return out


# ----------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Run:
    args: argparse.Namespace
    outcomes: list[Outcome]
    languages: dict[str, str]
    purity: dict[str, tuple[float, float, int]]
    channel_us: float
    mixed_texts: int
    n_events: int
    n_texts: int
    model_id: str
    catalog_size: int
    live_items: int
    cold_users: dict[str, int]
    seconds: float


def _table(
    outcomes: Sequence[Outcome], cut: str, catalog_size: int
) -> tuple[str, dict[str, float]]:
    by_method: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        if o.cut == cut:
            by_method[o.method].append(o)
    lines = [
        "| method | hit-rate@10 | recall@10 | catalog coverage | users |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    hit_rates = {}
    for name in METHODS:
        rows = by_method.get(name, [])
        if not rows:
            continue
        hit_rates[name] = float(np.mean([o.hit for o in rows]))
        recall = float(np.mean([o.recall for o in rows]))
        coverage = len({pid for o in rows for pid in o.recommended}) / catalog_size
        label = f"**{name}**" if name == "blend" else name
        lines.append(
            f"| {label} | {hit_rates[name]:.3f} | {recall:.3f} | {coverage:.3f} | {len(rows)} |"
        )
    return "\n".join(lines), hit_rates


def _by_language(run: Run, cut: str) -> str:
    lines = ["| users | " + " | ".join(METHODS) + " |", "| --- |" + " ---: |" * len(METHODS)]
    for lang in ("zh", "en"):
        cells = []
        for name in METHODS:
            rows = [
                o
                for o in run.outcomes
                if o.cut == cut and o.method == name and run.languages[o.user] == lang
            ]
            cells.append(f"{np.mean([o.hit for o in rows]):.3f}" if rows else "—")
        n = len({o.user for o in run.outcomes if run.languages[o.user] == lang})
        lines.append(f"| {lang} ({n}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _purity(run: Run) -> str:
    lines = ["| users | purity | baseline | users with a vector |", "| --- | ---: | ---: | ---: |"]
    for lang in ("zh", "en"):
        purity, baseline, n = run.purity[lang]
        lines.append(f"| {lang} | {purity:.3f} | {baseline:.3f} | {n} |")
    return "\n".join(lines)


def _channel_note(run: Run) -> str:
    a = run.args
    if not a.text_channel:
        return "no text channel (`--no-text-channel`)."
    return (
        f"hashed text channel (`profiles.embedding.channel`, weight {a.channel_weight:g} × "
        f"unknown-token rate) mixed into the {run.mixed_texts:,} texts with unknown tokens, "
        f"{run.channel_us:.0f} µs per mixed text (wall time of one call for all of them on "
        "a shared machine; the CPU cost in the worker's batches is in "
        "`benchmarks/text_channel.py`)."
    )


def report(run: Run) -> str:
    a = run.args
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    users = len({o.user for o in run.outcomes})
    tables = {cut: _table(run.outcomes, cut, run.catalog_size) for cut in CUTS}
    ratios = {
        cut: hits["blend"] / hits["popularity"] if hits.get("popularity") else float("inf")
        for cut, (_, hits) in tables.items()
    }
    cfg = BlendConfig()
    verdict = " and ".join(f"{ratios[cut]:.1f}× ({cut} cut)" for cut in CUTS)
    target_met = all(r >= 2.0 for r in ratios.values())
    parts = [
        SECTION,
        "",
        f"`python -m stream.evaluation.recs --users {a.users} --products {a.products} "
        f"--days {a.days:g} --seed {a.seed}` (run {date}: {run.seconds:.0f} s on "
        f"{os.cpu_count()} CPUs with {a.workers} worker processes, text vectors from the "
        "cache; encoding them the first time adds about a minute).",
        "",
        f"**Conditions.** Generated traffic (`stream.simulation.generator`, seed {a.seed}): "
        f"{a.users} users, "
        f"{a.products} products ({run.live_items} listed at the end; discontinued ones leave "
        f"the index when the catalog says so), {a.days:g} days, {run.n_events:,} events. "
        f"Vectors: `{run.model_id}` on every distinct text ({run.n_texts:,}: item texts "
        "`title | category path`, queries, reviews), encoded once and cached; "
        + _channel_note(run)
        + " Item tags: "
        "`TagExtractor` on title + category path. Profiles: `profiles.core.profile.apply` with "
        "`event_tags` and an `EmbeddingProfile` (long-term vector + up to 5 interests), "
        "replayed in event order. Each buyer's **last purchase is held out** "
        f"({users} users): the replay stops for that user at the cut and asks for "
        f"{K} items; popularity is the index's rolling popularity (decayed counts, 7-day "
        "half-life, click 1 / cart 3 / purchase 5) as of the cut. Items the user already "
        "bought are never recommended, so a repeat purchase counts as a miss for every "
        "method. Users below "
        f"{cfg.min_events_for_personal} events get popularity from every method "
        f"(purchase cut: {run.cold_users['purchase']}, session cut: "
        f"{run.cold_users['session']}).",
        "",
        f"Blend settings (`BlendConfig()` defaults): k = {cfg.k}, {cfg.per_interest} "
        f"candidates per interest vector and from tags, weights vector {cfg.w_vector} / tags "
        f"{cfg.w_tags} / popularity {cfg.w_popularity}, diversity {cfg.diversity}, "
        f"top {cfg.user_tags} user tags. Vector-only and tags-only are the same function with "
        "the other weights at 0 (a signal with weight 0 brings no candidates either); "
        "popularity is the global top 10 minus purchased items.",
        "",
        "**Cut at the held-out purchase** (the protocol of the issue: every event before the "
        "purchase is in the profile, including the clicks and carts of the purchase session):",
        "",
        tables["purchase"][0],
        "",
        "**Cut at the start of the purchase session** (stricter: the session that led to the "
        "purchase is hidden too, so this measures predicting the next order from earlier "
        "sessions):",
        "",
        tables["session"][0],
        "",
        "Hit-rate@10 by user language (session cut):",
        "",
        _by_language(run, "session"),
        "",
        "Segment purity by planted top interest (each user's long-term vector at the session "
        "cut, k-means with k = the number of planted interests, purity = share of users whose "
        "segment's most common planted interest is theirs; baseline = the most common "
        "interest's share):",
        "",
        _purity(run),
        "",
        f"**Target** blend ≥ 2 × popularity hit-rate: blend / popularity = {verdict}: "
        + ("met." if target_met else "**not met**."),
        "",
        "**Reading the figures.** The two signals fail in different places, which is why the "
        "blend beats both: the default encoder maps most Chinese characters to `[UNK]`, so "
        "without the text channel the vectors of Chinese-speaking users carry little beyond "
        "brands and numbers and the tags (jieba keywords, category levels) find the items "
        "(`--no-text-channel`: vector-only 0.078 for zh users against 0.157 for en, session "
        "cut); with the channel their vectors carry the Chinese words; for English-speaking "
        "users vectors and tags are about equally good and find partly different items. "
        "Popularity as a *feature* matters on this generator (shoppers pick Zipf-popular "
        "items inside their categories) although popularity alone is weak: it re-ranks "
        "candidates that are already in the user's categories. Diversity (interest quotas + "
        "MMR) adds a few points because a user's next order is often in an interest other "
        "than their strongest. The purchase cut is easier because the clicks and carts of the "
        "purchase session point at the bought item.",
        "",
        "**How the defaults were chosen.** The weights and diversity are the issue's. Two "
        "choices were measured on this evaluation (seed 7, session cut, blend hit-rate): "
        "popularity on a log scale over 3 decades below the top item instead of a linear "
        "ratio (0.216 vs 0.185: with a linear ratio almost every candidate scores ~0) and 40 "
        "user tags in the Jaccard set instead of 20 (0.227 vs 0.216; 50: no better). "
        "`per_interest = 100` adds about a point at twice the candidate work; a popularity "
        "weight of 0.2 adds about two (not adopted: the weights are the issue's). A check on "
        "another population (seed 11, 800 users, 40 days) gave blend / popularity 5.0× "
        "(purchase cut) and 2.9× (session cut), so the choices are not fitted to seed 7. The "
        "generator's users have planted category interests, so these figures measure "
        "whether the profile finds them, not how real shoppers respond.",
        "",
    ]
    return "\n".join(parts)


def evaluate(args: argparse.Namespace) -> Run:
    started = time.perf_counter()
    complement_p = getattr(args, "complements", 0.0)  # stream.evaluation.together plants them
    gen = TrafficGenerator(
        TrafficConfig(
            seed=args.seed, users=args.users, products=args.products, complement_p=complement_p
        )
    )
    catalog = gen.catalog()
    events = list(gen.history(days=args.days))
    items = {ev["product_id"]: ev for ev in catalog}
    texts = {item_text(ev["title"], ev["category"]) for ev in catalog}
    for ev in events:
        if ev["type"] == "product":
            items[ev["product_id"]] = ev
            texts.add(item_text(ev["title"], ev["category"]))
        texts.update(t for t, _ in event_texts(ev, items))
    print(f"{len(events):,} events, {len(texts):,} distinct texts", file=sys.stderr)
    encode_started = time.perf_counter()
    base_id, raw, encoded = text_vectors(texts, args.cache)
    encode_s = time.perf_counter() - encode_started if encoded else 0.0
    weight = args.channel_weight if args.text_channel else None
    model_id, vectors, channel_us = with_channel(base_id, raw, weight)
    zh_texts = [t for t, (_, u) in raw.items() if u > 0]
    dim = int(next(iter(vectors.values())).shape[0])
    held = holdouts(events)
    TagExtractor().warm_up()  # load jieba once, before the workers fork
    _STATE.update(
        events=events,
        catalog=catalog,
        vectors=vectors,
        holdouts=held,
        shards=args.workers,
        embedding=EmbeddingConfig(model_id, dim),
        **getattr(args, "extra_state", {}),
    )
    replay_started = time.perf_counter()
    if args.workers == 1:
        parts = [_replay(0)]
    else:
        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("fork")) as pool:
            parts = list(pool.map(_replay, range(args.workers)))
    outcomes = [o for part, _ in parts for o in part]
    at_cut = {u: v for _, part in parts for u, v in part.items()}
    _STATE.clear()
    print(f"replayed in {time.perf_counter() - replay_started:.0f} s", file=sys.stderr)
    outcomes.sort(key=lambda o: (o.user, o.cut, o.method))
    live = {ev["product_id"]: bool(ev.get("discontinued")) for ev in catalog}
    live.update(
        {ev["product_id"]: bool(ev.get("discontinued")) for ev in events if ev["type"] == "product"}
    )
    truths = {u: gen.user_truth(u) for u in {o.user for o in outcomes}}
    languages = {u: str(t["language"]) for u, t in truths.items()}
    planted = {
        u: str(max(t["interests"], key=lambda i: i["weight"])["key"]) for u, t in truths.items()
    }
    return Run(
        args=args,
        outcomes=outcomes,
        languages=languages,
        purity={
            lang: segment_purity(
                {u: v for u, v in at_cut.items() if languages[u] == lang}, planted, args.seed
            )
            for lang in ("zh", "en")
        },
        channel_us=channel_us,
        mixed_texts=len(zh_texts),
        n_events=len(events),
        n_texts=len(texts),
        model_id=model_id,
        catalog_size=len(catalog),
        live_items=sum(not d for d in live.values()),
        cold_users={cut: _cold(outcomes, cut) for cut in CUTS},
        seconds=time.perf_counter() - started - encode_s,
    )


def segment_purity(
    vectors: Mapping[str, np.ndarray], planted: Mapping[str, str], seed: int
) -> tuple[float, float, int]:
    """Purity of k-means segments of users' long-term vectors by planted top interest.

    k = number of planted interests among the users; the segmenter's own k-means
    (:class:`~profiles.segments.kmeans.MiniBatchKMeans` seeding: k-means++ and Lloyd steps,
    best of 10 starts) on the embedding block alone. Returns (purity, the majority-class
    baseline, users): purity is the share of users whose segment's most common planted
    interest is theirs.
    """
    users = sorted(vectors)
    if not users:
        return 0.0, 0.0, 0
    labels = [planted[u] for u in users]
    classes = sorted(set(labels))
    k = min(len(classes), len(users))
    X = np.stack([vectors[u] for u in users]).astype(np.float64)
    km = MiniBatchKMeans(k, X.shape[1], reservoir=len(users), seed=seed, seed_factor=1)
    model = km.seed(km.empty(), X)
    assigned, _ = km.predict(model, X)
    pure = 0
    for c in range(k):
        members = [lab for lab, a in zip(labels, assigned, strict=True) if a == c]
        if members:
            pure += max(members.count(x) for x in set(members))
    baseline = max(labels.count(x) for x in classes) / len(users)
    return pure / len(users), baseline, len(users)


def _cold(outcomes: Sequence[Outcome], cut: str) -> int:
    """Users whose blend equals the popularity list (cold start), counted per cut."""
    lists: dict[tuple[str, str], tuple[str, ...]] = {
        (o.user, o.method): o.recommended for o in outcomes if o.cut == cut
    }
    users = {u for u, _ in lists}
    return sum(lists.get((u, "blend")) == lists.get((u, "popularity")) for u in users)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stream.evaluation.recs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--days", type=float, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/rtp-evaluate-recs/vectors.npz"),
        help="text vector cache (reused across runs; only missing texts are encoded)",
    )
    parser.add_argument(
        "--text-channel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mix the hashed text channel into the vectors, as the worker does by default "
        "(RTP_TEXT_CHANNEL)",
    )
    parser.add_argument(
        "--channel-weight",
        type=float,
        default=CHANNEL_WEIGHT,
        help="channel share per unit of unknown-token rate (ablation; the worker uses the default)",
    )
    parser.add_argument("--write", action="store_true", help="update EVALUATION.md")
    parser.add_argument("--evaluation-file", type=Path, default=Path("EVALUATION.md"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        print("--workers must be >= 1", file=sys.stderr)
        return 2
    text = report(evaluate(args))
    print(text)
    if args.write:
        path: Path = args.evaluation_file
        write_section(path, SECTION, text, title="Evaluation")
        print(f"wrote {SECTION!r} to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
