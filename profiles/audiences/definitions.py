"""Audience definitions: a file of named rules, checked whole, stored as numbered versions.

The file (JSON)::

    {"audiences": [
      {"name": "lapsed_tea_buyers", "description": "bought tea, quiet for a month",
       "rule": {"all": [{"field": "tags", "op": "contains", "value": "tea"},
                        {"field": "days_since_purchase", "op": ">", "value": 30}]}}
    ]}

Names are 1-64 characters of ``a-z 0-9 _ -``, unique. ``python -m stream audiences apply
FILE`` stores it as the next version (the same content again keeps the version).

>>> d = definitions_from({"audiences": [{"name": "big", "rule":
...     {"field": "spend", "op": ">=", "value": 100}}]})
>>> [a.name for a in d.audiences], d.version
(['big'], 0)
>>> definitions_from({"audiences": [{"name": "Big!", "rule": {}}]})
Traceback (most recent call last):
...
profiles.audiences.rules.RuleError: audiences[0].name: 1-64 characters of a-z 0-9 _ -, got 'Big!'
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from profiles.audiences.fields import risk_excluded, risk_next, state
from profiles.audiences.rules import Fieldset, Rule, RuleError, parse
from profiles.core.profile import Profile

NAME = re.compile(r"[a-z0-9_-]{1,64}")
MAX_AUDIENCES = 200


@dataclass(frozen=True, slots=True)
class Audience:
    name: str
    rule: Rule
    description: str = ""


@dataclass(frozen=True, slots=True)
class Definitions:
    """One version of every audience; version 0 is "none applied yet"."""

    audiences: tuple[Audience, ...] = ()
    version: int = 0

    @property
    def digest(self) -> str:
        """What the content hashes to (an unchanged file keeps its version)."""
        return hashlib.sha256(orjson.dumps(self.to_json(), option=orjson.OPT_SORT_KEYS)).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "audiences": [
                {"name": a.name, "description": a.description, "rule": a.rule.to_json()}
                for a in self.audiences
            ]
        }

    def evaluate(
        self, profile: Profile, as_of: int, require_consent: bool, exclude: str = "none"
    ) -> set[str]:
        """The audiences ``profile`` is in at ``as_of``: none for an opted-out user, nor for
        one with an open risk flag of at least severity ``exclude`` (RTP_RISK_EXCLUDE)."""
        if opted_out(profile, require_consent) or risk_excluded(profile, as_of, exclude):
            return set()
        values = Fieldset(profile, as_of)
        return {a.name for a in self.audiences if a.rule.holds(values)}

    def next_change(self, profile: Profile, as_of: int, exclude: str = "none") -> int | None:
        """The earliest time after ``as_of`` any membership may change with time alone (an
        excluding risk flag lapsing, too)."""
        times = [t for a in self.audiences for t in a.rule.changes(profile, as_of)]
        lapse = risk_next(profile) if self.audiences and exclude != "none" else None
        if lapse is not None:
            times.append(max(lapse, as_of + 1))
        return min(times, default=None)


def opted_out(profile: Profile, require_consent: bool) -> bool:
    """Consent false; with ``require_consent`` also never said yes."""
    consent = state(profile).get("consent")
    return (not consent[1]) if consent is not None else require_consent


def definitions_from(raw: Any, version: int = 0) -> Definitions:
    """Check a decoded definitions file whole; :class:`RuleError` names the first problem."""
    if not isinstance(raw, dict) or set(raw) - {"audiences"} or "audiences" not in raw:
        raise RuleError('definitions: an object with one key, "audiences" (a list)')
    items = raw["audiences"]
    if not isinstance(items, list):
        raise RuleError("audiences: a list")
    if len(items) > MAX_AUDIENCES:
        raise RuleError(f"audiences: at most {MAX_AUDIENCES}, got {len(items)}")
    seen: set[str] = set()
    out: list[Audience] = []
    for i, item in enumerate(items):
        where = f"audiences[{i}]"
        if not isinstance(item, dict):
            raise RuleError(f"{where}: an object with name, rule and optional description")
        extra = set(item) - {"name", "rule", "description"}
        if extra or "name" not in item or "rule" not in item:
            raise RuleError(
                f"{where}: keys name, rule (and optional description), got {sorted(item)}"
            )
        name = item["name"]
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise RuleError(f"{where}.name: 1-64 characters of a-z 0-9 _ -, got {name!r}")
        if name in seen:
            raise RuleError(f"{where}.name: {name!r} is defined twice")
        seen.add(name)
        description = item.get("description", "")
        if not isinstance(description, str) or len(description) > 1000:
            raise RuleError(f"{where}.description: a string of at most 1000 characters")
        out.append(Audience(name, parse(item["rule"], f"{where}.rule"), description))
    return Definitions(tuple(out), version)


def definitions_from_bytes(blob: bytes, version: int = 0) -> Definitions:
    try:
        raw = orjson.loads(blob)
    except orjson.JSONDecodeError as exc:
        raise RuleError(f"definitions: not JSON ({exc})") from None
    return definitions_from(raw, version)


class AudienceBook:
    """The definitions a worker uses now (shared by the feature and the sweep, refreshed
    from Redis by the sweep's timer)."""

    def __init__(self, require_consent: bool = False, exclude_flagged: str = "none") -> None:
        self.current = Definitions()
        self.require_consent = require_consent
        self.exclude_flagged = exclude_flagged  # RTP_RISK_EXCLUDE

    @property
    def version(self) -> int:
        return self.current.version
