"""The generator's refunds and cart removals: valid, referring to real orders, some late."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from schemas.validate import Limits, Rejected, decode
from stream.simulation.generator import TrafficConfig, TrafficGenerator


def events(**knobs: Any) -> list[dict[str, Any]]:
    gen = TrafficGenerator(TrafficConfig(seed=5, users=150, products=200, **knobs))
    return list(gen.history(10.0))


def test_zero_rates_emit_no_corrections() -> None:
    kinds = Counter(e["type"] for e in events())
    assert kinds["refund"] == 0 and kinds["remove_from_cart"] == 0


def test_refunds_and_removals_are_valid_and_refer_to_real_orders() -> None:
    out = events(refund_p=0.3, removal_p=0.2)
    kinds = Counter(e["type"] for e in out)
    assert kinds["refund"] > 10 and kinds["remove_from_cart"] > 10
    orders = {}
    late = partial = 0
    newest: dict[str, int] = {}
    for e in out:
        got = decode(orjson.dumps(e), Limits(), now_ms=int(e["ts"]))
        assert not isinstance(got, Rejected), got
        if e["type"] == "purchase":
            orders[e["order_id"]] = e
        if e["type"] == "refund":
            order = orders[e["order_id"]]  # its purchase came first
            assert order["user_id"] == e["user_id"] and e["ts"] > order["ts"]
            if "items" in e:
                partial += 1
                assert e["items"][0]["product_id"] == order["items"][0]["product_id"]
            if int(e["ts"]) < newest.get(e["user_id"], 0):
                late += 1
        newest[e["user_id"]] = max(newest.get(e["user_id"], 0), int(e["ts"]))
    assert partial > 0 and late > 0


def test_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="refund_p"):
        TrafficGenerator(TrafficConfig(refund_p=1.5))
