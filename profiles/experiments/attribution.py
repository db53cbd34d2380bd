"""Attribution of purchases and clicks to recommendations, on one user's experiment state.

The state (profile field ``xp``) keeps the user's arm, the lists recommended recently
(``[recommendation_id, event ts, [product ids]]``, kept for the attribution window in event
time) and marks of what was attributed (``[recommendation_id, product, event_id]``). Marks
live in the profile, so the user's versioned atomic write fences them with the profile.

Each counter contribution names the record's input offset, and the shared counter is fenced
by offset (``CountsAdd``): a redelivered record yields the same contributions again (its
mark names this very event) and the fence drops them, so each counts exactly once.

>>> s = new_state("x", "treatment", "e0")
>>> remember(s, "u:3:recs", 1000, ["tea", "cup"], window_ms=10_000)
>>> buy = {"type": "purchase", "event_id": "e1", "ts": 2000, "items": [{"product_id": "tea"}]}
>>> sorted(attribute(s, buy, window_ms=10_000))
['conversions', 'converted']
>>> attribute(s, {**buy, "event_id": "e2"}, window_ms=10_000)  # same (rec, item): once
[]
>>> attribute(s, buy, window_ms=10_000)  # redelivered: same contributions, the fence drops
['conversions', 'converted']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schemas.kinds import product_lines

#: Recommendation lists kept per user (the newest); older ones fall out of attribution.
MAX_LISTS = 20


def new_state(experiment: str, arm: str, born: str) -> dict[str, Any]:
    """A user's fresh experiment state; ``born`` is the event that assigned them."""
    return {"x": experiment, "arm": arm, "born": born, "first": None, "recs": [], "marks": []}


def remember(
    state: dict[str, Any], rec_id: str, ts: int, products: Sequence[str], window_ms: int
) -> None:
    """Keep a list recommended at event time ``ts``; drop lists (and their marks) older than
    the window as of ``ts``."""
    recs = [r for r in state["recs"] if r[0] != rec_id and r[1] >= ts - window_ms]
    recs.append([rec_id, int(ts), list(products)])
    recs = recs[-MAX_LISTS:]
    kept = {r[0] for r in recs}
    state["recs"] = recs
    state["marks"] = [m for m in state["marks"] if m[1] in kept]


def _mark(state: dict[str, Any], kind: str, rec_id: str, pid: str, event_id: str) -> bool | None:
    """True: newly marked; False: marked by this same event (a redelivery); None: marked by
    another event already (nothing to count)."""
    for k, r, p, e in state["marks"]:
        if k == kind and r == rec_id and p == pid:
            return False if e == event_id else None
    state["marks"].append([kind, rec_id, pid, event_id])
    return True


def _recent(state: Mapping[str, Any], pid: str, ts: int, window_ms: int) -> str | None:
    """The newest list shown strictly before ``ts`` (within the window) naming ``pid``."""
    for rec_id, at, products in reversed(state["recs"]):
        if at < ts <= at + window_ms and pid in products:
            return str(rec_id)
    return None


def attribute(
    state: dict[str, Any],
    event: Mapping[str, Any],
    window_ms: int,
    fresh: list[str] | None = None,
) -> list[str]:
    """The counters ``event`` adds to (``conversions``, ``converted``, ``clicks``), marking
    the state; called in offset order for every counted record, redelivered ones too.
    ``fresh`` gets those marked just now (not a redelivery's repeats: for metrics)."""
    new = [] if fresh is None else fresh
    kind = event["type"]
    event_id = str(event["event_id"])
    ts = int(event["ts"])
    out: list[str] = []
    if kind == "purchase":
        for line in product_lines(event):
            pid = line["product_id"]
            rec_id = _recent(state, pid, ts, window_ms)
            if rec_id is None:
                continue
            marked = _mark(state, "c", rec_id, pid, event_id)
            if marked is not None:
                out.append("conversions")
            if marked:
                new.append("conversions")
        if out and state["first"] is None:
            state["first"] = event_id
            new.append("converted")
        if state["first"] == event_id and "conversions" in out:
            out.append("converted")
    elif kind == "click" and event.get("recommendation_id"):
        rec_id = str(event["recommendation_id"])
        pid = event["product_id"]
        shown = any(r[0] == rec_id and pid in r[2] for r in state["recs"])
        marked = _mark(state, "k", rec_id, pid, event_id) if shown else None
        if marked is not None:
            out.append("clicks")
        if marked:
            new.append("clicks")
    return out
