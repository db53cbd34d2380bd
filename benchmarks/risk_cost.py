"""Added cost per event of the risk flags in the update stage, measured side by side.

    python benchmarks/risk_cost.py           # 50k events, print the table
    python benchmarks/risk_cost.py --write   # ... and update BENCHMARKS.md

The worker's update stage in process (``BatchUpdater`` over a ``MemoryStore``, batches of
``--batch`` records, the real tagger, the base profile only: no encoder), once without and once
with the risk feature, interleaved ``--repeats`` times on the same events; medians (the harness
of ``benchmarks/feature_cost.py``). Then the size of the detector's stored field ``rk`` and the
flags open at the end. No Redis or Kafka: the field rides in the user's existing write, so the
store's cost grows only by its bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from benchmarks.feature_cost import main, report, side_by_side
from profiles.risk.detector import RiskDetector

SECTION = "## Risk flags: added cost per event (issue 19)"


async def measure(args: argparse.Namespace) -> str:
    result = await side_by_side(args, lambda: {"risk": RiskDetector()})
    store, users = result.store, result.users
    sizes = sorted(len(store.field(u, "rk") or b"") for u in users)
    flags = sum(len(orjson.loads(store.field(u, "rk") or b'{"flags":{}}')["flags"]) for u in users)
    notes = [
        f"- Field `rk`: median {sizes[len(sizes) // 2]:,} bytes, p99 "
        f"{sizes[int(len(sizes) * 0.99)]:,} bytes per user; {flags} flags open at the end.",
    ]
    return report(SECTION, "risk_cost.py", "risk flags", args, result, notes)


if __name__ == "__main__":
    main(__doc__ or "", SECTION, measure)
