"""Churn risk kept current: on every profile write, and by a sweep as time passes.

Per user the stored churn state (Redis field ``c``) holds the announced level and
the time at which, with no new events, the level would next change. That time is
also the user's score in the owner partition's due index (a sorted set), so a
sweep reads only the users whose level may have changed: its cost follows the
users that changed, not all users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profiles.churn.bgnbd import BGNBDParams
from profiles.churn.risk import Risk, RiskConfig, assess
from profiles.profile import Profile


@dataclass(frozen=True, slots=True)
class ChurnChange:
    profile: Profile
    risk: Risk


def state_of(risk: Risk, next_check_ms: int | None) -> dict[str, Any]:
    """What is stored per user (and shown by the API)."""
    return {
        "level": risk.level,
        "risk": round(risk.risk, 6),
        "as_of": risk.as_of,
        "model_version": risk.model_version,
        "next_check_ms": next_check_ms,
    }


class ChurnTracker:
    """Scores users with the current population fit; says what to announce and when to look."""

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.config = config or RiskConfig()
        self.params: BGNBDParams | None = None

    def update(self, profile: Profile, as_of_ms: int) -> ChurnChange | None:
        """Re-score ``profile`` as of ``as_of_ms``; set its churn state; the change to announce."""
        if profile.last_ts is None:
            return None
        previous = profile.churn["level"] if profile.churn else None
        when = max(as_of_ms, profile.last_ts)
        found = assess(profile, when, self.params, self.config, previous)
        profile.churn = state_of(found.risk, found.next_check_ms)
        # A new user starts at "low" silently: announcing every newcomer would be a flood.
        announced = previous or "low"
        return ChurnChange(profile, found.risk) if found.risk.level != announced else None


def churn_event(change: ChurnChange, now_ms: int) -> dict[str, Any]:
    """The ``churn_risk`` event; its id repeats for a replay of the same change."""
    profile, risk = change.profile, change.risk
    return {
        "type": "churn_risk",
        "schema_version": 1,
        "event_id": f"{profile.user_id}:{profile.version}:churn:{risk.level}",
        "user_id": profile.user_id,
        "risk": round(risk.risk, 6),
        "level": risk.level,
        "reason": risk.reason,
        "last_activity_ts": profile.last_ts,
        "expected_next_purchase_ts": risk.expected_next_purchase_ms,
        "as_of": risk.as_of,
        "model_version": risk.model_version,
        "processed_at": now_ms,
    }
