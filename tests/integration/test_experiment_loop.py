"""The closed loop through the worker's real stages and Redis: the generator's users answer
pushed lists, every answer's click counts once, the holdout answers only a control it is
shown, and answering lifts the treatment arm's conversion."""

from __future__ import annotations

import pytest
import redis

from stream.evaluation.experiment_loop import Run, settings_for
from stream.evaluation.loop import run_loop
from stream.simulation.generator import TrafficConfig, TrafficGenerator
from stream.simulation.respond import Responder, ResponseConfig

pytestmark = pytest.mark.integration

GEN = TrafficGenerator(TrafficConfig(seed=5, users=60, products=150))
ARMS = "treatment:0.5,holdout:0.5"


def fresh(url: str) -> str:
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


async def test_answers_count_once_and_lift_the_treatment(redis_url: str) -> None:
    answer = ResponseConfig(uplift=0.6, irrelevant=0.5)
    quiet = await run_loop(
        settings_for(Run("A", 0.0, "none", ARMS), redis_url, 7.0),
        GEN,
        Responder(GEN, ResponseConfig(uplift=0.0)),
        days=3,
    )
    assert quiet.answers == 0 and quiet.lists["treatment"] > 0
    assert "holdout" not in quiet.lists  # the holdout is pushed nothing
    loud = await run_loop(
        settings_for(Run("B", 0.6, "none", ARMS), fresh(redis_url), 7.0),
        GEN,
        Responder(GEN, answer),
        days=3,
    )
    arms = loud.report["arms"]
    assert loud.answers > 0 and loud.answers % 2 == 0  # a click and a purchase each
    # Every answer is a click on a listed item carrying its list's id: counted once each.
    assert arms["treatment"]["clicks"] == loud.answers // 2
    assert arms["holdout"]["clicks"] == 0
    # The same users, the same traffic: answering lists converts more of them.
    before = quiet.report["arms"]["treatment"]
    assert arms["treatment"]["users"] == before["users"]
    assert arms["treatment"]["converted"] > before["converted"]
    assert arms["treatment"]["conversions"] >= before["conversions"] + loud.answers // 2 // 2
    assert arms["holdout"]["users"] == quiet.report["arms"]["holdout"]["users"]


async def test_a_popularity_control_is_answered_by_the_holdout(redis_url: str) -> None:
    result = await run_loop(
        settings_for(Run("C", 0.6, "popular", ARMS), redis_url, 7.0),
        GEN,
        Responder(GEN, ResponseConfig(uplift=0.6, irrelevant=0.5)),
        days=3,
    )
    assert result.lists["holdout/popular"] > 0 and result.lists["treatment"] > 0
    arms = result.report["arms"]
    assert arms["holdout"]["clicks"] > 0  # they were shown a list, and answered it
    assert arms["treatment"]["clicks"] + arms["holdout"]["clicks"] == result.answers // 2
