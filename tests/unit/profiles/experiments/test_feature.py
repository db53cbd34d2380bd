"""Experiments through the batch updater and the in-memory store: arms, the holdout,
attribution once per (user, item, list) under redelivery, the arm in the events."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from profiles.experiments.assign import assign, parse_arms, unit
from profiles.experiments.feature import COUNTER, ExperimentConfig, ExperimentFeature
from profiles.pipeline.downstream import profile_updated
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.recommend.popularity import NO_DECAY, FencedCounts
from schemas.validate import validate_output
from stream.settings import Settings, SettingsError
from tests.unit.profiles.pipeline.test_updater import Words
from tests.unit.profiles.recommend.test_recommender import CFG, MIN, build, buy, recs, see

ARMS = parse_arms("treatment:0.5,holdout:0.5")


def updater(window_ms: int = 60 * MIN, control: str = "none") -> tuple[BatchUpdater, MemoryStore]:
    up, store, rec = build(interval_ms=MIN)
    for n, pid in enumerate(sorted(rec.index.ids())):  # what the worker reads from Redis
        rec.index.record(pid, float(n + 1), MIN)
    exp = ExperimentConfig("x1", ARMS, ("holdout",), window_ms, control)
    # After recommendations, as builtin_features orders them.
    features = [*up.features, ExperimentFeature(exp, 2, rec.popular_many, "m1")]
    return BatchUpdater(store, CFG, Words(), features, clock=lambda: 1.0), store


def user_in(arm: str) -> str:
    return next(f"u{i}" for i in range(100) if assign("x1", f"u{i}", ARMS) == arm)


def totals(store: MemoryStore) -> dict[str, float]:
    out: Counter[str] = Counter()
    for counts in store.counters[COUNTER].values():
        for name in counts.state.counts:
            out[name] += round(counts.decayed(name, 10**13))
    return dict(out)


def test_assignment_is_stable_and_follows_the_shares() -> None:
    arms = parse_arms("treatment:0.9,holdout:0.1")
    ids = [f"user-{i}" for i in range(100_000)]
    first = [assign("s", u, arms) for u in ids]
    assert first == [assign("s", u, arms) for u in ids]
    share = first.count("holdout") / len(ids)
    assert share == pytest.approx(0.1, abs=0.005)
    # Another salt reshuffles: arms of two experiments are independent.
    other = [assign("t", u, arms) for u in ids[:10_000]]
    assert sum(a != b for a, b in zip(first, other, strict=False)) > 1000
    assert min(unit("s", u) for u in ids[:1000]) >= 0.0


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("treatment", "not 'name:share'"),
        ("a:x,b:0.5", "no numeric share"),
        ("a:0.5,a:0.5", "named twice"),
        ("a:1.5", "must be in"),
        ("a:0.5,b:0.2", "sum to 1"),
    ],
)
def test_bad_arms_are_refused_with_a_reason(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_arms(text)


async def first_list(
    up: BatchUpdater, store: MemoryStore, user: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """Enough interest for a first pushed list: (pushed recommendation events, listed items)."""
    await up.process(recs(see(1, user, "tea", MIN), see(2, user, "tea", MIN + 1)))
    result = await up.process(recs(see(3, user, "tea", MIN + 2), start=2))
    events = [e.build(5) for e in result.emits if e.kind == "recommendation"]
    raw = store.field(user, "xp")
    assert raw is not None
    state = orjson.loads(raw)
    return events, state["recs"][-1][2] if state["recs"] else []


async def test_treatment_gets_lists_with_its_arm_and_a_conversion_counts_once() -> None:
    up, store = updater()
    user = user_in("treatment")
    events, items = await first_list(up, store, user)
    assert len(events) == 1 and events[0]["arm"] == "treatment"
    assert events[0]["recommendation_id"] == events[0]["event_id"]
    validate_output("recommendation", events[0])
    bought = items[0]
    batch = recs(buy(4, user, bought, 2 * MIN), buy(5, user, bought, 3 * MIN), start=3)
    await up.process(batch)
    await up.process(batch)  # redelivered
    up.forget()
    await up.process(batch)  # and from a cold cache
    t = totals(store)
    assert t["x1/treatment/users"] == 1
    assert t["x1/treatment/conversions"] == 1  # the second purchase of the same item: no
    assert t["x1/treatment/converted"] == 1
    profile = await store.get(user)
    assert profile is not None
    described = profile_updated(profile, CFG.half_life_ms, 5, up.features)
    assert described["experiment"] == {"name": "x1", "arm": "treatment"}
    validate_output("profile_updated", described)


async def test_clicks_with_a_recommendation_id_count_once_per_listed_item() -> None:
    up, store = updater()
    user = user_in("treatment")
    events, items = await first_list(up, store, user)
    rec_id = events[0]["recommendation_id"]
    shown = {**see(4, user, items[0], 2 * MIN), "recommendation_id": rec_id}
    again = {**see(5, user, items[0], 3 * MIN), "recommendation_id": rec_id}
    stray = {**see(6, user, items[0], 3 * MIN), "recommendation_id": "other:1:recs"}
    batch = recs(shown, again, stray, start=3)
    await up.process(batch)
    up.forget()
    await up.process(batch)  # redelivered to a cold worker
    assert totals(store)["x1/treatment/clicks"] == 1


async def test_holdout_gets_no_pushed_list_but_its_conversions_are_measured() -> None:
    up, store = updater()
    user = user_in("holdout")
    events, items = await first_list(up, store, user)
    assert events == [] and items  # computed (what they would have seen), not pushed
    await up.process(recs(buy(4, user, items[0], 2 * MIN), start=3))
    t = totals(store)
    assert t["x1/holdout/users"] == 1 and t["x1/holdout/conversions"] == 1


async def test_a_popularity_control_pushes_the_cold_list_and_attributes_against_it() -> None:
    up, store = updater(control="popular")
    user = user_in("holdout")
    events, shown = await first_list(up, store, user)
    (event,) = events
    validate_output("recommendation", event)
    assert event["arm"] == "holdout" and event["control"] == "popular"
    assert event["model"] == "m1" and event["recommendation_id"] == event["event_id"]
    assert {i["reason"]["source"] for i in event["items"]} == {"popularity"}
    assert [i["product_id"] for i in event["items"]] == shown  # remembered as shown
    personal = store.field(user, "r")
    assert personal is not None  # the personal list still drives the throttle
    await up.process(recs(buy(4, user, shown[0], 2 * MIN), start=3))
    assert totals(store)["x1/holdout/conversions"] == 1
    # The treatment arm is untouched by the control.
    treated = user_in("treatment")
    events, _ = await first_list(up, store, treated)
    assert "control" not in events[0]
    assert {i["reason"]["source"] for i in events[0]["items"]} != {"popularity"}


@pytest.mark.parametrize("off", ["RTP_EMBEDDINGS", "RTP_RECOMMEND"])
def test_a_popularity_control_without_recommendations_is_refused(off: str) -> None:
    env = {"RTP_EXPERIMENT": "x1", "RTP_EXPERIMENT_HOLDOUT": "popular", off: "false"}
    with pytest.raises(SettingsError, match="RTP_EXPERIMENT_HOLDOUT=popular needs"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "RTP_EXPERIMENT": ""}).experiment.control == "popular"


async def test_purchases_outside_the_window_or_not_listed_do_not_count() -> None:
    up, store = updater(window_ms=MIN)
    user = user_in("treatment")
    _, items = await first_list(up, store, user)
    unlisted = next(p for p in ("tea", "pot", "cup", "pen", "pad") if p not in items)
    await up.process(
        recs(buy(4, user, unlisted, MIN + 1), buy(5, user, items[0], 5 * MIN), start=3)
    )
    t = totals(store)
    assert t.get("x1/treatment/conversions", 0) == 0


def test_the_no_decay_half_life_keeps_counts_whole() -> None:
    c = FencedCounts(NO_DECAY)
    c.add([("in:0", 1, 0, "n", 1.0), ("in:0", 2, 10**12, "n", 1.0)])
    assert c.decayed("n", 2 * 10**12) == 2.0


async def test_the_arm_counters_are_plain_sums_over_any_span() -> None:
    # Users born years apart: a decaying counter (even a 2**52 ms half-life) would drift.
    up, store = updater()
    events = [see(i, f"u{i}", "tea", i * 10**11) for i in range(20)]
    await up.process(recs(*events, start=0))
    await up.process(recs(*events, start=0))  # redelivered: fenced
    for counts in store.counters[COUNTER].values():
        assert counts.half_life_ms == NO_DECAY
        assert all(v == int(v) for v in counts.state.counts.values())
    t = totals(store)
    assert t["x1/treatment/users"] + t["x1/holdout/users"] == 20
    raw = [v for c in store.counters[COUNTER].values() for v in c.state.counts.values()]
    assert sum(raw) == sum(t.values())  # no rounding needed
