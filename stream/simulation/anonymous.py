"""Anonymous sessions that log in, layered over the generator's traffic (off unless asked).

:func:`with_logins` rewrites a share of sessions so the visitor browses anonymously and logs
in at their first cart add (or not at all, browsing only): the events before the login carry
the anonymous profile id ``anon:<anonymous id>`` as ``user_id``, and at the login an
``identify`` link record ``{"type": "identify", "user_id", "anonymous_id", ...}`` is
inserted, the form the Segment rendering turns into an ``identify`` call (and the anonymous
events into calls with only an ``anonymousId``). The choice is a hash of the session id, so
the same traffic and share give the same result, and share 0 returns the events unchanged
(the generator's own tests stay as they are).

>>> evs = [{"event_id": f"e{i}", "type": t, "user_id": "u1", "ts": i, "session_id": "s1"}
...        for i, t in enumerate(["click", "click", "add_to_cart", "purchase"])]
>>> out = list(with_logins(evs, share=1.0))
>>> [(e["type"], e["user_id"]) for e in out]  # doctest: +NORMALIZE_WHITESPACE +ELLIPSIS
[('click', 'anon:v-...'), ('click', 'anon:v-...'), ('identify', 'u1'),
 ('add_to_cart', 'u1'), ('purchase', 'u1')]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

from profiles.core.stitch import anon_user_id

__all__ = ["LOGIN_KINDS", "anonymous_id", "with_logins"]

#: A visitor logs in before their first event of these kinds (a cart needs an account here).
LOGIN_KINDS = frozenset({"add_to_cart", "purchase", "review"})


def _unit(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def anonymous_id(session_id: str) -> str:
    """The anonymous (device) id of a session: stable, not derived from the user id alone."""
    return "v-" + hashlib.sha256(f"anon\x00{session_id}".encode()).hexdigest()[:16]


def with_logins(events: Iterable[dict[str, Any]], share: float) -> Iterator[dict[str, Any]]:
    """``events`` (time-ordered) with ``share`` of their sessions anonymous until a login."""
    if not 0.0 <= share <= 1.0:
        raise ValueError("share must be in [0, 1]")
    logged_in: set[str] = set()
    for event in events:
        sid = event.get("session_id")
        user = event.get("user_id")
        if share == 0.0 or not sid or not user or sid in logged_in or _unit(sid) >= share:
            yield event
            continue
        if event["type"] not in LOGIN_KINDS:
            if event["type"] == "user_erasure":
                yield event
            else:  # browsing before the login: the anonymous profile's
                yield {**event, "user_id": anon_user_id(anonymous_id(sid))}
            continue
        logged_in.add(sid)
        yield {
            "event_id": f"login-{sid}",
            "type": "identify",
            "schema_version": 1,
            "user_id": user,
            "anonymous_id": anonymous_id(sid),
            "ts": event["ts"],
            "session_id": sid,
        }
        yield event
