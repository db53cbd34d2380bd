"""A user's current session as the pair counter sees it, and the pairs an event adds.

A *transaction* is one user's session: the events sharing a ``session_id``, or, for events
without one, events less than ``gap_ms`` apart. Items bought in it (every line of every order
of the session, so one order's items pair with each other) form its basket; items clicked or
added to the cart form its views. The state is kept in the profile (field ``tg``): the
session's key and time span, and its first ``max_items`` distinct items of each kind with the
event that added them. Later items of a full session are ignored, so a huge basket adds at most
``max_items * (max_items - 1) / 2`` pairs.

An event adds, for each new item ``x`` of kind ``k``: ``x`` counted once in the session
(the item's marginal), the pair with every item of kind ``k`` the session held before (both
directions), and, for the session's first item of a kind, one new transaction. Those
contributions are a function of the stored state and the event id alone
(:func:`contributions`), so a redelivered event, already in the state, yields the same ones and
the store's offset fences drop them.

Events of an older session arriving late (a different ``session_id`` with an earlier time)
pair with nothing: the state follows the newest session only.

>>> cfg = SessionConfig(max_items=3, gap_ms=1000)
>>> s = learn(None, {"event_id": "e1", "type": "purchase", "session_id": "s1",
...                  "items": [{"product_id": "a"}, {"product_id": "b"}]}, 0, cfg)
>>> contributions(s, "e1")
[('', 'b', 1.0), ('a', 'b', 1.0), ('b', 'b', 1.0), ('b', 'b:a', 1.0), ('a', 'b:b', 1.0)]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.kinds import product_lines

__all__ = ["BOUGHT", "KINDS", "VIEWED", "SessionConfig", "contributions", "kind_of", "learn"]

BOUGHT, VIEWED = "b", "v"
KINDS = (BOUGHT, VIEWED)
_VIEW_TYPES = frozenset({"click", "add_to_cart"})

#: (item, or "" for the transaction count; counted field; weight). Field "b"/"v" is the item's
#: marginal (or, for "", one transaction); "b:<other>"/"v:<other>" the pair with ``other``.
Contribution = tuple[str, str, float]


@dataclass(frozen=True)
class SessionConfig:
    max_items: int = 20
    gap_ms: int = 1_800_000
    views: bool = True  # count co-views too (nearly all of the cost: views outnumber orders)

    def __post_init__(self) -> None:
        if self.max_items < 2 or self.gap_ms < 1:
            raise ValueError("max_items must be >= 2, gap_ms >= 1")


def kind_of(event: Mapping[str, Any]) -> str | None:
    """``"b"`` for a purchase, ``"v"`` for a view (click, add to cart), else None."""
    kind = event.get("type")
    if kind == "purchase":
        return BOUGHT
    return VIEWED if kind in _VIEW_TYPES else None


def learn(
    state: dict[str, Any] | None, event: Mapping[str, Any], ts: int, cfg: SessionConfig
) -> dict[str, Any] | None:
    """The session state after ``event`` (applied once, in arrival order)."""
    kind = kind_of(event)
    if kind is None or (kind == VIEWED and not cfg.views):
        return state
    sid = event.get("session_id")
    if state is not None and _joins(state, sid, ts, cfg.gap_ms):
        state["t0"], state["t1"] = min(state["t0"], ts), max(state["t1"], ts)
    elif state is None or ts >= state["t1"]:
        state = {"s": sid, "t0": ts, "t1": ts, "e": []}
    else:
        return state  # a late event of an older session
    entries: list[list[str]] = state["e"]
    have = {(pid, k) for pid, k, _ in entries}
    room = cfg.max_items - sum(1 for _, k, _ in entries if k == kind)
    for line in product_lines(dict(event)):
        pid = line["product_id"]
        if room <= 0:
            break
        if (pid, kind) not in have:
            entries.append([pid, kind, event["event_id"]])
            have.add((pid, kind))
            room -= 1
    return state


def _joins(state: Mapping[str, Any], sid: object, ts: int, gap_ms: int) -> bool:
    if sid is not None or state["s"] is not None:
        return bool(sid == state["s"])
    return bool(state["t0"] - gap_ms <= ts <= state["t1"] + gap_ms)


def contributions(state: Mapping[str, Any] | None, event_id: str) -> list[Contribution]:
    """What the event ``event_id`` added to the session's counts (see the module docstring)."""
    if state is None:
        return []
    out: list[Contribution] = []
    before: dict[str, list[str]] = {BOUGHT: [], VIEWED: []}
    for pid, kind, origin in state["e"]:
        prior = before[kind]
        if origin == event_id:
            if not prior:
                out.append(("", kind, 1.0))
            out.append((pid, kind, 1.0))
            for other in prior:
                out.append((pid, f"{kind}:{other}", 1.0))
                out.append((other, f"{kind}:{pid}", 1.0))
        prior.append(pid)
    return out
