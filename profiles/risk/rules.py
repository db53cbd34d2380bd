"""The risk rules, as data: a flag opens when every condition of a rule holds at an event.

A condition names a *signal* the detector measures at each event (:mod:`profiles.risk.detector`),
the event-time window it is counted over (counted signals only) and the threshold it must reach.
The table is validated on import, so a bad edit fails at start, not mid-stream.

>>> [r.name for r in RULES]
['bot_clicks', 'card_testing', 'review_burst', 'order_amount', 'takeover', 'anomaly']
>>> validate((Rule("x", (Condition("clicks", 0, 5.0),), "high", 1000),))
Traceback (most recent call last):
...
ValueError: rule 'x': signal 'clicks' needs a window
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

#: Signals counted per user over an event-time window: the event type each one counts.
COUNTED = {"clicks": "click", "purchases": "purchase", "reviews": "review", "events": None}
#: Signals measured at one event (a purchase's amount, the anomaly score); no window.
MEASURED = ("amount_vs_own", "amount_vs_population", "interest_shift", "anomaly")
SEVERITIES = ("low", "medium", "high")


@dataclass(frozen=True, slots=True)
class Condition:
    signal: str
    window_ms: int  # counted signals: the sliding window in event time; 0 otherwise
    threshold: float  # holds when the signal's value is at or above it


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]  # all must hold (checked in order: cheap ones first)
    severity: str
    clear_after_ms: int  # the flag clears this long (event time) after its last trigger


#: The rule table (README "Risk flags" shows it). Humans in the traffic model click about
#: twice a minute and buy at most a few times a day; the thresholds sit far beyond that.
RULES: tuple[Rule, ...] = (
    Rule("bot_clicks", (Condition("clicks", MINUTE, 40),), "high", HOUR),
    Rule("card_testing", (Condition("purchases", HOUR, 6),), "high", 6 * HOUR),
    Rule("review_burst", (Condition("reviews", HOUR, 5),), "medium", DAY),
    Rule(
        "order_amount",
        (Condition("amount_vs_own", 0, 15.0), Condition("amount_vs_population", 0, 15.0)),
        "medium",
        7 * DAY,
    ),
    Rule(
        "takeover",
        (Condition("amount_vs_own", 0, 3.0), Condition("interest_shift", 0, 0.95)),
        "high",
        7 * DAY,
    ),
    Rule("anomaly", (Condition("anomaly", 0, 4.0),), "low", DAY),
)


def validate(rules: Sequence[Rule]) -> tuple[Rule, ...]:
    """``rules`` as a tuple, or ValueError naming the first bad entry."""
    seen: set[str] = set()
    for rule in rules:
        where = f"rule {rule.name!r}"
        if not rule.name or rule.name in seen:
            raise ValueError(f"{where}: names must be unique and non-empty")
        seen.add(rule.name)
        if rule.severity not in SEVERITIES:
            raise ValueError(f"{where}: severity must be one of {SEVERITIES}")
        if rule.clear_after_ms <= 0:
            raise ValueError(f"{where}: clear_after_ms must be > 0")
        if not rule.conditions:
            raise ValueError(f"{where}: needs a condition")
        for c in rule.conditions:
            if c.signal in COUNTED:
                if c.window_ms <= 0:
                    raise ValueError(f"{where}: signal {c.signal!r} needs a window")
            elif c.signal not in MEASURED:
                raise ValueError(f"{where}: unknown signal {c.signal!r}")
            if not (math.isfinite(c.threshold) and c.threshold > 0):
                raise ValueError(f"{where}: threshold must be finite and > 0")
    return tuple(rules)


def windows(rules: Sequence[Rule]) -> set[tuple[str, int]]:
    """The (counted signal, window) pairs the rules read."""
    return {(c.signal, c.window_ms) for r in rules for c in r.conditions if c.signal in COUNTED}


validate(RULES)


def table(rules: Sequence[Rule] = RULES) -> str:
    """The rule table as README shows it (a test keeps the two equal)."""
    lines = ["| rule | when (all hold) | severity | clears after |", "| --- | --- | --- | --- |"]
    for r in rules:
        when = " and ".join(_condition(c) for c in r.conditions)
        lines.append(f"| `{r.name}` | {when} | {r.severity} | {_span(r.clear_after_ms)} |")
    return "\n".join(lines)


def _condition(c: Condition) -> str:
    if c.signal in COUNTED:
        return f"`{c.signal}` ≥ {c.threshold:g} in {_span(c.window_ms)}"
    return f"`{c.signal}` ≥ {c.threshold:g}"


def _span(ms: int) -> str:
    for unit, size in (("d", DAY), ("h", HOUR), ("min", MINUTE)):
        if ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms / 1000:g} s"
