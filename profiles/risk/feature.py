"""Risk flags as a profile feature: field ``rk``, and ``risk_flag`` when a flag opens or clears.

The state lives in the profile hash only (no index), so an erasure, which deletes the hash,
removes it; the compacted ``risk`` topic gets the erasure's tombstone like the other outputs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import orjson

from profiles.core.profile import EventLearner, Profile
from profiles.pipeline.feature import Batch, Emit, Feature, Fields, FieldValue, Stats, UserResult
from profiles.risk.detector import RiskChange, RiskDetector, open_flags


class RiskFields(Fields):
    names = ("rk",)

    def decode(self, profile: Profile, values: Sequence[bytes | None]) -> None:
        profile.parts["risk"] = None if values[0] is None else orjson.loads(values[0])

    def encode(self, profile: Profile) -> dict[str, FieldValue]:
        state = profile.parts.get("risk")
        return {} if state is None else {"rk": orjson.dumps(state)}


class RiskFeature(Feature):
    name = "risk"
    fields = RiskFields()

    def __init__(self, detector: RiskDetector) -> None:
        self.detector = detector

    def attach(self, profile: Profile, stats: Stats) -> None:
        profile.parts["risk_changes"] = []  # this attempt's changes only

    def learner(self, batch: Batch) -> EventLearner | None:
        return self.detector.learn

    async def compute(self, batch: Batch, users: Sequence[UserResult], stats: Stats) -> None:
        for user in users:
            changes: list[RiskChange] = user.profile.parts.pop("risk_changes", [])
            if not user.write:
                continue
            for change in changes:
                build = functools.partial(risk_event, change)
                user.emits.append(Emit("risk", "risk_flag", user.user_id, build, change))
            if changes:
                opened = sum(c.status == "opened" for c in changes)
                stats.counts["risk_opened"] = stats.counts.get("risk_opened", 0) + opened

    def describe(self, profile: Profile, event: dict[str, Any]) -> None:
        if profile.parts.get("risk") is not None:
            event["risk"] = {"flags": flags_view(profile)}


def flags_view(profile: Profile) -> list[dict[str, Any]]:
    """The open flags as the API and ``profile_updated`` show them, by rule name."""
    return [
        {
            "rule": name,
            "kind": flag["kind"],
            "severity": flag["severity"],
            "opened_at": flag["opened"],
            "last_at": flag["last"],
            "until": flag["until"],
            "evidence": flag["evidence"],
        }
        for name, flag in sorted(open_flags(profile).items())
    ]


def risk_event(change: RiskChange, now_ms: int) -> dict[str, Any]:
    """The ``risk_flag`` event; its id names the flag's opening, so a replay repeats it."""
    flag, user_id = change.flag, change.profile.user_id
    return {
        "type": "risk_flag",
        "schema_version": 1,
        "event_id": f"{user_id}:risk:{change.rule}:{flag['opened']}:{change.status}",
        "user_id": user_id,
        "rule": change.rule,
        "kind": flag["kind"],
        "status": change.status,
        "severity": flag["severity"],
        "evidence": flag["evidence"],
        "opened_at": flag["opened"],
        "last_at": flag["last"],
        "cleared_at": change.at if change.status == "cleared" else None,
        "ts": change.at,
        "processed_at": now_ms,
    }
