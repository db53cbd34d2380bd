"""Risk flags of one user, learned per applied event in event time.

The detector runs as the feature's per-event learner, so it sees exactly the events the base
profile applies: a redelivered (fenced) or duplicate event is never counted twice, and a
replay of the log opens and clears the same flags at the same event times. Its state (the
``risk`` part, field ``rk``) is small: three integers per counted window, a short-memory tag
mix and the long-term one at the session's start, the anomaly score's running moments and the
open flags.

A flag opens when every condition of a rule (:mod:`profiles.risk.rules`) holds at an event,
stays open while the rule keeps triggering, and clears at the first event at or after its
last trigger plus the rule's ``clear_after_ms`` (so a user who goes silent keeps the flag
until their next event; the stored ``until`` says when it lapses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from profiles.core.config import ProfileConfig
from profiles.core.profile import Profile, Tag
from profiles.risk import anomaly, windows
from profiles.risk.rules import COUNTED, HOUR, MINUTE, RULES, SEVERITIES, Rule, validate

#: Counted windows the anomaly score reads, whatever the rules read.
ANOMALY_WINDOWS = (("clicks", MINUTE), ("events", MINUTE), ("purchases", HOUR), ("reviews", HOUR))
SHORT_HALF_LIFE_MS = 30 * MINUTE  # the recent interests an account takeover changes
SHORT_TAGS = 16
REBASE_HALF_LIVES = 20  # the short mix's anchor moves once its growth passes 2**20
BASELINE_TAGS = 48  # enough to hold a user's lesser interests too: returning to one is no shift
SESSION_GAP_MS = 30 * MINUTE  # after a pause this long the interests of before are the baseline
MIN_HISTORY = 30  # events before the interest shift is judged (a new user has no habits)
POPULATION_FLOOR = 200.0  # order value assumed for the population before a value fit
MIN_ORDERS = 1  # orders before this one that make a history of the user's own


@dataclass(frozen=True, slots=True)
class RiskChange:
    """A flag opened or cleared at event time ``at``."""

    profile: Profile
    rule: str
    status: str  # "opened" | "cleared"
    flag: dict[str, Any]
    at: int


class RiskDetector:
    """``population`` gives the population's mean order value (None: not fitted yet)."""

    def __init__(
        self,
        rules: Sequence[Rule] = RULES,
        population: Callable[[], float | None] = lambda: None,
        half_life_ms: int = ProfileConfig().half_life_ms,
    ) -> None:
        self.rules = validate(rules)
        self.population = population
        self.half_life_ms = half_life_ms  # the profile's tag decay (to take this event out)
        counted = {(c.signal, c.window_ms) for r in self.rules for c in r.conditions}
        counted = {k for k in counted if k[0] in COUNTED} | set(ANOMALY_WINDOWS)
        self.counted = sorted(counted)
        self.plans: dict[str, tuple[list[tuple[str, int]], list[Rule]]] = {}
        self.anomaly_keys = [(f"{sig}/{w}", w) for sig, w in ANOMALY_WINDOWS]

    def learn(
        self, profile: Profile, event: dict[str, Any], ts: int, weight: float, tags: Sequence[Tag]
    ) -> None:
        """Update the user's risk state with one applied event (a feature learner)."""
        state = profile.parts.get("risk")
        if state is None:
            state = profile.parts["risk"] = new_state()
        changes: list[RiskChange] = profile.parts.setdefault("risk_changes", [])
        now = max(int(state["t"]), ts)
        if state["flags"]:
            self._clear(profile, state, now, changes)
        if ts - int(state["t"]) >= SESSION_GAP_MS:  # a new session: what the user did so far
            state["bl"] = _baseline(profile, self._before(profile, ts, weight, tags))
            anomaly.end_session(state["an"])
        kind = event["type"]
        counted, rules = self.plans.get(kind) or self._plan(kind)
        counters = state["w"]
        for key, window in counted:
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = windows.new()
            windows.add(counter, ts, window)
        _add_short_tags(state, ts, weight, tags)
        signals = Signals(self, profile, state, event, ts)
        signals.values["anomaly"] = anomaly.score(state["an"], signals.features())
        for rule in rules:
            if all(signals.get(c.signal, c.window_ms) >= c.threshold for c in rule.conditions):
                self._trigger(profile, state, rule, signals, ts, changes)
        state["t"] = now

    def _plan(self, kind: str) -> tuple[list[tuple[str, int]], list[Rule]]:
        """The counters an event type adds to and the rules it can trigger (a counted signal
        moves only with its own type; amounts exist only on purchases)."""
        counted = [(f"{s}/{w}", w) for s, w in self.counted if COUNTED[s] in (None, kind)]
        plan = counted, [r for r in self.rules if _can_trigger(r, kind)]
        self.plans[kind] = plan
        return plan

    def _before(
        self, profile: Profile, ts: int, weight: float, tags: Sequence[Tag]
    ) -> dict[str, float]:
        """The profile's tags without this event's share (the base profile added it already)."""
        if not tags or weight <= 0 or profile.tag_anchor is None:
            return profile.tags
        growth = 2.0 ** ((ts - profile.tag_anchor) / self.half_life_ms)
        out = dict(profile.tags)
        for tag, share in tags:
            left = out.get(tag, 0.0) - weight * share * growth
            if left > 1e-9 * growth:
                out[tag] = left
            else:
                out.pop(tag, None)
        return out

    def _clear(
        self, profile: Profile, state: dict[str, Any], now: int, changes: list[RiskChange]
    ) -> None:
        flags = state["flags"]
        for name in sorted(flags):
            flag = flags[name]
            if now >= flag["until"]:
                del flags[name]
                changes.append(RiskChange(profile, name, "cleared", flag, flag["until"]))

    def _trigger(
        self,
        profile: Profile,
        state: dict[str, Any],
        rule: Rule,
        signals: Signals,
        ts: int,
        changes: list[RiskChange],
    ) -> None:
        flags = state["flags"]
        flag = flags.get(rule.name)
        if flag is not None:  # still at it: the flag stays open longer
            flag["last"] = max(flag["last"], ts)
            flag["until"] = flag["last"] + rule.clear_after_ms
            flag["hits"] += 1
            return
        evidence = {
            c.signal if c.signal not in COUNTED else f"{c.signal}_per_{c.window_ms // 1000}s": {
                "value": round(signals.get(c.signal, c.window_ms), 4),
                "threshold": c.threshold,
            }
            for c in rule.conditions
        }
        flag = {
            "severity": rule.severity,
            "kind": "score" if any(c.signal == "anomaly" for c in rule.conditions) else "rule",
            "opened": ts,
            "last": ts,
            "until": ts + rule.clear_after_ms,
            "hits": 1,
            "evidence": evidence,
        }
        flags[rule.name] = flag
        changes.append(RiskChange(profile, rule.name, "opened", dict(flag), ts))


