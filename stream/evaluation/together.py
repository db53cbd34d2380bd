"""Evaluate frequently-bought-together on generated traffic with planted complements.

``python -m stream.evaluation.together --users 300 --products 800 --days 20 [--write]``

1. Generate traffic with ``TrafficConfig.complement_p`` (``--complements``, 0.3): a bought
   "device" brings its planted accessory, viewed and bought in a second order of the session.
2. Run the recommendation evaluation (:mod:`stream.evaluation.recs`: each user's last order
   held out) with the blend as the worker runs it and the blend with the complements of the
   user's last purchases (``--weight``, ``RTP_TOGETHER_W_RECS``); the pair counts are the
   worker's pure code (:class:`~profiles.together.offline.OfflinePairs`) over everyone's events
   before the cut, decayed with the worker's default half-life.
3. Mine the rules of the whole log (support floor ``RTP_TOGETHER_MIN_COUNT``) and compare them
   with the planted pairs: of the planted pairs seen together at least that often, how many
   are their device's best rule, and of the rules with lift at least 10, how many were
   planted.

``--write`` replaces the ``## Frequently bought together (issue 20)`` section of
``EVALUATION.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from profiles.embedding.channel import CHANNEL_WEIGHT
from profiles.recommend.blend import BlendConfig
from profiles.together.offline import OfflinePairs
from profiles.together.rules import Rule
from profiles.together.session import SessionConfig
from stream.evaluation import recs
from stream.evaluation.markdown import write_section
from stream.settings import Settings
from stream.simulation.generator import DAY_MS, TrafficConfig, TrafficGenerator

SECTION = "## Frequently bought together (issue 20)"
STRONG_LIFT = 10.0


def planted_found(
    rules: Sequence[Rule], planted: Mapping[str, str], pairs_seen: Mapping[tuple[str, str], float]
) -> tuple[int, int, int, int]:
    """(planted pairs seen enough, of them the device's best rule, strong rules, of them
    planted in either direction).

    >>> r = [Rule("a", "x", 3, 0.1, 0.5, 20.0), Rule("b", "y", 3, 0.1, 0.5, 12.0),
    ...      Rule("b", "z", 3, 0.1, 0.5, 15.0)]
    >>> planted_found(r, {"a": "x", "b": "y"}, {("a", "x"): 3, ("b", "y"): 3})
    (2, 1, 3, 2)
    """
    best: dict[str, Rule] = {}
    for rule in rules:
        if rule.item not in best or rule.lift > best[rule.item].lift:
            best[rule.item] = rule
    seen = [(d, a) for d, a in planted.items() if (d, a) in pairs_seen]
    top = sum(1 for d, a in seen if d in best and best[d].other == a)
    strong = [r for r in rules if r.lift >= STRONG_LIFT]
    hits = sum(
        1 for r in strong if planted.get(r.item) == r.other or planted.get(r.other) == r.item
    )
    return len(seen), top, len(strong), hits


def evaluate(args: argparse.Namespace) -> str:
    settings = Settings.from_env({}).together
    half_life = int(settings.half_life_days * DAY_MS)
    session = SessionConfig(settings.max_items, int(settings.session_gap_s * 1000))
    args.complements = args.complements_p
    args.text_channel, args.channel_weight = True, CHANNEL_WEIGHT
    methods: dict[str, BlendConfig | None] = {"blend": BlendConfig(k=recs.K)}
    for w in args.weights:
        methods[f"blend + together {w:g}"] = BlendConfig(k=recs.K, w_together=w)
    args.extra_state = {
        "methods": methods,
        "together": {"session": session, "half_life": half_life, "min_count": settings.min_count},
    }
    args.min_count = settings.min_count
    run = recs.evaluate(args)

    gen = TrafficGenerator(
        TrafficConfig(
            seed=args.seed,
            users=args.users,
            products=args.products,
            complement_p=args.complements_p,
        )
    )
    events = list(gen.history(days=args.days))
    pairs = OfflinePairs(session, half_life, settings.neighbours)
    for i, ev in enumerate(events):
        pairs.add(ev, i)
    as_of = max(int(ev["ts"]) for ev in events)
    mined = pairs.rules("b", as_of, settings.min_count, 10)
    planted = gen.planted_complements()
    seen = {
        (d, a): c
        for d in planted
        for a, c in pairs.neighbours(d, "b", as_of).items()
        if a == planted[d] and c >= settings.min_count
    }
    n_seen, n_top, n_strong, n_hits = planted_found(mined, planted, seen)
    held = recs.holdouts(events)
    accessories = set(planted.values())
    accessory_orders = {u for u, h in held.items() if h.targets & accessories}
    return report(run, args, mined, (n_seen, n_top, n_strong, n_hits), accessory_orders)


def _rates(run: recs.Run, cut: str, users: set[str] | None) -> dict[str, tuple[float, float, int]]:
    by: dict[str, list[recs.Outcome]] = defaultdict(list)
    for o in run.outcomes:
        if o.cut == cut and (users is None or o.user in users):
            by[o.method].append(o)
    return {
        m: (
            float(np.mean([o.hit for o in rows])),
            float(np.mean([o.recall for o in rows])),
            len(rows),
        )
        for m, rows in by.items()
        if rows
    }


def report(
    run: recs.Run,
    args: argparse.Namespace,
    mined: Sequence[Rule],
    found: tuple[int, int, int, int],
    accessory_users: set[str],
) -> str:
    n_seen, n_top, n_strong, n_hits = found
    lines = [
        SECTION,
        "",
        f"`python -m stream.evaluation.together --users {args.users} --products {args.products} "
        f"--days {args.days:g} --seed {args.seed} --complements {args.complements_p:g} "
        f"--weights {' '.join(f'{w:g}' for w in args.weights)}`: {run.n_events:,} events, "
        f"model `{run.model_id}`, "
        f"{run.seconds:.0f} s. Traffic with planted complements: a bought device brings its "
        f"accessory with probability {args.complements_p:g} (viewed, then bought in a second "
        "order of the session). Each user's last order is held out (the recommendation "
        "evaluation's protocol); *blend + together* adds the complements of the user's three "
        "latest purchases with that weight "
        "(`RTP_TOGETHER_W_RECS`), from the pair counts of everyone's events before the cut.",
        "",
        "| cut | users | method | hit-rate@10 | recall@10 | n |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for cut in recs.CUTS:
        for label, users in (("all", None), ("last order holds an accessory", accessory_users)):
            rates = _rates(run, cut, users)
            for m, (hit, recall, n) in rates.items():
                lines.append(f"| {cut} | {label} | {m} | {hit:.3f} | {recall:.3f} | {n} |")
    lines += [
        "",
        "The purchase cut is where *after a purchase, its complements* applies: the device "
        "order is in the profile when its accessory order is predicted. At the session cut the "
        "device was bought in the held-out session itself, so complements of older purchases "
        "are all the source can offer.",
        "",
        f"**Rules found vs planted** (whole log, support floor {args.min_count:g} "
        f"decayed sessions): {n_seen} planted pairs were bought together that often; for "
        f"{n_top} of them ({n_top / max(n_seen, 1):.0%}) the accessory is the device's best "
        f"rule by lift. {n_strong} rules have lift ≥ {STRONG_LIFT:g}; {n_hits} of them "
        f"({n_hits / max(n_strong, 1):.0%}) are planted pairs (either direction). Strongest "
        "rules:",
        "",
        "```",
        *[r.line() for r in mined[:8]],
        "```",
    ]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stream.evaluation.together", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--products", type=int, default=800)
    parser.add_argument("--days", type=float, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--complements", dest="complements_p", type=float, default=0.3)
    parser.add_argument(
        "--weights", type=float, nargs="+", default=[0.3, 1.0], help="RTP_TOGETHER_W_RECS values"
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rtp-evaluate-recs/vectors.npz"))
    parser.add_argument("--write", action="store_true", help="update EVALUATION.md")
    parser.add_argument("--evaluation-file", type=Path, default=Path("EVALUATION.md"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    text = evaluate(args)
    print(text)
    if args.write:
        write_section(args.evaluation_file, SECTION, text, title="Evaluation")
        print(f"wrote {SECTION!r} to {args.evaluation_file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
