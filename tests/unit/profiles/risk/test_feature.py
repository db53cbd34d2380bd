"""The risk feature through the batch updater and the in-memory store: the stored state,
``risk_flag`` events, redelivery, the API and ``profile_updated``, erasure, and flagged users
left out of recommendations."""

from __future__ import annotations

from typing import Any

import orjson

from profiles.core.profile import Profile
from profiles.pipeline.builtin import builtin_features, flagged
from profiles.pipeline.downstream import profile_updated
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.recommend.blend import BlendConfig
from profiles.recommend.recommender import Recommender, RecsConfig
from profiles.risk.detector import RiskDetector
from profiles.risk.feature import RiskFeature, risk_event
from profiles.risk.rules import HOUR
from schemas.validate import validate_output
from stream.settings import Settings
from stream.worker.web import profile_view
from tests.unit.profiles.pipeline.test_updater import CFG, Words, erase, recs

T0 = 1_767_225_600_000


def click(n: int, user: str, ts: int) -> dict[str, Any]:
    return {
        "event_id": f"{user}-c{n}-{ts}",
        "type": "click",
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
        "product_id": "p1",
        "title": "Green Tea",
        "category": ["Food", "Tea"],
    }


def bot(user: str, n: int = 45, start: int = T0) -> list[dict[str, Any]]:
    return [click(i, user, start + i * 1000) for i in range(n)]


def worker(store: MemoryStore) -> BatchUpdater:
    features = builtin_features(partitions=2, risk=RiskDetector())
    return BatchUpdater(store, CFG, Words(), features, clock=lambda: 1000.0)


async def test_a_bot_gets_one_flag_event_and_the_state_is_stored() -> None:
    store = MemoryStore()
    w = worker(store)
    result = await w.process(recs(*bot("b"), *bot("h", 5)))
    changes = result.changes("risk_flag")
    assert [(c.profile.user_id, c.rule, c.status) for c in changes] == [
        ("b", "bot_clicks", "opened")
    ]
    event = risk_event(changes[0], 7)
    validate_output("risk_flag", event)
    assert event["event_id"] == f"b:risk:bot_clicks:{T0 + 39_000}:opened"
    assert event["severity"] == "high" and event["cleared_at"] is None
    state = orjson.loads(store.field("b", "rk") or b"null")
    assert set(state["flags"]) == {"bot_clicks"} and state["flags"]["bot_clicks"]["hits"] == 6
    assert orjson.loads(store.field("h", "rk") or b"null")["flags"] == {}
    loaded = await store.get("b")
    assert loaded is not None and loaded.parts["risk"] == state  # the codec round trip
    assert RiskFeature(RiskDetector()).indexed(loaded) == []  # no index to keep


async def test_a_redelivered_batch_flags_nothing_again_and_counts_nothing_twice() -> None:
    store = MemoryStore()
    w = worker(store)
    batch = recs(*bot("b", 30))
    await w.process(batch)
    again = await w.process(batch)
    assert again.changes("risk_flag") == [] and again.fenced == 30
    fresh = worker(store)  # another worker, from the store
    assert (await fresh.process(batch)).changes("risk_flag") == []
    more = await fresh.process(recs(*bot("b", 9, T0 + 30_000), start=30))
    assert more.changes("risk_flag") == []  # 39 clicks in the minute, not 69
    last = await fresh.process(recs(click(99, "b", T0 + 40_000), start=39))
    assert [c.rule for c in last.changes("risk_flag")] == ["bot_clicks"]


async def test_the_flag_clears_at_the_next_event_past_its_time() -> None:
    store = MemoryStore()
    w = worker(store)
    await w.process(recs(*bot("b")))
    later = T0 + 44_000 + HOUR
    result = await w.process(recs(click(100, "b", later), start=45))
    (change,) = result.changes("risk_flag")
    event = risk_event(change, 9)
    validate_output("risk_flag", event)
    assert (event["status"], event["cleared_at"], event["ts"]) == ("cleared", later, later)
    assert event["event_id"] == f"b:risk:bot_clicks:{T0 + 39_000}:cleared"
    loaded = await store.get("b")
    assert loaded is not None and not flagged("low", loaded)


async def test_the_api_and_profile_updated_show_open_flags() -> None:
    store = MemoryStore()
    await worker(store).process(recs(*bot("b")))
    loaded = await store.get("b")
    assert loaded is not None
    view = profile_view(loaded, Settings.from_env({}))
    (flag,) = view["risk"]["flags"]
    assert (flag["rule"], flag["severity"], flag["until"]) == (
        "bot_clicks",
        "high",
        T0 + 44_000 + HOUR,
    )
    event = profile_updated(loaded, CFG.half_life_ms, 9, [RiskFeature(RiskDetector())])
    validate_output("profile_updated", event)
    assert event["risk"]["flags"] == view["risk"]["flags"]
    assert profile_view(Profile("new"), Settings.from_env({}))["risk"] == {"flags": []}


async def test_an_erasure_removes_the_risk_state_and_sends_nothing_for_before() -> None:
    store = MemoryStore()
    w = worker(store)
    await w.process(recs(*bot("b", 20)))
    result = await w.process(recs(*bot("b", 25, T0 + 20_000), erase(9, "b"), start=20))
    assert result.changes("risk_flag") == []  # the flag of before the erasure goes with it
    assert store.field("b", "rk") is None


def test_severity_decides_who_is_flagged() -> None:
    p = Profile("u")
    p.parts["risk"] = {"flags": {"anomaly": {"severity": "low"}}}
    assert flagged("low", p) and not flagged("medium", p) and not flagged("high", p)
    p.parts["risk"]["flags"]["card_testing"] = {"severity": "high"}
    assert flagged("high", p)
    assert not flagged("low", Profile("v"))


def test_the_setting_hands_the_filter_to_recommendations() -> None:
    from profiles.recommend.feature import RecommendFeature
    from profiles.recommend.index import ItemIndex

    rec = Recommender(ItemIndex(8), RecsConfig(BlendConfig(k=3)), CFG.half_life_ms, None)  # type: ignore[arg-type]
    off = builtin_features(partitions=2, recommender=rec, risk=RiskDetector())
    on = builtin_features(
        partitions=2, recommender=rec, risk=RiskDetector(), exclude_flagged="medium"
    )
    (r_off,) = [f for f in off if isinstance(f, RecommendFeature)]
    (r_on,) = [f for f in on if isinstance(f, RecommendFeature)]
    assert r_off.skip is None and r_on.skip is not None
    p = Profile("u")
    p.parts["risk"] = {"flags": {"order_amount": {"severity": "medium"}}}
    assert r_on.skip(p) and not r_on.skip(Profile("v"))
