"""``python -m stream validate FILE.jsonl``: check a file of events against the contracts offline.

Each non-blank line is one message value, as a producer would send it: one of our events or a
Segment-spec call. Lines go through the worker's own ``decode`` (same limits, same reasons), so a
file that passes here is accepted by the worker, save for event-time limits, which move with the
clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas.validate import Limits, Rejected, decode


@dataclass(slots=True)
class Failure:
    count: int = 0
    first: list[tuple[int, str]] = field(default_factory=list)  # (line number, detail)


@dataclass(slots=True)
class Summary:
    lines: int = 0
    valid: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    failures: dict[str, Failure] = field(default_factory=dict)

    @property
    def invalid(self) -> int:
        return self.lines - self.valid


def check_lines(lines: Iterable[bytes], limits: Limits, now_ms: int, examples: int = 3) -> Summary:
    """Decode every non-blank line; keep counts per kind and per reason, and the first failures."""
    summary = Summary()
    for number, line in enumerate(lines, start=1):
        value = line.rstrip(b"\r\n")
        if not value.strip():
            continue
        summary.lines += 1
        decoded = decode(value, limits, now_ms)
        if isinstance(decoded, Rejected):
            failure = summary.failures.setdefault(decoded.reason, Failure())
            failure.count += 1
            if len(failure.first) < examples:
                failure.first.append((number, decoded.detail))
        else:
            summary.valid += 1
            summary.kinds[decoded["type"]] += 1
    return summary


def render(path: str, summary: Summary) -> str:
    """The human summary: totals, accepted kinds, then each reason with its first failures."""
    out = [f"{path}: {summary.lines} events, {summary.valid} valid, {summary.invalid} invalid"]
    if summary.kinds:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(summary.kinds.items()))
        out.append(f"  valid by kind: {kinds}")
    for reason, failure in sorted(summary.failures.items(), key=lambda kv: (-kv[1].count, kv[0])):
        out.append(f"  {failure.count:8d}  {reason}")
        out.extend(f"            line {number}: {detail}" for number, detail in failure.first)
    return "\n".join(out)