class Signals:
    """The signals at one event, computed when a rule first asks (cheap ones are asked first)."""

    def __init__(
        self,
        detector: RiskDetector,
        profile: Profile,
        state: dict[str, Any],
        event: dict[str, Any],
        ts: int,
    ) -> None:
        self.detector = detector
        self.profile = profile
        self.state = state
        self.event = event
        self.ts = ts
        self.values: dict[str, float] = {}

    def get(self, signal: str, window: int = 0) -> float:
        if signal in COUNTED:
            counter = self.state["w"].get(f"{signal}/{window}")
            return 0.0 if counter is None else windows.count(counter, self.ts, window)
        if signal not in self.values:
            self.values[signal] = float(getattr(self, signal)())
        return self.values[signal]

    def features(self) -> list[float | None]:
        """The anomaly score's features (log1p of the counts; a purchase's amount)."""
        counters, ts = self.state["w"], self.ts
        out: list[float | None] = []
        for key, window in self.detector.anomaly_keys:
            counter = counters.get(key)
            out.append(0.0 if counter is None else math.log1p(windows.count(counter, ts, window)))
        out.append(math.log1p(_amount(self.event)) if self.event["type"] == "purchase" else None)
        return out

    def amount_vs_own(self) -> float:
        """A purchase's amount over the user's own mean order before it (same currency); 0 for
        other events and until the user has ``MIN_ORDERS`` orders before this one."""
        event, profile = self.event, self.profile
        if event["type"] != "purchase" or profile.orders <= MIN_ORDERS:
            return 0.0
        amount = _amount(event)
        before = profile.spend_cents.get(event["currency"], 0) - round(amount * 100)
        mean = before / 100 / (profile.orders - 1)
        return amount / mean if mean > 0 else 0.0

    def amount_vs_population(self) -> float:
        """A purchase's amount over the population's mean order (the floor before a fit)."""
        if self.event["type"] != "purchase":
            return 0.0
        reference = self.detector.population() or POPULATION_FLOOR
        return _amount(self.event) / reference if reference > 0 else 0.0

    def interest_shift(self) -> float:
        """1 - cosine of the recent tag mix (30 min half-life) and the long-term one as of the
        session's start; 0 until the user had a history to shift from."""
        short: dict[str, float] = self.state["st"][1]
        long: dict[str, float] = self.state.get("bl") or {}
        if not short or not long:
            return 0.0
        dot = sum(s * long.get(tag, 0.0) for tag, s in short.items())
        norms = math.sqrt(sum(s * s for s in short.values())) * math.sqrt(
            sum(x * x for x in long.values())
        )
        return 0.0 if norms <= 0 else max(0.0, 1.0 - dot / norms)


