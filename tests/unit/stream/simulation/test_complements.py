"""Planted complements (``TrafficConfig.complement_p``): off by default, and when on, devices'
accessories are bought in a second order of the same session."""

from __future__ import annotations

from collections import defaultdict

import pytest

from stream.simulation.generator import TrafficConfig, TrafficGenerator

CFG = TrafficConfig(seed=3, users=150, products=400)


def orders(events: list[dict[str, object]]) -> dict[tuple[object, object], list[set[str]]]:
    out: dict[tuple[object, object], list[set[str]]] = defaultdict(list)
    for e in events:
        if e["type"] == "purchase":
            items = e["items"]
            assert isinstance(items, list)
            out[(e["user_id"], e["session_id"])].append({line["product_id"] for line in items})
    return out


def test_every_device_has_an_accessory_of_the_next_leaf() -> None:
    gen = TrafficGenerator(CFG)
    planted = gen.planted_complements()
    assert planted and all(device != accessory for device, accessory in planted.items())
    ids = {p: i for i, p in enumerate(gen._p_id)}
    for device, accessory in planted.items():
        d, a = ids[device], ids[accessory]
        assert gen._p_top[d] == gen._p_top[a] and gen._p_leaf[d] != gen._p_leaf[a]


def test_off_by_default_no_second_order_in_a_session() -> None:
    by_session = orders(list(TrafficGenerator(CFG).history(10)))
    assert max(len(v) for v in by_session.values()) == 1


def test_planted_accessories_follow_their_device_in_the_session() -> None:
    gen = TrafficGenerator(TrafficConfig(seed=3, users=150, products=400, complement_p=1.0))
    planted = gen.planted_complements()
    by_session = orders(list(gen.history(10)))
    seconds = [v for v in by_session.values() if len(v) == 2]
    assert len(seconds) > 20
    for first, second in seconds:
        assert second <= {planted[p] for p in first if p in planted}


def test_complement_p_is_checked() -> None:
    with pytest.raises(ValueError, match="complement_p"):
        TrafficGenerator(TrafficConfig(complement_p=1.5))
