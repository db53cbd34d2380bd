"""Segment ``identify`` / ``alias`` calls and anonymous ids, read for identity stitching.

:func:`link_of` turns a call into a :class:`Link` (an anonymous profile id tied to a user id)
or says why not; :func:`kept_traits` is what an ``identify`` may leave in the profile as
declared attributes. Both are pure; ``profiles/core/stitch.py`` merges the profiles.

Traits policy: only the traits named in ``TraitPolicy.keep`` are kept. Personal data
(``PII_TRAITS``: email, phone, name, address, ...) is dropped even when listed, unless
``allow_pii``; when kept and a pseudonymiser is given (``RTP_PSEUDONYMIZE``), the value is
replaced by its keyed hash, so raw PII is never stored.

>>> call = {"type": "identify", "messageId": "m1", "userId": "u1", "anonymousId": "a1",
...         "timestamp": 5, "traits": {"plan": "pro", "email": "x@example.com", "junk": 1}}
>>> link_of(call)
Link(anon_id='anon:a1', user_id='u1', ts=5, link_id='m1')
>>> kept_traits(call, TraitPolicy(keep=frozenset({"plan", "email"})))
{'plan': 'pro'}
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NamedTuple

import fastjsonschema

__all__ = [
    "PII_TRAITS",
    "Link",
    "Refusal",
    "TraitPolicy",
    "kept_traits",
    "link_of",
    "trait_policy",
]

_DIR: Final = Path(__file__).resolve().parent / "segment"

#: Anonymous profiles live in the user id space under this prefix (``profiles/core/stitch.py``
#: uses the same; a ``userId`` starting with it is refused).
ANON_PREFIX: Final = "anon:"

#: Traits that identify a person (Segment's reserved traits): never stored unless allowed.
PII_TRAITS: Final[frozenset[str]] = frozenset(
    {"email", "phone", "name", "firstName", "lastName", "address", "birthday", "username"}
)


class Refusal(NamedTuple):
    reason: str
    detail: str


class Link(NamedTuple):
    """An anonymous profile (``anon:<anonymousId>``) tied to a user."""

    anon_id: str
    user_id: str
    ts: int
    link_id: str  # the call's messageId: a redelivered call links identically


@dataclass(frozen=True, slots=True)
class TraitPolicy:
    keep: frozenset[str] = field(default_factory=frozenset)
    allow_pii: bool = False
    pseudonymize: Callable[[str], str] | None = None


def _validator(name: str) -> Callable[[Any], Any]:
    schema = json.loads((_DIR / f"{name}.schema.json").read_text("utf-8"))
    return fastjsonschema.compile(schema)


_VALIDATORS: Final = {kind: _validator(kind) for kind in ("identify", "alias")}


def _ts(call: dict[str, Any]) -> int | None:
    value: Any = call.get("timestamp", call.get("originalTimestamp"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value) if value >= 0 else None
    if type(value) is not str:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def link_of(call: dict[str, Any]) -> Link | Refusal:
    """The link an ``identify`` / ``alias`` call (or any call with both ids) makes."""
    kind = call.get("type")
    if kind in _VALIDATORS:
        try:
            _VALIDATORS[kind](call)
        except fastjsonschema.JsonSchemaException as exc:
            return Refusal("schema_violation", f"Segment {kind}: {exc}"[:300])
    user, anon = call.get("userId"), call.get("anonymousId")
    if kind == "alias":
        anon = call.get("previousId")  # alias: previousId (often the anonymousId) -> userId
    if not isinstance(user, str) or not user or not isinstance(anon, str) or not anon:
        return Refusal("no_link", "the call does not carry both a user id and an anonymous id")
    if user.startswith(ANON_PREFIX):
        return Refusal("schema_violation", f"userId must not start with {ANON_PREFIX!r}")
    ts = _ts(call)
    if ts is None:
        return Refusal("schema_violation", "timestamp is not ISO-8601 with a UTC offset")
    if anon == user:
        return Refusal("no_link", "previousId equals userId")
    return Link(ANON_PREFIX + anon, user, ts, str(call["messageId"]))


def kept_traits(call: dict[str, Any], policy: TraitPolicy) -> dict[str, Any]:
    """The declared attributes an ``identify`` leaves in the profile (scalars only)."""
    traits = call.get("traits")
    if type(traits) is not dict:
        return {}
    kept: dict[str, Any] = {}
    for name in sorted(policy.keep & traits.keys()):
        value = traits[name]
        if value is None or type(value) not in (str, int, float, bool):
            continue
        if name in PII_TRAITS:
            if not policy.allow_pii:
                continue
            if policy.pseudonymize is not None:
                value = policy.pseudonymize(str(value))
        kept[name] = value
    return kept


def trait_policy(
    keep: frozenset[str], allow_pii: bool, hasher: Callable[[str], str] | None
) -> TraitPolicy:
    """The policy of ``RTP_IDENTIFY_TRAITS`` / ``RTP_IDENTIFY_PII``; ``hasher`` when
    ``RTP_PSEUDONYMIZE`` is on (``profiles.core.privacy.KeyedHash(key, "identify-traits")``):
    kept personal traits are then stored as their keyed hash.

    >>> p = trait_policy(frozenset({"email"}), True, lambda v: "h:" + str(len(v)))
    >>> kept_traits({"traits": {"email": "a@b.c"}}, p)
    {'email': 'h:5'}
    """
    return TraitPolicy(keep=keep, allow_pii=allow_pii, pseudonymize=hasher)
