"""Churn scoring cost per user on real customers (CDNOW), model alone and calibrated.

    python benchmarks/churn_score.py            # ~30 s on 2 cores

The CDNOW profiles as of the standard calibration end (1997-10-01) are built with the worker's
``apply``, the MBG/NBD is fitted on them and the calibrator on pairs matured before that day
(the back-test's protocol, :mod:`stream.evaluation.churn_log`). Then, for every customer, three
rounds of ``score`` (what the API and a churn_risk event cost) and ``assess`` (score plus the
next level change by bisection: what a customer's event or a due sweep costs); the median round
is reported per user.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from profiles.churn.calibration import Calibrator
from profiles.churn.features import DAY_MS, Behaviour
from profiles.churn.risk import RiskConfig, assess, score
from stream.evaluation import churn_log


def per_user_us(users: list[Behaviour], call: Callable[[Behaviour], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for b in users:
            call(b)
        times.append((time.perf_counter() - started) / len(users) * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--horizon", type=int, default=30)
    args = parser.parse_args()
    with churn_log.cdnow_path().open(encoding="utf-8") as lines:
        purchases = churn_log.read_log(lines)
    end = churn_log.CDNOW_CALIBRATION_END.toordinal() - dt.date(1970, 1, 1).toordinal()
    h = args.horizon
    snapshots = churn_log.profiles_at(purchases, churn_log.refit_days(end, h))
    fits = churn_log.fits_for(snapshots, progress=False)
    bg = fits[end]
    res = churn_log.evaluate_horizon(
        purchases, end, h, snapshots, fits, bg, progress=False, reference=False
    )
    cfg, params, at = RiskConfig(horizon_days=float(h)), fits[end], end * DAY_MS
    users = list(snapshots[end].values())
    calibrators: list[tuple[str, Calibrator | None]] = [("model alone", None)]
    if res.calibrator is not None and res.calibrator.better:
        calibrators.append(("calibrated", res.calibrator))
    print(f"{len(users)} CDNOW customers, H = {h} d, median of {args.rounds} rounds")
    print("| score | `score` per user (µs) | `assess` per user (µs) |")
    print("| --- | ---: | ---: |")
    for name, cal in calibrators:
        s = per_user_us(
            users, lambda b, c=cal: score(b, at, params, cfg, calibrator=c), args.rounds
        )
        a = per_user_us(users, lambda b, c=cal: assess(b, at, params, cfg, None, c), args.rounds)
        print(f"| {name} | {s:.1f} | {a:.1f} |")


if __name__ == "__main__":
    main()
