"""Segment identify / alias: the links they make and the traits an identify may keep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from profiles.core.privacy import KeyedHash
from schemas.segment_identity import PII_TRAITS, Link, Refusal, TraitPolicy, kept_traits, link_of

EXAMPLES = sorted(
    (Path(__file__).resolve().parents[3] / "schemas" / "examples" / "segment_identity").glob(
        "*.json"
    )
)
VALID = [p for p in EXAMPLES if not p.name.startswith("invalid_")]
INVALID = [p for p in EXAMPLES if p.name.startswith("invalid_")]


def test_there_are_valid_and_invalid_examples() -> None:
    assert len(VALID) >= 2 and len(INVALID) >= 3


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example_links(path: Path) -> None:
    example = json.loads(path.read_text("utf-8"))
    assert link_of(example["raw"]) == Link(**example["expect"])


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_is_refused(path: Path) -> None:
    example = json.loads(path.read_text("utf-8"))
    result = link_of(example["raw"])
    assert isinstance(result, Refusal)
    assert result.reason == example["reason"], result.detail


def test_any_call_with_both_ids_links_and_one_id_does_not() -> None:
    call: dict[str, Any] = {"type": "track", "event": "Product Viewed", "messageId": "m"}
    call |= {"userId": "u", "anonymousId": "a", "timestamp": "2024-05-01T10:00:00+02:00"}
    assert link_of(call) == Link("anon:a", "u", 1_714_550_400_000, "m")
    for missing in ("userId", "anonymousId"):
        assert isinstance(link_of({**call, missing: None}), Refusal)
    assert isinstance(link_of({**call, "timestamp": "2024-05-01T10:00:00"}), Refusal)
    assert isinstance(link_of({k: v for k, v in call.items() if k != "timestamp"}), Refusal)


def test_only_declared_traits_are_kept_and_pii_is_dropped_by_default() -> None:
    traits = {"plan": "pro", "email": "jo@example.com", "phone": "+49 1", "age": 40, "nest": {}}
    call = {"type": "identify", "traits": traits}
    policy = TraitPolicy(keep=frozenset({"plan", "email", "phone", "nest", "absent"}))
    assert kept_traits(call, policy) == {"plan": "pro"}
    assert kept_traits({"type": "identify", "traits": "x"}, policy) == {}


def test_pii_kept_only_when_allowed_and_pseudonymised_when_on() -> None:
    call = {"type": "identify", "traits": {"email": "jo@example.com", "plan": "pro"}}
    keep = frozenset({"email", "plan"})
    allowed = kept_traits(call, TraitPolicy(keep=keep, allow_pii=True))
    assert allowed == {"email": "jo@example.com", "plan": "pro"}
    hasher = KeyedHash("secret-for-tests", "traits")
    hashed = kept_traits(call, TraitPolicy(keep=keep, allow_pii=True, pseudonymize=hasher))
    assert hashed["plan"] == "pro"
    assert hashed["email"] == hasher("jo@example.com") != "jo@example.com"
    assert "jo@example.com" not in json.dumps(hashed)


def test_reserved_personal_traits_are_pii() -> None:
    assert {"email", "phone", "name", "address"} <= PII_TRAITS


def test_the_policy_from_the_settings() -> None:
    from schemas.segment_identity import trait_policy
    from stream.settings import Settings

    settings = Settings().replace("privacy", identify_traits=" plan, email ,")
    privacy = settings.privacy
    assert privacy.kept_traits == {"plan", "email"}
    call = {"traits": {"plan": "pro", "email": "jo@example.com"}}
    policy = trait_policy(privacy.kept_traits, privacy.identify_pii, None)
    assert kept_traits(call, policy) == {"plan": "pro"}
    hasher = KeyedHash("k" * 32, "identify-traits")
    hashed = kept_traits(call, trait_policy(privacy.kept_traits, True, hasher))
    assert hashed["email"] == hasher("jo@example.com") != "jo@example.com"
