"""Experiments in a closed loop: the generator's users answer the lists the worker pushes,
and the report's lift is checked against the lift the answers planted.

    python -m stream.evaluation.experiment_loop            # print the section
    python -m stream.evaluation.experiment_loop --write    # ... and update EVALUATION.md

Four runs of the same traffic (same users, same arms: the hash of one experiment name)
through the worker's real stages and a private Redis (:mod:`stream.evaluation.loop`):

* **A**, no answers (``uplift`` 0), holdout shown nothing: an A/A check, whose true lift is 0;
* **B**, answers, holdout shown nothing: recommendations against none;
* **C**, answers, holdout shown the popularity control: personalisation against popularity;
* **D**, answers, *both* arms shown the popularity control (the treatment arm renamed
  ``holdout_a``, so the same users are in it): C's counterfactual.

The truth is measured on the treatment arm's own users, who are the same in every run: in B
their conversion rate against A's (the same people, with and without answering lists), in C
against D's (the same people answering personal lists or popular ones). The report estimates
each lift from the *other* arm, as an experiment must; the check is whether the truth falls
inside its confidence interval.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from stream.devtools.services import REDIS, LocalServices, free_port
from stream.evaluation.loop import LoopResult, run_loop
from stream.evaluation.markdown import write_section
from stream.settings import Settings
from stream.simulation.generator import TrafficConfig, TrafficGenerator
from stream.simulation.respond import Responder, ResponseConfig

SECTION = "## Experiments in a closed loop (issue 20)"
NAME = "loop"  # the experiment name: the salt, the same in every run


@dataclass(frozen=True)
class Run:
    label: str
    uplift: float
    control: str  # RTP_EXPERIMENT_HOLDOUT
    arms: str


def runs(uplift: float) -> list[Run]:
    return [
        Run("A", 0.0, "none", "treatment:0.5,holdout:0.5"),
        Run("B", uplift, "none", "treatment:0.5,holdout:0.5"),
        Run("C", uplift, "popular", "treatment:0.5,holdout:0.5"),
        Run("D", uplift, "popular", "holdout_a:0.5,holdout:0.5"),
    ]


def settings_for(run: Run, redis_url: str, window_days: float) -> Settings:
    return Settings.from_env(
        {
            "RTP_REDIS_URL": redis_url,
            "RTP_PARTITIONS": "4",
            "RTP_CHURN_CLOCK": "event",
            "RTP_EXPERIMENT": NAME,
            "RTP_EXPERIMENT_ARMS": run.arms,
            "RTP_EXPERIMENT_HOLDOUT": run.control,
            "RTP_ATTRIBUTION_WINDOW_S": str(window_days * 86400),
        }
    )


def rate(result: LoopResult, arm: str) -> float:
    return float(result.report["arms"][arm]["conversion_rate"])


def truths(results: dict[str, LoopResult]) -> dict[str, float]:
    """The planted lift of each run, on the treatment arm's own users."""
    a, b, c, d = (results[k] for k in "ABCD")
    return {
        "A": 0.0,
        "B": rate(b, "treatment") / rate(a, "treatment") - 1,
        "C": rate(c, "treatment") / rate(d, "holdout_a") - 1,
    }


async def evaluate(
    args: argparse.Namespace, redis_url: str, progress: bool
) -> tuple[dict[str, LoopResult], float]:
    gen = TrafficGenerator(TrafficConfig(seed=args.seed, users=args.users, products=args.products))
    answer = ResponseConfig(uplift=0.0, irrelevant=args.irrelevant, looked=args.looked)
    results: dict[str, LoopResult] = {}
    started = time.perf_counter()
    base = redis_url.rsplit("/", 1)[0]
    for db, run in enumerate(runs(args.uplift), start=1):
        bar = tqdm(desc=f"run {run.label}", unit="ev", disable=not progress, leave=False)
        tick: Callable[[int], None] = bar.update
        responder = Responder(gen, dataclasses.replace(answer, uplift=run.uplift))
        try:
            results[run.label] = await run_loop(
                settings_for(run, f"{base}/{db}", args.window_days),
                gen,
                responder,
                args.days,
                args.batch,
                tick,
            )
        finally:
            bar.close()
    return results, time.perf_counter() - started


def _ci(v: dict[str, Any]) -> str:
    low, high = v["lift_ci"]
    return f"{v['lift']:+.1%} ({low:+.1%} .. {high:+.1%})"


