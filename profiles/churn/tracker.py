"""Churn risk kept current: on every profile write, and by a sweep as time passes.

Per user the stored churn state (Redis field ``c``) holds the announced level and
the time at which, with no new events, the level would next change. That time is
also the user's score in the owner partition's due index (a sorted set), so a
sweep reads only the users whose level may have changed: its cost follows the
users that changed, not all users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from profiles.churn.bgnbd import BGNBDParams
from profiles.churn.calibration import Calibrator
from profiles.churn.features import DAY_MS, Behaviour
from profiles.churn.risk import Risk, RiskConfig, assess, model_version
from profiles.core.profile import Profile


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
        self.calibrator: Calibrator | None = None

    def version(self) -> str:
        """The ``model_version`` scores get now (formula, horizon, fit, calibrator)."""
        return model_version(self.params, self.calibrator, self.config.horizon_days)

    def quiet_ms(self) -> int:
        """How long after an event an engagement-scored user surely stays "low".

        Users scored by engagement (never bought, or no model yet) have risk 0 at their event,
        and it reaches the first boundary after ``-h log2(1 - levels[0])`` days; the sweep
        computes the exact crossing then. This keeps their per-write cost to a few operations.
        Customers with a model are scored at the event: their probability is not 0 then.
        """
        cfg = self.config
        days = -cfg.engagement_half_life_days * math.log2(1.0 - cfg.levels[0])
        return int(days * DAY_MS)

    def update(self, profile: Profile, as_of_ms: int) -> ChurnChange | None:
        """Re-score ``profile`` as of ``as_of_ms``; set its churn state; the change to announce."""
        if profile.last_ts is None:
            return None
        previous = profile.churn["level"] if profile.churn else None
        when = max(as_of_ms, profile.last_ts)
        engagement_only = self.params is None or not Behaviour.read(profile).purchaser
        if when == profile.last_ts and previous in (None, "low") and engagement_only:
            # At an event the engagement risk is 0: low, nothing to announce, no model call.
            profile.churn = {
                "level": "low",
                "risk": 0.0,
                "as_of": when,
                "model_version": self.version(),
                "next_check_ms": when + self.quiet_ms(),
            }
            return None
        found = assess(profile, when, self.params, self.config, previous, self.calibrator)
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