def new_state() -> dict[str, Any]:
    return {"t": 0, "w": {}, "st": [0, {}], "bl": {}, "an": anomaly.new(), "flags": {}}


def _baseline(profile: Profile, tags: dict[str, float]) -> dict[str, float]:
    """The strongest long-term ``tags``, as shares (empty while the user has little history)."""
    if sum(profile.counts.values()) <= MIN_HISTORY or not tags:
        return {}
    top = sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))[:BASELINE_TAGS]
    total = sum(v for _, v in top)
    return {t: round(v / total, 6) for t, v in top} if total > 0 else {}


def _amount(event: dict[str, Any]) -> float:
    amount = float(event.get("amount", 0.0))
    return amount if math.isfinite(amount) and amount > 0 else 0.0


def _add_short_tags(state: dict[str, Any], ts: int, weight: float, tags: Sequence[Tag]) -> None:
    """The recent tag mix, anchored like the profile's tags (only cosines read it, so one
    common scale is all that matters): an event touches only its own tags."""
    if not tags or weight <= 0:
        return
    anchor, scores = state["st"]
    age = (ts - anchor) / SHORT_HALF_LIFE_MS
    if age > REBASE_HALF_LIVES:  # move the anchor before the growth factor gets large
        shrink = 2.0**-age
        scores = {t: v * shrink for t, v in scores.items() if v * shrink > 1e-6}
        anchor, age = ts, 0.0
    growth = weight * 2.0**age
    for tag, share in tags:
        scores[tag] = scores.get(tag, 0.0) + growth * share
    if len(scores) > 2 * SHORT_TAGS:
        scores = dict(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:SHORT_TAGS])
    state["st"] = [anchor, scores]


def _can_trigger(rule: Rule, kind: str) -> bool:
    for c in rule.conditions:
        if c.signal in COUNTED and COUNTED[c.signal] not in (None, kind):
            return False
        if c.signal.startswith("amount_") and kind != "purchase":
            return False
    return True


def open_flags(profile: Profile, at_least: str = "low") -> dict[str, dict[str, Any]]:
    """The user's open flags of at least severity ``at_least``."""
    state = profile.parts.get("risk")
    if not state:
        return {}
    floor = SEVERITIES.index(at_least)
    return {
        name: flag
        for name, flag in state["flags"].items()
        if SEVERITIES.index(flag["severity"]) >= floor
    }