def section(args: argparse.Namespace, results: dict[str, LoopResult], seconds: float) -> str:
    truth = truths(results)
    shows = {"none": "nothing", "popular": "the popularity list"}
    rows = [
        "| run | answers | holdout shown | treatment rate | holdout rate | measured lift "
        "(95 % CI) | planted lift | inside |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in runs(args.uplift)[:3]:
        r = results[run.label]
        v = r.report["arms"]["treatment"]["vs_control"]
        low, high = v["lift_ci"]
        inside = low is not None and low <= truth[run.label] <= high
        rows.append(
            f"| {run.label} | uplift {run.uplift:g} | {shows[run.control]} | "
            f"{rate(r, 'treatment'):.3f} | {rate(r, 'holdout'):.3f} | {_ci(v)} | "
            f"{truth[run.label]:+.1%} | {'yes' if inside else '**no**'} |"
        )
    d = results["D"]
    users = {k: v["users"] for k, v in results["B"].report["arms"].items()}
    b = results["B"]
    clicks = b.report["arms"]["treatment"]["clicks"]
    lines = [
        SECTION,
        "",
        f"`python -m stream.evaluation.experiment_loop --users {args.users} --products "
        f"{args.products} --days {args.days:g} --uplift {args.uplift:g} --seed {args.seed}` "
        f"(run {time.strftime('%Y-%m-%d')}, {seconds:.0f} s for the four runs, on the shared "
        "2-CPU machine). The generator's traffic goes through the worker's real ingest and "
        "update stages, the default features and a private Redis (`stream/evaluation/loop.py`); "
        "the pushed lists are answered by the generator's users "
        f"(`stream/simulation/respond.py`): each looks at the first {args.looked} items and "
        f"acts on the first that tempts them, with chance {args.uplift:g} for an item in their "
        f"planted interests and {args.uplift * args.irrelevant:g} for another (a click with "
        "the list's `recommendation_id`, then a purchase a minute later). Arms: 50 % "
        f"treatment ({users['treatment']} users seen), 50 % holdout ({users['holdout']}); "
        f"attribution window {args.window_days:g} days. Rates are users converted (bought a "
        "listed item within the window) over users assigned.",
        "",
        *rows,
        "",
        "**Planted lift**: the same treatment users' rate against their own rate in a "
        "counterfactual run of the same traffic: B against A (no one answers), C against D "
        f"(both arms shown the popularity list; the treatment users' rate there was "
        f"{rate(d, 'holdout_a'):.3f}). The report only sees the other arm, as a real "
        "experiment does.",
        "",
        f"- In B the treatment arm's click-throughs ({clicks}) are the answers' clicks, "
        f"each counted once ({b.answers // 2} answers); the holdout, shown nothing, clicked "
        f"{b.report['arms']['holdout']['clicks']} times. Lists pushed per arm in B: "
        f"{dict(b.lists)}; in C: {dict(results['C'].lists)}.",
        "- A holds the generator's own traffic only: its lift is the noise of the split "
        "(the holdout's organic purchases of what it would have been shown against the "
        "treatment's of what it was shown).",
        f"- C's planted lift ({truth['C']:+.1%}) is "
        f"{'larger' if truth['C'] > truth['B'] else 'smaller'} than B's ({truth['B']:+.1%}); "
        "they answer different questions. A holdout shown nothing is credited with its "
        "organic purchases of the personal list it would have seen (rate "
        f"{rate(b, 'holdout'):.3f}); the same treatment users convert at "
        f"{rate(d, 'holdout_a'):.3f} with popularity lists they answer (D) against "
        f"{rate(results['A'], 'treatment'):.3f} with personal lists they do not answer (A). "
        "So C measures what personalisation adds over popularity, for simulated shoppers "
        "whose answer depends only on whether an item is in their planted categories.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--uplift", type=float, default=0.05, help="chance per relevant item")
    parser.add_argument("--irrelevant", type=float, default=0.25, help="relative, other items")
    parser.add_argument("--looked", type=int, default=3, help="top items a user looks at")
    parser.add_argument("--window-days", type=float, default=7.0)
    parser.add_argument("--batch", type=int, default=200, help="events per batch")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--redis-url", help="a Redis to use (databases 1-4 are flushed)")
    parser.add_argument("--write", action="store_true", help="update EVALUATION.md")
    parser.add_argument("--evaluation-file", type=Path, default=Path("EVALUATION.md"))
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if not 0 < args.uplift <= 1:
        parser.error("--uplift must be in (0, 1]")
    with tempfile.TemporaryDirectory(prefix="rtp-loop-") as tmp:
        services = None
        url = args.redis_url
        if url is None:
            services = LocalServices(Path(tmp), redis_port=free_port(), broker_port=free_port())
            services.start(REDIS)
            url = services.redis_url
        try:
            _flush(url)
            results, seconds = asyncio.run(evaluate(args, url, progress=not args.quiet))
        finally:
            if services is not None:
                services.down()
    text = section(args, results, seconds)
    print(text)  # a command-line tool, not an agent
    if args.write:
        write_section(args.evaluation_file, SECTION, text, title="Evaluation")
    return 0


def _flush(url: str) -> None:
    import redis

    base = url.rsplit("/", 1)[0]
    for db in range(1, 5):
        client = redis.Redis.from_url(f"{base}/{db}")
        client.flushdb()
        client.close()


if __name__ == "__main__":
    sys.exit(main())
