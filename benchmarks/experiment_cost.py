"""Added cost per event of the experiment feature in the update stage, side by side.

    python benchmarks/experiment_cost.py           # 50k events, print the table
    python benchmarks/experiment_cost.py --write   # ... and update BENCHMARKS.md

The worker's update stage in process (``BatchUpdater`` over a ``MemoryStore``, batches of
``--batch`` records, the real tagger, the base profile only: no encoder), once without and once
with the experiment feature (arm assignment, attribution of every counted event, the per-arm
counter contributions and the ``xp`` field), interleaved ``--repeats`` times on the same
events; medians (the harness of ``benchmarks/feature_cost.py``, shared with
``benchmarks/risk_cost.py``). Without an encoder there are no recommendation lists, so
purchases find nothing to attribute: the cost of matching against lists (at most 20 lists of
k items per user) is not in these figures. No Redis or Kafka: the counters are one more fenced
script call per owner partition per batch, the field rides in the user's existing write.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from benchmarks.feature_cost import main, report, side_by_side
from profiles.experiments.assign import parse_arms
from profiles.experiments.feature import ExperimentConfig

SECTION = "## Experiments: added cost per event (issue 20)"
EXPERIMENT = ExperimentConfig(
    "bench", parse_arms("treatment:0.9,holdout:0.1"), ("holdout",), 7 * 86_400_000
)


async def measure(args: argparse.Namespace) -> str:
    result = await side_by_side(args, lambda: {"experiment": EXPERIMENT})
    store, users = result.store, result.users
    sizes = sorted(len(store.field(u, "xp") or b"") for u in users)
    arms = [orjson.loads(store.field(u, "xp") or b'{"arm": "-"}')["arm"] for u in users]
    held = arms.count("holdout")
    notes = [
        f"- Field `xp`: median {sizes[len(sizes) // 2]:,} bytes, p99 "
        f"{sizes[int(len(sizes) * 0.99)]:,} bytes per user (no lists stored: no encoder); "
        f"{held} of {len(users):,} users in the holdout.",
    ]
    return report(SECTION, "experiment_cost.py", "experiment", args, result, notes)


if __name__ == "__main__":
    main(__doc__ or "", SECTION, measure)
