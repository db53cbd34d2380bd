"""Experiment evaluation: a planted uplift against the lift the attribution and the report
measure.

    python -m stream.evaluation.experiment           # print the section
    python -m stream.evaluation.experiment --write   # ... and update EVALUATION.md

Each simulated user is assigned an arm by the real hash (``profiles/experiments/assign.py``),
is shown a list of ``k`` items at a random event time (the holdout's list is the one it would
have been shown), and buys a listed item within the window with probability ``base``
(organic: both arms) plus ``uplift`` (treatment only: they saw it); some buy unlisted items or
too late, which must not count. Every event goes through the real attribution
(``profiles/experiments/attribution.py``) twice (a redelivery), and the per-arm counts through
the real report. Known truth: the planted relative lift is ``uplift / base`` on the
per-user conversion rate. The pipeline wiring (lists from the recommender, counters in Redis,
held lists) is covered by the tests; this checks the measurement and its statistics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from profiles.experiments.assign import assign, parse_arms
from profiles.experiments.attribution import attribute, new_state, remember
from profiles.experiments.report import ArmCounts, lines, report
from stream.evaluation.markdown import write_section

SECTION = "## Experiments: planted vs measured lift (issue 20)"
DAY = 86_400_000


def simulate(
    users: int, base: float, uplift: float, window_days: float, seed: int
) -> dict[str, ArmCounts]:
    arms = parse_arms("treatment:0.9,holdout:0.1")
    rng = np.random.default_rng(seed)
    window = int(window_days * DAY)
    tallies = {name: [0, 0, 0] for name, _ in arms}  # users, converted, conversions
    for i in range(users):
        uid = f"u{i}"
        arm = assign("eval", uid, arms)
        state = new_state("eval", arm, f"{uid}-0")
        shown_at = int(rng.integers(0, 30 * DAY))
        listed = [f"p{j}" for j in rng.choice(1000, size=10, replace=False)]
        remember(state, f"{uid}:1:recs", shown_at, listed, window)
        p = base + (uplift if arm == "treatment" else 0.0)
        events = []
        if rng.random() < p:  # a listed item, inside the window
            at = shown_at + 1 + int(rng.integers(0, window - 1))
            events.append((at, listed[int(rng.integers(0, 10))]))
        if rng.random() < 0.3:  # noise: an unlisted item, or a listed one too late
            events.append((shown_at + 1000, f"q{i}"))
            events.append((shown_at + window + DAY, listed[0]))
        counted = {"conversions": 0, "converted": 0}
        for n, (ts, pid) in enumerate(sorted(events)):
            buy = {
                "type": "purchase",
                "event_id": f"{uid}-{n + 1}",
                "ts": ts,
                "items": [{"product_id": pid}],
            }
            for what in set(attribute(state, buy, window)) | set(attribute(state, buy, window)):
                counted[what] = 1  # a redelivery yields the same names; the fence keeps one
        t = tallies[arm]
        t[0] += 1
        t[1] += counted["converted"]
        t[2] += counted["conversions"]
    return {a: ArmCounts(u, c, n, 0) for a, (u, c, n) in tallies.items()}


def section(users: int, base: float, uplift: float, window_days: float, seed: int) -> str:
    counts = simulate(users, base, uplift, window_days, seed)
    rep = report(counts, "holdout")
    v = rep["arms"]["treatment"]["vs_control"]
    planted = uplift / base
    low, high = v["lift_ci"]
    inside = low <= planted <= high
    out = [
        SECTION,
        "",
        f"`python -m stream.evaluation.experiment` ({users:,} users, 90 % treatment / 10 % "
        f"holdout, organic conversion {base:.0%} of shown users in both arms, planted extra "
        f"{uplift:.0%} in treatment, attribution window {window_days:g} days, each event "
        f"attributed twice as a redelivery, seed {seed}):",
        "",
        "```",
        *lines(rep),
        "```",
        "",
        f"- Planted relative lift **{planted:+.1%}**, measured **{v['lift']:+.1%}** "
        f"(95 % CI {low:+.1%} .. {high:+.1%}): the truth is "
        f"{'inside' if inside else 'OUTSIDE'} the interval.",
        f"- Users per arm the observed effect needs for 80 % power at alpha 0.05: "
        f"{v['needed_per_arm']:,}; the holdout has {counts['holdout'].users:,}.",
        "- Purchases of unlisted items and of listed items after the window were mixed in and "
        "not counted; a redelivered purchase counts nothing more.",
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--base", type=float, default=0.08)
    parser.add_argument("--uplift", type=float, default=0.02)
    parser.add_argument("--window-days", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--evaluation-file", type=Path, default=Path("EVALUATION.md"))
    args = parser.parse_args()
    text = section(args.users, args.base, args.uplift, args.window_days, args.seed)
    print(text)  # a command-line tool, not an agent
    if args.write:
        write_section(args.evaluation_file, SECTION, text, title="Evaluation")


if __name__ == "__main__":
    main()
