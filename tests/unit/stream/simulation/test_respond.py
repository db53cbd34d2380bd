"""The simulated answers to pushed lists: deterministic, relevant items tempt more, events
valid against the contracts, the rate as planted."""

from __future__ import annotations

import doctest
import functools
from typing import Any

import orjson
import pytest

import stream.simulation.respond
from schemas.validate import Limits, Rejected, decode
from stream.simulation.generator import TrafficConfig, TrafficGenerator
from stream.simulation.respond import BUY_AFTER_MS, Responder, ResponseConfig

START = 1_767_225_600_000
GEN = TrafficGenerator(TrafficConfig(users=50, products=300, seed=3))


def validate_event(event: dict[str, Any]) -> None:
    decoded = decode(orjson.dumps(event), Limits(), now_ms=10**13)
    assert not isinstance(decoded, Rejected), decoded


def a_list(user: str, n: int, products: list[str], ts: int = START) -> dict[str, Any]:
    rec_id = f"{user}:{n}:recs"
    return {
        "type": "recommendation",
        "event_id": rec_id,
        "recommendation_id": rec_id,
        "user_id": user,
        "ts": ts,
        "items": [{"product_id": p, "rank": i + 1} for i, p in enumerate(products)],
    }


@functools.cache
def split(user: str) -> tuple[list[str], list[str]]:
    ids = [p["product_id"] for p in GEN.catalog()]
    return [p for p in ids if GEN.interested(user, p)], [
        p for p in ids if not GEN.interested(user, p)
    ]


def test_the_docstring_examples_run() -> None:
    result = doctest.testmod(stream.simulation.respond)
    assert result.attempted > 0 and result.failed == 0


def test_answers_are_a_function_of_the_list_and_valid_events() -> None:
    responder = Responder(GEN, ResponseConfig(uplift=0.5))
    user = GEN.user_ids()[0]
    liked, _ = split(user)
    lists = [a_list(user, n, liked[n : n + 3]) for n in range(1, 200)]
    first = [responder.respond(r) for r in lists]
    assert first == [responder.respond(r) for r in lists]  # a redelivered list: the same
    acted = [events for events in first if events]
    assert acted
    for click, buy in acted:
        validate_event(click)
        validate_event(buy)
        assert click["ts"] + BUY_AFTER_MS == buy["ts"]
        assert 600_000 <= click["ts"] - START <= 6 * 3_600_000
        assert click["product_id"] == buy["items"][0]["product_id"]
        assert buy["currency"] == GEN.currency(user)
    assert len({e["event_id"] for events in acted for e in events}) == 2 * len(acted)


@pytest.mark.parametrize("uplift", [0.1, 0.4])
def test_the_planted_rate_holds_and_relevant_items_tempt_more(uplift: float) -> None:
    responder = Responder(GEN, ResponseConfig(uplift=uplift, irrelevant=0.25, looked=1))
    users = GEN.user_ids()
    n = 4000
    relevant = irrelevant = 0
    for i in range(n):
        user = users[i % len(users)]
        liked, other = split(user)
        relevant += bool(responder.respond(a_list(user, i + 1, liked[:1])))
        irrelevant += bool(responder.respond(a_list(user, i + 1, other[:1])))
    # Binomial: 4 standard deviations either side.
    for got, p in ((relevant, uplift), (irrelevant, uplift * 0.25)):
        sd = (n * p * (1 - p)) ** 0.5
        assert abs(got - n * p) < 4 * sd, (got, n * p)


def test_one_item_per_list_and_only_the_looked_at_ones() -> None:
    user = GEN.user_ids()[1]
    liked, other = split(user)
    always = Responder(GEN, ResponseConfig(uplift=1.0, irrelevant=0.0, looked=2))
    events = always.respond(a_list(user, 1, [other[0], liked[0], liked[1]]))
    assert [e["type"] for e in events] == ["click", "purchase"]
    assert events[0]["product_id"] == liked[0]  # the first tempting one, in rank order
    assert always.respond(a_list(user, 2, [other[0], other[1], liked[0]])) == []  # not looked at


def test_unknown_users_or_items_and_no_uplift_bring_nothing() -> None:
    user = GEN.user_ids()[0]
    liked, _ = split(user)
    assert Responder(GEN, ResponseConfig(uplift=1.0)).respond(a_list("nobody", 1, liked)) == []
    assert Responder(GEN, ResponseConfig(uplift=1.0)).respond(a_list(user, 1, ["nope"])) == []
    assert Responder(GEN, ResponseConfig(uplift=0.0)).respond(a_list(user, 1, liked)) == []


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"uplift": 1.5}, "uplift"),
        ({"uplift": 0.1, "irrelevant": -1.0}, "irrelevant"),
        ({"uplift": 0.1, "looked": 0}, "looked"),
        ({"uplift": 0.1, "delay_s": (5.0, 1.0)}, "delay_s"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ResponseConfig(**changes)
