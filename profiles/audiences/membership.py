"""Which audiences a profile is in, what changed, and what the indexes must say.

One function decides for both paths: the batch path (as of the user's latest event) and the
sweep (as of the sweep's time). The state lives in the profile hash (field ``au``) under the
profile's version check, so a redelivered batch, fenced, decides nothing again; the member
sets and the due index follow it with idempotent operations.

State (``profile.parts["audiences"]``): ``m`` audience -> the definitions version the user
entered under, ``n`` changes announced so far (names the events), ``due`` the next time a
membership may change with time alone, ``at`` the time it was decided as of, ``v`` the
definitions version, ``consent`` / ``language`` ``[event time, value]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profiles.audiences.definitions import AudienceBook, opted_out
from profiles.audiences.fields import state
from profiles.core import indexes
from profiles.core.ownership import owner
from profiles.core.profile import Profile
from profiles.pipeline.feature import IndexOp, ScoreRemove, ScoreSet, SetAdd, SetRemove


@dataclass(frozen=True, slots=True)
class AudienceChange:
    """A user entered or left an audience (values copied: the profile moves on)."""

    user_id: str
    audience: str
    change: str  # entered | left
    version: int  # the definitions version that decided it
    members: tuple[str, ...]  # every audience the user is in after it
    seq: int
    as_of: int
    profile_version: int


def audience_event(change: AudienceChange, now_ms: int) -> dict[str, Any]:
    """The ``audience_changed`` event. The id counts the user's changes and names the change,
    so a redelivery or a repeated sweep re-sends the same id, and a different change never
    shares one."""
    return {
        "type": "audience_changed",
        "schema_version": 1,
        "event_id": f"{change.user_id}:aud:{change.seq}:{change.audience}:{change.change}",
        "user_id": change.user_id,
        "audience": change.audience,
        "change": change.change,
        "version": change.version,
        "audiences": list(change.members),
        "as_of": change.as_of,
        "profile_version": change.profile_version,
        "processed_at": now_ms,
    }


def decide(
    book: AudienceBook, profile: Profile, as_of: int, partitions: int
) -> tuple[list[AudienceChange], list[IndexOp]]:
    """Re-evaluate ``profile`` at ``as_of``: store the new state on it and return the
    changes and the index operations. Current members are re-added every time (idempotent),
    so an index left wrong by a race is put right by the user's next decision.

    Decisions never go back in time: a clock behind the user's latest event, or behind the
    last decision (a worker that restarted with no event-time watermark yet), decides as of
    the later of the two, so it cannot undo what a later sweep decided."""
    defs = book.current
    st = dict(state(profile))
    if not defs.audiences and not st.get("m") and st.get("due") is None:
        return [], []  # nothing defined, nothing to undo: no state written
    as_of = max(as_of, profile.last_ts or 0, int(st.get("at", 0)))
    first = "v" not in st
    before: dict[str, int] = dict(st.get("m") or {})
    now = defs.evaluate(profile, as_of, book.require_consent, book.exclude_flagged)
    members = {name: before.get(name, defs.version) for name in sorted(now)}
    seq = int(st.get("n", 0))
    changes: list[AudienceChange] = []
    listed = tuple(members)
    for name, change in [(n, "left") for n in sorted(set(before) - now)] + [
        (n, "entered") for n in sorted(now - set(before))
    ]:
        seq += 1
        changes.append(
            AudienceChange(
                profile.user_id, name, change, defs.version, listed, seq, as_of, profile.version
            )
        )
    # Nothing changes with time alone for an opted-out user: only a new consent does.
    due = (
        None
        if opted_out(profile, book.require_consent)
        else defs.next_change(profile, as_of, book.exclude_flagged)
    )
    st.update(m=members, n=seq, due=due, v=defs.version, at=as_of)
    profile.parts["audiences"] = st
    uid = profile.user_id
    partition = owner(uid, partitions)
    ops: list[IndexOp] = [SetRemove(indexes.audience_members(n), uid) for n in set(before) - now]
    ops += [SetAdd(indexes.audience_members(n), uid) for n in members]
    if first:  # the first decision: join the partition's population
        ops.append(SetAdd(indexes.audience_users(partition), uid))
    due_index = indexes.audience_due(partition)
    ops.append(ScoreRemove(due_index, uid) if due is None else ScoreSet(due_index, uid, due))
    return changes, ops


def implied(profile: Profile, partitions: int) -> list[SetAdd | ScoreSet]:
    """The index entries the stored state implies."""
    st = state(profile)
    uid = profile.user_id
    out: list[SetAdd | ScoreSet] = [
        SetAdd(indexes.audience_members(n), uid) for n in st.get("m") or {}
    ]
    if "v" in st:
        out.append(SetAdd(indexes.audience_users(owner(uid, partitions)), uid))
    if st.get("due") is not None:
        out.append(ScoreSet(indexes.audience_due(owner(uid, partitions)), uid, int(st["due"])))
    return out


def removals(profile: Profile, partitions: int) -> list[IndexOp]:
    """Every index entry of ``profile`` out (an erasure)."""
    uid = profile.user_id
    ops: list[IndexOp] = [
        SetRemove(indexes.audience_members(n), uid) for n in state(profile).get("m") or {}
    ]
    partition = owner(uid, partitions)
    ops += [
        ScoreRemove(indexes.audience_due(partition), uid),
        SetRemove(indexes.audience_users(partition), uid),
    ]
    return ops
