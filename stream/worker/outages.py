"""Outages logged once when they begin and once when they end, and counted.

During a 3-second Redis outage every timer and agent fails on every tick; logging each failure
with its traceback printed 16-21 tracebacks that said one thing. The tracker turns them into
two lines (``redis outage began: ...``, ``redis outage over after 3.1 s``), a counter
(``rtp_outages_total{dependency}``) and a gauge (``rtp_outage_active{dependency}``); the
individual retries stay at DEBUG.

An outage ends with the first success of an operation that failed in it: that operation needs
the dependency, so the dependency is back. A failure within :data:`AFTERSHOCK_S` of the end is
the same outage (e.g. each pooled Redis connection fails once after a restart): it is reopened
quietly, at DEBUG, and counted once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge

from profiles.core.errors import Outage

log = logging.getLogger(__name__)

#: Failures this soon after an outage ended belong to it.
AFTERSHOCK_S = 10.0


@dataclass
class _Open:
    since: float
    failing: set[str] = field(default_factory=set)
    retries: int = 0
    quiet: bool = False  # reopened by an aftershock: already logged and counted


class OutageTracker:
    """Which dependencies are down now, from the failures and successes agents report."""

    def __init__(
        self,
        began: Counter | None = None,
        active: Gauge | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._began, self._active, self._clock = began, active, clock
        self._open: dict[str, _Open] = {}
        self._ended: dict[str, float] = {}  # dependency -> when its last outage ended

    def failed(self, what: str, exc: Outage) -> None:
        """``what`` failed because of an outage (it will be retried)."""
        dependency = exc.dependency
        current = self._open.get(dependency)
        now = self._clock()
        if current is None and now - self._ended.get(dependency, -AFTERSHOCK_S) < AFTERSHOCK_S:
            current = self._open[dependency] = _Open(now, quiet=True)
            log.debug("%s failed again right after the %s outage: %s", what, dependency, exc)
            if self._active is not None:
                self._active.labels(dependency).set(1)
        elif current is None:
            current = self._open[dependency] = _Open(now)
            log.warning(
                "%s outage began: %s failed (%s); retrying until it is over",
                dependency,
                what,
                _describe(exc),
            )
            if self._began is not None:
                self._began.labels(dependency).inc()
            if self._active is not None:
                self._active.labels(dependency).set(1)
        else:
            log.debug("%s still failing (%s outage): %s", what, dependency, _describe(exc))
        current.failing.add(what)
        current.retries += 1

    def ok(self, what: str) -> None:
        """``what`` succeeded: every outage it failed in is over."""
        if not self._open:
            return
        for dependency in [d for d, o in self._open.items() if what in o.failing]:
            current = self._open.pop(dependency)
            self._ended[dependency] = self._clock()
            log.log(
                logging.DEBUG if current.quiet else logging.WARNING,
                "%s outage over after %.1f s (%d failed attempts; %s succeeded again)",
                dependency,
                self._clock() - current.since,
                current.retries,
                what,
            )
            if self._active is not None:
                self._active.labels(dependency).set(0)

    def active(self) -> dict[str, float]:
        """Dependency -> seconds it has been down, for those down now."""
        now = self._clock()
        return {d: now - o.since for d, o in self._open.items()}


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__
    text = f"{type(exc).__name__}: {exc}"
    return text if cause is None else f"{text}, from {type(cause).__name__}"
