"""Anonymous sessions that log in: the traffic, and stitching it back gives the same profiles."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pytest

from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record, apply
from profiles.core.stitch import is_anonymous
from stream.simulation.anonymous import with_logins
from stream.simulation.generator import TrafficConfig, TrafficGenerator
from tests.integration.oracle import behaviour, expected_stitched

CONFIG = ProfileConfig()
SMALL = TrafficConfig(seed=5, users=40, products=120)


def traffic() -> list[dict[str, Any]]:
    return list(TrafficGenerator(SMALL).history(10))


def tagger(event: dict[str, Any]) -> list[tuple[str, float]]:
    return [(c, 1.0) for c in event.get("category", [])]


def test_share_zero_leaves_the_traffic_unchanged() -> None:
    events = traffic()
    assert list(with_logins(events, 0.0)) == events
    with pytest.raises(ValueError, match="share"):
        list(with_logins(events, 1.5))


def test_sessions_browse_anonymously_then_log_in_once() -> None:
    events = traffic()
    out = list(with_logins(events, 0.5))
    assert out == list(with_logins(events, 0.5))  # deterministic
    logins = [e for e in out if e["type"] == "identify"]
    assert logins and len({e["session_id"] for e in logins}) == len(logins)
    anon = [e for e in out if is_anonymous(e["user_id"])]
    assert anon and all(e["type"] not in ("add_to_cart", "purchase") for e in anon)
    assert len(out) == len(events) + len(logins)
    for login in logins:  # nothing of the session is anonymous after its login
        later = [e for e in out if e.get("session_id") == login["session_id"]]
        after = later[later.index(login) + 1 :]
        assert all(e["user_id"] == login["user_id"] for e in after)


def by_owner(events: list[dict[str, Any]]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = defaultdict(list)
    for offset, event in enumerate(events):
        if event["type"] in ("identify", "product", "user_erasure"):
            continue
        out[event["user_id"]].append(Record(InputPartition("site-events", 0), offset, event))
    return out


def test_stitching_the_anonymous_traffic_gives_the_logged_in_profiles() -> None:
    events = [e for e in traffic() if e["type"] != "user_erasure"]
    out = list(with_logins(events, 0.6))
    links = {f"anon:{e['anonymous_id']}": e["user_id"] for e in out if e["type"] == "identify"}
    # What each user did in the sessions that ended logged in (or were never anonymous).
    unlinked = {e["session_id"] for e in out if is_anonymous(e["user_id"])}
    unlinked -= {e["session_id"] for e in out if e["type"] == "identify"}
    plain: dict[str, Profile] = {}
    kept = [e for e in events if e.get("session_id") not in unlinked]
    for user, records in by_owner(kept).items():
        plain[user] = Profile(user)
        apply(plain[user], records, CONFIG, tagger)
    assert unlinked and links
    stitched = expected_stitched(by_owner(out), links, CONFIG, tagger)
    # Sessions that never log in stay anonymous; every other user matches its plain profile.
    for user, profile in stitched.items():
        if is_anonymous(user):
            continue
        mine, want = behaviour(profile, CONFIG), behaviour(plain[user], CONFIG)
        mine_tags, want_tags = mine.pop("tags"), want.pop("tags")
        mine.pop("merged")
        want.pop("merged")
        assert mine == want, user
        assert mine_tags.keys() == want_tags.keys(), user
        for tag, score in want_tags.items():
            assert math.isclose(mine_tags[tag], score, abs_tol=2e-6), (user, tag)
