"""Keyed hashes, erasure-marker slots, pseudonymisation at ingestion, the privacy settings."""

from __future__ import annotations

import hashlib
import random
import string

import orjson
import pytest
from redis.crc import key_slot

from profiles.core.ownership import owner
from profiles.core.privacy import (
    HEX_CHARS,
    USER_PLACEHOLDER,
    KeyedHash,
    Pseudonymizer,
    pseudonymizer,
    stored_receipt,
)
from profiles.redis import keys, slots
from schemas.validate import Limits
from stream.settings import Settings, SettingsError, settings_table
from stream.worker.ingest import Inbound, route, unpack

SECRET = "0123456789abcdef-test-secret"
NOW_MS = 1_767_225_600_000


def reference_crc16(data: bytes) -> int:
    """CRC16-XMODEM bit by bit (polynomial 0x1021, initial 0), as in Redis' crc16.c."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def reference_slot(key: bytes) -> int:
    """Redis' keyHashSlot (cluster_legacy.c): hash the first non-empty {...} tag, if any."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end != -1 and end != start + 1:
            key = key[start + 1 : end]
    return reference_crc16(key) & 0x3FFF


def random_ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "-_:.@{}/ 用户名é"
    out = [f"u{i:06d}" for i in range(n // 2)]
    out += ["".join(rng.choices(alphabet, k=rng.randint(1, 40))) for _ in range(n - len(out))]
    out += ["{", "}", "{}", "a}b", "x{y}z", "{}{tag}"]  # hash-tag corner cases
    return out


def test_reference_crc16_matches_the_cluster_spec_check_value() -> None:
    # The Redis Cluster spec: "the output of CRC16 for the string 123456789 is 0x31C3".
    assert reference_crc16(b"123456789") == 0x31C3
    assert key_slot(b"123456789") == 0x31C3 % 16384


def test_every_slot_has_a_short_tag_and_the_table_never_changes() -> None:
    tags = slots._tags()
    assert len(tags) == slots.SLOTS and len(set(tags)) == slots.SLOTS
    assert all(1 <= len(t) <= 3 and set(t) <= set(slots.ALPHABET) for t in tags)
    assert all(reference_slot(t.encode()) == slot for slot, t in enumerate(tags))
    # Shortest first: no shorter string of the alphabet lands in a slot that got a longer tag.
    shorter = {reference_slot(c.encode()): c for c in slots.ALPHABET}
    assert all(len(tags[s]) == 1 for s in shorter)
    # Pinned: another table would rename every stored erasure marker (they would be lost).
    digest = hashlib.sha256("\n".join(tags).encode()).hexdigest()
    assert digest == "b996b8af018600ab723626508d622ecccf5e83cc1f38e8497b250f165219a53a"


def test_marker_and_profile_keys_share_a_slot_without_naming_the_user() -> None:
    marker = KeyedHash(SECRET, "erasure-marker")
    for uid in random_ids(4000, seed=1):
        profile_key, marker_key = keys.profile(uid), keys.erased(uid, marker(uid))
        assert key_slot(marker_key.encode()) == key_slot(profile_key.encode())
        assert reference_slot(marker_key.encode()) == reference_slot(profile_key.encode())
        assert reference_slot(profile_key.encode()) == slots.slot_of(profile_key)
        # Erasure deletes all these keys in one script: they must share the profile's slot.
        assert {reference_slot(k.encode()) for k in keys.user_keys(uid)} == {
            slots.slot_of(profile_key)
        }
        if not uid.startswith("}"):  # then the old marker was in the profile's slot: deleted
            assert keys.legacy_erased(uid) in keys.user_keys(uid)
        name = marker_key.removeprefix("rtp:x:")
        assert uid not in name or len(uid) <= 3  # a 1-3 character id may occur by chance
        assert name.endswith(":" + marker(uid)) and len(marker(uid)) == HEX_CHARS


def test_keyed_hashes_are_stable_keyed_and_separated_by_purpose() -> None:
    a, again = KeyedHash(SECRET, "pseudonym"), KeyedHash(SECRET.encode(), "pseudonym")
    other_key = KeyedHash(SECRET + "x", "pseudonym")
    other_purpose = KeyedHash(SECRET, "erasure-marker")
    ids = random_ids(500, seed=2)
    assert [a(u) for u in ids] == [again(u) for u in ids]
    assert len({a(u) for u in ids}) == len(set(ids))
    assert all(a(u) != other_key(u) and a(u) != other_purpose(u) for u in ids)
    assert all(len(a(u)) == HEX_CHARS and set(a(u)) <= set("0123456789abcdef") for u in ids)
    # Known answer: the derivation is part of the stored data (pseudonyms, marker names).
    fixed = "0123456789abcdef"
    assert KeyedHash(fixed, "pseudonym")("u000880") == "e2a84ddaa67169de62221caa9f95c65f"
    assert KeyedHash(fixed, "erasure-marker")("u000880") == "294a2355bd09fb859fb9dbef4cc09e9a"
    assert KeyedHash(fixed, "pseudonym", cache=0)("u000880") == "e2a84ddaa67169de62221caa9f95c65f"
    with pytest.raises(ValueError):
        KeyedHash("", "pseudonym")


def test_pseudonymizer_replaces_user_ids_and_event_ids_that_contain_them() -> None:
    p = Pseudonymizer(SECRET)
    event = {"event_id": "erin-17", "type": "click", "user_id": "erin", "product_id": "p1"}
    p.event(event)
    assert event["user_id"] == p("erin") != "erin"
    assert "erin" not in event["event_id"] and len(event["event_id"]) == HEX_CHARS
    # The same event again (a producer retry) gets the same ids: dedup still works.
    retry = {"event_id": "erin-17", "type": "click", "user_id": "erin", "product_id": "p1"}
    p.event(retry)
    assert retry == event
    plain = {"event_id": "e-9", "type": "search", "user_id": "erin", "query": "tea"}
    p.event(plain)
    assert plain["event_id"] == "e-9" and plain["user_id"] == p("erin")
    assert pseudonymizer(False, SECRET) is None
    enabled = pseudonymizer(True, SECRET)
    assert enabled is not None and enabled("erin") == p("erin")


def _inbound(events: list[dict[str, object]]) -> list[Inbound]:
    return [Inbound("site-events", 0, i, None, orjson.dumps(e)) for i, e in enumerate(events)]


def test_routing_pseudonymises_user_events_before_ownership() -> None:
    p = Pseudonymizer(SECRET)
    base = {"schema_version": 1, "ts": NOW_MS - 1000}
    events: list[dict[str, object]] = [
        {**base, "event_id": "c1", "type": "click", "user_id": "clear-ann", "product_id": "p1"},
        {**base, "event_id": "clear-ann-2", "type": "search", "user_id": "clear-ann", "query": "x"},
        {
            **base,
            "event_id": "x1",
            "type": "user_erasure",
            "user_id": "clear-ann",
            "requested_by": "privacy-desk",
        },
        {
            **base,
            "event_id": "i1",
            "type": "product",
            "user_id": "catalog-publisher",
            "product_id": "p1",
            "title": "Tea",
            "category": ["Food"],
            "price": 1.0,
            "currency": "CNY",
        },
    ]
    partitions = 8
    routed = route(_inbound(events), Limits(), partitions, NOW_MS, p)
    assert routed.events == 4 and not routed.dead
    by_type = {}
    for partition, bundles in routed.bundles.items():
        for bundle in bundles:
            assert b"clear-ann" not in bundle
            for record in unpack(bundle):
                by_type[record.event["type"]] = (partition, record.event)
                key = record.event["product_id" if record.event["type"] == "product" else "user_id"]
                assert partition == owner(key, partitions)
    for kind in ("click", "search", "user_erasure"):
        assert by_type[kind][1]["user_id"] == p("clear-ann")
    assert by_type["product"][1]["user_id"] == "catalog-publisher"  # the publisher, untouched
    assert by_type["click"][1]["event_id"] == "c1"
    # Off (the default): ids pass through unchanged.
    plain = route(_inbound(events), Limits(), partitions, NOW_MS)
    assert any(b"clear-ann" in b for bundles in plain.bundles.values() for b in bundles)


def test_receipts_name_the_user_by_its_hash_only() -> None:
    receipt = {
        "user_id": "erin",
        "requested_by": "erin@example.com",
        "reason": "asked by erin",
        "event_id": "erin-2",
        "requested_ts": NOW_MS,
        "source": "site-events:0@7",
    }
    stored = stored_receipt(receipt, "erin", "h" * HEX_CHARS)
    assert "erin" not in orjson.dumps(stored).decode()
    assert stored["user_hash"] == "h" * HEX_CHARS and "user_id" not in stored
    assert stored["requested_by"] == f"{USER_PLACEHOLDER}@example.com"
    assert stored["requested_ts"] == NOW_MS and stored["source"] == "site-events:0@7"


def test_pseudonymisation_settings_are_validated() -> None:
    assert Settings.from_env({}).privacy.pseudonymize is False
    with pytest.raises(SettingsError, match="RTP_PSEUDONYMIZE=true needs RTP_PSEUDONYM_KEY"):
        Settings.from_env({"RTP_PSEUDONYMIZE": "true"})
    with pytest.raises(SettingsError, match="RTP_PSEUDONYM_KEY") as short:
        Settings.from_env({"RTP_PSEUDONYMIZE": "true", "RTP_PSEUDONYM_KEY": "short-key"})
    assert "short-key" not in str(short.value)  # a secret is never echoed
    ok = Settings.from_env({"RTP_PSEUDONYMIZE": "yes", "RTP_PSEUDONYM_KEY": SECRET})
    assert ok.privacy.pseudonymize and ok.privacy.key == SECRET
    assert SECRET not in repr(ok)
    # A key without pseudonymisation: only the erasure markers use it.
    markers_only = Settings.from_env({"RTP_PSEUDONYM_KEY": SECRET})
    assert not markers_only.privacy.pseudonymize
    table = settings_table()
    assert "| `RTP_PSEUDONYMIZE` | `False` |" in table and "`RTP_PSEUDONYM_KEY`" in table
