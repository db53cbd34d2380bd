"""Ingest splits links (identify / alias, calls with both ids) into the handover's records."""

from __future__ import annotations

import orjson

from profiles.core.ownership import owner
from profiles.core.privacy import Pseudonymizer
from profiles.core.profile import Record
from schemas.segment_identity import TraitPolicy
from schemas.validate import Limits
from stream.worker.ingest import Inbound, route, unpack

NOW_MS = 1_767_225_600_000
TS = "2026-01-01T00:00:00Z"
PARTS = 8


def _route(calls: list[dict[str, object]], **kwargs: object) -> list[tuple[int, Record]]:
    messages = [Inbound("site-events", 0, i, None, orjson.dumps(c)) for i, c in enumerate(calls)]
    routed = route(messages, Limits(), PARTS, NOW_MS, **kwargs)  # type: ignore[arg-type]
    assert not routed.dead, routed.dead
    return [(p, r) for p, bs in routed.bundles.items() for b in bs for r in unpack(b)]


def _track(**ids: object) -> dict[str, object]:
    return {"type": "track", "event": "Product Viewed", "messageId": "m1", "timestamp": TS,
            "properties": {"product_id": "p1"}, **ids}  # fmt: skip


def test_anonymous_calls_are_the_anonymous_profiles_events() -> None:
    ((partition, record),) = _route([_track(anonymousId="a1")])
    assert record.event["user_id"] == "anon:a1" and partition == owner("anon:a1", PARTS)


def test_a_call_with_both_ids_is_the_users_event_and_a_seal_to_the_anonymous_owner() -> None:
    out = _route([_track(userId="u1", anonymousId="a1")])
    by_type = {r.event["type"]: (p, r) for p, r in out}
    assert set(by_type) == {"click", "seal"}
    p, click = by_type["click"]
    assert p == owner("u1", PARTS) and "anonymous_id" not in click.event
    p, seal = by_type["seal"]
    assert p == owner("anon:a1", PARTS) and (seal.event["user_id"], seal.event["into"]) == (
        "anon:a1", "u1")  # fmt: skip
    assert seal.offset == click.offset == 0
    many = _route([{**_track(userId="u1", anonymousId="a1"), "messageId": f"m{i}"} for i in "123"])
    assert [(r.event["type"], r.offset) for _, r in many if r.event["type"] == "seal"] == [
        ("seal", 0)]  # fmt: skip


def test_identify_seals_and_keeps_only_the_allowed_traits() -> None:
    identify = {"type": "identify", "messageId": "m2", "userId": "u1", "anonymousId": "a1",
                "timestamp": TS, "traits": {"plan": "pro", "email": "x@example.com"}}  # fmt: skip
    policy = TraitPolicy(keep=frozenset({"plan", "email"}))
    out = {r.event["type"]: (p, r.event) for p, r in _route([identify], traits=policy)}
    assert set(out) == {"seal", "traits"}
    assert out["traits"] == (owner("u1", PARTS), {**out["traits"][1], "traits": {"plan": "pro"}})
    assert b"example.com" not in orjson.dumps(out)  # personal data is never routed
    assert {r.event["type"] for _, r in _route([identify])} == {"seal"}  # no policy: no traits
    alone = {k: v for k, v in identify.items() if k != "anonymousId"}
    assert _route([alone]) == []  # nothing to link, no trait kept


def test_pseudonymised_links_name_both_profiles_by_their_hash() -> None:
    p = Pseudonymizer("k" * 32)
    out = _route([_track(userId="u1", anonymousId="a1")], pseudonyms=p)
    (seal,) = [r.event for _, r in out if r.event["type"] == "seal"]
    assert (seal["user_id"], seal["into"]) == (p("anon:a1"), p("u1"))


def test_handover_fields_are_never_taken_from_input() -> None:
    click = {"event_id": "e1", "type": "click", "schema_version": 1, "user_id": "u1"}
    ((_, record),) = _route([{**click, "ts": NOW_MS, "product_id": "p", "via": "anon:x"}])
    assert "via" not in record.event
