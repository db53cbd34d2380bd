"""Money that passes the schema never breaks the arithmetic; money beyond it is refused."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import MAX_SUM, Profile, Record, apply
from schemas.validate import MAX_AMOUNT, MAX_PRICE, Limits, Rejected, decode, load_schema

NOW = 1_767_225_600_000


def purchase(n: int, amount: Any, price: Any = 1.0, quantity: int = 1) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "type": "purchase",
        "schema_version": 1,
        "user_id": "u",
        "ts": NOW - 1000 + n,
        "order_id": f"o{n}",
        "items": [{"product_id": "p", "quantity": quantity, "price": price}],
        "amount": amount,
        "currency": "USD",
    }


def reason(event: dict[str, Any]) -> str | None:
    got = decode(orjson.dumps(event), Limits(), NOW)
    return got.reason if isinstance(got, Rejected) else None


def test_schemas_carry_the_documented_bounds() -> None:
    assert load_schema("purchase")["properties"]["amount"]["maximum"] == MAX_AMOUNT
    item = load_schema("purchase")["properties"]["items"]["items"]["properties"]
    assert item["price"]["maximum"] == MAX_PRICE
    for kind in ("click", "add_to_cart", "product"):
        assert load_schema(kind)["properties"]["price"]["maximum"] == MAX_PRICE


@pytest.mark.parametrize(
    ("amount", "price", "expected"),
    [
        (MAX_AMOUNT, MAX_PRICE, None),
        (MAX_AMOUNT + 0.01, 1.0, "schema_violation"),
        (1e17, 1.0, "schema_violation"),
        (1e300, 1.0, "schema_violation"),
        (1.0, MAX_PRICE + 1, "schema_violation"),
        (1.0, 1e300, "schema_violation"),
        (0, 0, None),
        (-0.01, 1.0, "schema_violation"),
    ],
)
def test_money_bounds(amount: float, price: float, expected: str | None) -> None:
    assert reason(purchase(1, amount, price)) == expected


def test_sums_saturate_and_the_profile_still_serialises() -> None:
    profile = Profile("u")
    profile.spend_cents["USD"] = MAX_SUM - 5
    profile.items_bought = MAX_SUM - 1
    records = [
        Record(InputPartition("t", 0), i, purchase(i, MAX_AMOUNT, quantity=10_000))
        for i in range(3)
    ]
    out = apply(profile, records, ProfileConfig(), lambda e: ())
    assert out.applied == 3
    assert profile.spend_cents["USD"] == MAX_SUM and profile.items_bought == MAX_SUM
    blob = profile.to_bytes()  # raised "Integer exceeds 64-bit range" before the bound
    assert orjson.loads(blob)["spend_cents"]["USD"] == MAX_SUM
    assert profile.rfm()["monetary"]["USD"] == MAX_SUM / 100


def test_largest_valid_orders_sum_exactly_until_the_cap() -> None:
    profile = Profile("u")
    records = [Record(InputPartition("t", 0), i, purchase(i, MAX_AMOUNT)) for i in range(1000)]
    apply(profile, records, ProfileConfig(), lambda e: ())
    assert profile.spend_cents["USD"] == 1000 * MAX_AMOUNT * 100
    Profile.from_bytes("u", 0, profile.to_bytes())
