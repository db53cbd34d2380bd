"""Why a running worker is not ready: crashes, outages, refusals; and when to give up.

Faust marks a crashed agent or service and logs ``Crashed reason=...``, but keeps the worker
running, and a crashed agent's stream is not resumed: its partitions stop moving while
``/health`` (ready = Redis answered and partitions assigned) would still say ready and the lag
gauge stops being updated. :class:`Health` records each crash (``rtp_crashes_total``), answers
not ready with the reason until the component runs again, and says when a crash has lasted
``exit_after_s``: then the worker exits non-zero so its supervisor (compose's ``restart:``,
Kubernetes) starts it afresh, which is as safe as a SIGKILL (redelivery, fenced writes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

from stream.worker.outages import OutageTracker

log = logging.getLogger(__name__)

#: The worker's exit status when it gives up on a crashed component.
EXIT_CRASHED = 70  # EX_SOFTWARE


@dataclass(frozen=True)
class Crash:
    since: float
    reason: str


class Health:
    """Problems that make ``/health`` answer 503, besides start-up."""

    def __init__(
        self,
        crashes: Counter,
        outages: OutageTracker,
        exit_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counter, self.outages, self.exit_after_s = crashes, outages, exit_after_s
        self._clock = clock
        self.crashed: dict[str, Crash] = {}
        self.refused: dict[str, str] = {}  # what -> why (e.g. a partition it cannot process)

    def crash(self, component: str, exc: BaseException) -> None:
        """``component`` (an agent, the fetcher, the consumer) crashed with ``exc``."""
        if component in self.crashed:
            return
        reason = f"{type(exc).__name__}: {exc}"[:300]
        self.crashed[component] = Crash(self._clock(), reason)
        self._counter.labels(component).inc()
        log.error(
            "%s crashed (%s); /health answers 503%s",
            component,
            reason,
            f", exiting in {self.exit_after_s:.0f} s unless it recovers"
            if self.exit_after_s
            else "",
        )

    def alive(self, component: str) -> None:
        """``component`` did work: a crash of it is over."""
        if self.crashed and self.crashed.pop(component, None) is not None:
            log.warning("%s runs again after its crash", component)

    def problems(self) -> list[str]:
        now = self._clock()
        found = [
            f"{name} crashed {now - c.since:.0f} s ago: {c.reason}"
            for name, c in sorted(self.crashed.items())
        ]
        found += [f"{d} outage for {s:.0f} s" for d, s in sorted(self.outages.active().items())]
        found += [f"{what}: {why}" for what, why in sorted(self.refused.items())]
        return found

    def give_up(self) -> str | None:
        """The crash that has lasted ``exit_after_s`` (0: never give up), if any."""
        if not self.exit_after_s:
            return None
        now = self._clock()
        for name, c in self.crashed.items():
            if now - c.since >= self.exit_after_s:
                return f"{name} crashed {now - c.since:.0f} s ago and did not recover: {c.reason}"
        return None


def report(
    health: Health, *, started: bool, outputs_declared: bool, assigned: int, gauge: Gauge
) -> tuple[bool, dict[str, Any]]:
    """``/health``: ready once Redis answered (``started``), the output topics exist and
    partitions are owned, and while nothing crashed, no dependency is down and no partition is
    refused; the reasons if not. Sets ``gauge`` (``rtp_ready``) to match."""
    problems = health.problems()
    if not started:
        problems.insert(0, "starting: Redis not answered or the model not loaded yet")
    elif not outputs_declared:
        problems.insert(0, "starting: output topics not declared yet")
    if assigned <= 0:
        problems.append("no partitions assigned (yet)")
    ready = not problems
    gauge.set(1 if ready else 0)
    body: dict[str, Any] = {"alive": True, "ready": ready, "assigned": assigned}
    if problems:
        body["problems"] = problems
    return ready, body
