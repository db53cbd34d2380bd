"""The profile fields an audience rule may name: one accessor per field, in one table.

A field is a name, a type (``number``, ``string``, ``set``, ``bool``) and a function of
the profile and the time the rule is evaluated at (``as_of``, event time). A *timed* field
also says from which instant it counts (its ``anchor``), so the sweep knows when a rule over
it can change with time alone. Adding a field is one line in
:data:`FIELDS`.

>>> sorted(FIELDS)[:4]
['churn_level', 'churn_risk', 'consent', 'days_since_last_event']
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from profiles.core.profile import Profile
from profiles.sentiment.state import SentimentState

#: Risk severities, weakest first ("none": no open flag).
SEVERITY_ORDER = ("none", "low", "medium", "high")

DAY_MS = 86_400_000
#: How many of the strongest tags ``tags`` holds (the order of decayed tags does not change
#: with time, so neither does this set).
TOP_TAGS = 20

FieldType = Literal["number", "string", "set", "bool"]
Value = float | str | bool | frozenset[str] | None


@dataclass(frozen=True, slots=True)
class Field:
    type: FieldType
    get: Callable[[Profile, int], Value]
    help: str
    #: Timed fields: the instant the value counts days from (value = days since anchor).
    anchor: Callable[[Profile], int | None] | None = None
    #: Fields another timer changes (the churn sweep): when they may next change.
    changes_at: Callable[[Profile], int | None] | None = None


def state(profile: Profile) -> dict[str, Any]:
    """The audience feature's state on the profile (consent, language, memberships)."""
    return profile.parts.get("audiences") or {}


def _days_since(anchor: Callable[[Profile], int | None]) -> Callable[[Profile, int], Value]:
    def get(profile: Profile, as_of: int) -> Value:
        at = anchor(profile)
        return None if at is None else max(0, as_of - at) / DAY_MS

    return get


def _churn(key: str) -> Callable[[Profile, int], Value]:
    def get(profile: Profile, as_of: int) -> Value:
        value = (profile.churn or {}).get(key)
        return None if value is None else value

    return get


def _churn_next(profile: Profile) -> int | None:
    next_ms = (profile.churn or {}).get("next_check_ms")
    return None if next_ms is None else int(next_ms)


def _tier(profile: Profile, as_of: int) -> Value:
    return (profile.parts.get("value") or {}).get("tier")


def _tier_next(profile: Profile) -> int | None:
    """When the value sweep may move the tier (recency passing an R cut)."""
    next_ms = (profile.parts.get("value") or {}).get("next_check_ms")
    return None if next_ms is None else int(next_ms)


def open_flags_at(profile: Profile, as_of: int) -> dict[str, dict[str, Any]]:
    flags = (profile.parts.get("risk") or {}).get("flags") or {}
    return {name: f for name, f in flags.items() if int(f["until"]) > as_of}


def _risk_flags(profile: Profile, as_of: int) -> Value:
    return frozenset(open_flags_at(profile, as_of))


def _risk_severity(profile: Profile, as_of: int) -> Value:
    found = [f["severity"] for f in open_flags_at(profile, as_of).values()]
    return max(found, key=SEVERITY_ORDER.index) if found else "none"


def risk_excluded(profile: Profile, as_of: int, at_least: str) -> bool:
    """An open flag of at least severity ``at_least`` at ``as_of`` (``none``: never)."""
    if at_least == "none":
        return False
    floor = SEVERITY_ORDER.index(at_least)
    found = open_flags_at(profile, as_of).values()
    return any(SEVERITY_ORDER.index(f["severity"]) >= floor for f in found)


def risk_next(profile: Profile) -> int | None:
    """When the first open flag lapses (event time)."""
    flags = (profile.parts.get("risk") or {}).get("flags") or {}
    return min((int(f["until"]) for f in flags.values()), default=None)


def _sentiment(profile: Profile, as_of: int) -> Value:
    state = profile.parts.get("sentiment")
    return None if not state else SentimentState.from_dict(state).mean()


def _tags(profile: Profile, as_of: int) -> Value:
    if len(profile.tags) <= TOP_TAGS:
        return frozenset(profile.tags)
    cut = heapq.nlargest(TOP_TAGS, profile.tags.values())[-1]  # ties at the cut are all in
    return frozenset(tag for tag, score in profile.tags.items() if score >= cut)


def _consent(profile: Profile, as_of: int) -> Value:
    got = state(profile).get("consent")
    return None if got is None else bool(got[1])


def _language(profile: Profile, as_of: int) -> Value:
    got = state(profile).get("language")
    return None if got is None else str(got[1])


def _last_event(profile: Profile) -> int | None:
    return profile.last_ts


def _last_purchase(profile: Profile) -> int | None:
    return profile.last_purchase_ts


#: Every field a rule may name.
FIELDS: dict[str, Field] = {
    "segment": Field("number", lambda p, t: p.segment, "segment id (profiles/segments)"),
    "tags": Field("set", _tags, f"the user's {TOP_TAGS} strongest interest tags (ties included)"),
    "churn_level": Field(
        "string", _churn("level"), "churn level: low, medium, high", changes_at=_churn_next
    ),
    "churn_risk": Field(
        "number", _churn("risk"), "P(no purchase within the horizon)", changes_at=_churn_next
    ),
    "value_tier": Field(
        "string", _tier, "customer-value tier (champions ... lost)", changes_at=_tier_next
    ),
    "risk_flags": Field(
        "set", _risk_flags, "rules of the open risk flags (profiles/risk)", changes_at=risk_next
    ),
    "risk_severity": Field(
        "string",
        _risk_severity,
        "highest severity of an open risk flag: none, low, medium, high",
        changes_at=risk_next,
    ),
    "sentiment": Field("number", _sentiment, "decayed mean review sentiment, -1 to 1"),
    "orders": Field("number", lambda p, t: p.orders, "purchases made"),
    "spend": Field(
        "number", lambda p, t: sum(p.spend_cents.values()) / 100, "total spend, all currencies"
    ),
    "events": Field("number", lambda p, t: sum(p.counts.values()), "events of any kind"),
    "days_since_last_event": Field(
        "number", _days_since(_last_event), "days since the latest event", anchor=_last_event
    ),
    "days_since_purchase": Field(
        "number",
        _days_since(_last_purchase),
        "days since the latest purchase",
        anchor=_last_purchase,
    ),
    "language": Field("string", _language, "language of the latest event that named one"),
    "consent": Field("bool", _consent, "ad-targeting consent of the latest event that gave one"),
}
