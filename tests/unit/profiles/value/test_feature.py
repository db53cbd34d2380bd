"""The value feature through the batch updater and the in-memory store: state, tiers,
``value_changed`` with hysteresis, erasure, the refit companion."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from profiles.churn.bgnbd import BGNBDParams
from profiles.churn.sweeper import ChurnSweeper
from profiles.churn.tracker import ChurnTracker
from profiles.core import indexes
from profiles.core.ownership import owner
from profiles.core.profile import Profile
from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.feature import Batch, Outcome, ScoreSet, Stats, UserResult
from profiles.pipeline.store import MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.value.feature import ValueFeature
from profiles.value.gammagamma import GammaGammaParams
from profiles.value.population import ValueFit, fit_value
from profiles.value.refit import ValuePopulation
from profiles.value.rfm import RfmCuts
from profiles.value.scorer import ValueScorer, value_event
from schemas.validate import validate_output
from tests.unit.profiles.pipeline.test_updater import CFG, DAY, Words, erase, recs

MBG = BGNBDParams(0.5, 10.0, 0.7, 3.0, "mbgnbd")
CUTS = RfmCuts(
    recency=(7.0, 30.0, 90.0, 180.0),
    frequency=(1.0, 1.0, 2.0, 4.0),
    monetary=(20.0, 50.0, 100.0, 250.0),
)
FIT = ValueFit(GammaGammaParams(6.25, 3.74, 15.44), CUTS, 0, 100, 40)


def purchase(n: int, user: str, day: float, amount: float) -> dict[str, Any]:
    return {
        "event_id": f"{user}-p{n}",
        "type": "purchase",
        "schema_version": 1,
        "user_id": user,
        "ts": 100 * DAY + int(day * DAY),
        "order_id": f"{user}-o{n}",
        "currency": "USD",
        "amount": amount,
        "items": [{"product_id": "p1", "quantity": 1, "price": amount}],
    }


def visit(n: int, user: str, day: float) -> dict[str, Any]:
    return {
        "event_id": f"{user}-c{n}",
        "type": "click",
        "schema_version": 1,
        "user_id": user,
        "ts": 100 * DAY + int(day * DAY),
        "product_id": "p1",
    }


def scorer(fit: ValueFit | None = FIT, margin: float = 0.1) -> ValueScorer:
    s = ValueScorer((90.0, 365.0), margin, bgnbd=lambda: MBG)
    s.fit = fit
    return s


def worker(store: MemoryStore, s: ValueScorer) -> BatchUpdater:
    features = builtin_features(partitions=2, value=s)
    return BatchUpdater(store, CFG, Words(), features, clock=lambda: 1000.0)


async def test_a_customer_gets_value_and_a_first_tier() -> None:
    store = MemoryStore()
    result = await worker(store, scorer()).process(recs(purchase(1, "a", 0, 30.0)))
    state = orjson.loads(store.field("a", "cv") or b"null")
    assert state["tier"] == "new" and state["scores"] == [5, 1, 2]
    assert state["orders"] == 1 and state["avg_order_value"] == 30.0
    # One order of $30: shrunk toward the population mean (~$35).
    assert 30.0 < state["expected_order_value"] < 35.3
    e90, e365 = state["expected"]["90"], state["expected"]["365"]
    assert 0 < e90["purchases"] < e365["purchases"]
    assert e365["value"] == round(e365["purchases"] * state["expected_order_value"], 2)
    changes = result.changes("value_changed")
    assert [(c.previous, c.state["tier"]) for c in changes] == [(None, "new")]
    event = value_event(changes[0], 5)
    validate_output("value_changed", event)
    assert event["event_id"] == f"a:{changes[0].profile.version}:value:new"
    loaded = await store.get("a")
    assert loaded is not None and loaded.parts["value"] == state  # the codec round trip
    # Due when recency passes the next R cut beyond the margin: 7 days * 1.1 after the order.
    assert state["next_check_ms"] == purchase(1, "a", 0, 30.0)["ts"] + int(7.7 * DAY) + 1
    due = indexes.value_due(owner("a", 2))
    assert store.scores[due] == {"a": state["next_check_ms"]}
    assert ValueFeature(scorer(), 2).indexed(loaded) == [ScoreSet(due, "a", state["next_check_ms"])]
    # Past the last cut the R score cannot fall further: off the due index.
    late = await worker(store, scorer()).process(recs(visit(2, "a", 200), start=1))
    assert late.applied == 1 and "a" not in store.scores[due]
    assert orjson.loads(store.field("a", "cv") or b"null")["next_check_ms"] is None


async def test_the_api_and_profile_updated_show_the_value() -> None:
    from profiles.pipeline.downstream import profile_updated
    from stream.settings import Settings
    from stream.worker.web import profile_view

    store = MemoryStore()
    await worker(store, scorer()).process(recs(purchase(1, "a", 0, 30.0)))
    loaded = await store.get("a")
    assert loaded is not None
    view = profile_view(loaded, Settings.from_env({}))
    assert view["value"] == loaded.parts["value"] and view["value"]["tier"] == "new"
    event = profile_updated(loaded, CFG.half_life_ms, 9, [ValueFeature(scorer(), 4)])
    validate_output("profile_updated", event)
    assert event["value"]["tier"] == "new" and set(event["value"]["expected"]) == {"90", "365"}


async def test_a_user_without_purchases_has_no_value_and_nothing_is_sent() -> None:
    store = MemoryStore()
    result = await worker(store, scorer()).process(recs(visit(1, "b", 0)))
    assert store.field("b", "cv") is None
    assert result.changes("value_changed") == []


async def test_before_any_fit_the_own_mean_and_no_tier() -> None:
    store = MemoryStore()
    s = ValueScorer((90.0,), 0.1)  # no churn model either
    result = await worker(store, s).process(recs(purchase(1, "a", 0, 30.0)))
    state = orjson.loads(store.field("a", "cv") or b"null")
    assert (state["tier"], state["expected_order_value"], state["expected"]) == (None, 30.0, {})
    assert result.changes("value_changed") == []


async def test_tier_changes_are_announced_once_and_hysteresis_holds() -> None:
    store = MemoryStore()
    w = worker(store, scorer())
    r = await w.process(recs(purchase(1, "a", 0, 30.0)))
    assert [c.state["tier"] for c in r.changes("value_changed")] == ["new"]
    # A second order: F 1 -> 3 (orders 2 against cuts 1, 1, 2, 4): "loyal" now.
    r = await w.process(recs(purchase(2, "a", 1, 30.0), start=1))
    assert [(c.previous, c.state["tier"]) for c in r.changes("value_changed")] == [("new", "loyal")]
    # A visit changes nothing about the tier: no event.
    r = await w.process(recs(visit(1, "a", 3), start=2))
    assert r.changes("value_changed") == []
    # Recency just past the 30-day cut (R 4 -> 3 without a margin): held at 4 by the margin.
    r = await w.process(recs(visit(2, "a", 1 + 31), start=3))
    state = (await store.get("a")).parts["value"]  # type: ignore[union-attr]
    assert state["scores"] == [4, 3, 3] and r.changes("value_changed") == []
    # Far past it: R 2, and the customer who bought twice is now "at risk".
    r = await w.process(recs(visit(3, "a", 1 + 120), start=4))
    assert [(c.previous, c.state["tier"]) for c in r.changes("value_changed")] == [
        ("loyal", "at_risk")
    ]
    # Redelivery of the same batch: fenced, nothing announced again.
    r = await w.process(recs(visit(3, "a", 1 + 120), start=4))
    assert r.changes("value_changed") == []


async def test_without_margin_the_score_follows_the_cut() -> None:
    store = MemoryStore()
    w = worker(store, scorer(margin=0.0))
    await w.process(recs(purchase(1, "a", 0, 30.0), purchase(2, "a", 1, 30.0)))
    await w.process(recs(visit(2, "a", 1 + 31), start=2))
    assert (await store.get("a")).parts["value"]["scores"] == [3, 3, 3]  # type: ignore[union-attr]


async def test_erasure_removes_the_value_state() -> None:
    store = MemoryStore()
    w = worker(store, scorer())
    await w.process(recs(purchase(1, "a", 0, 30.0)))
    assert store.field("a", "cv") is not None
    result = await w.process(recs(erase(9, "a"), start=1))
    assert result.erased == ["a"]
    assert store.field("a", "cv") is None
    assert "a" not in store.profiles or store.profiles["a"][2].get("cv") is None
    assert result.changes("value_changed") == []


async def test_compute_skips_users_not_written() -> None:
    feature = ValueFeature(scorer(), 4)
    p = Profile("a", version=1, last_ts=DAY, orders=1, last_purchase_ts=DAY, first_purchase_ts=DAY)
    p.spend_cents = {"USD": 1000}
    unwritten = UserResult(p, outcome=Outcome(applied=0))
    await feature.compute(Batch([], {}, {}), [unwritten], Stats())
    assert "value" not in p.parts and unwritten.emits == []
    event: dict[str, Any] = {}
    feature.describe(p, event)
    assert event == {}


def customers(n: int) -> list[Profile]:
    out = []
    for i in range(n):
        orders = 1 + i % 5
        p = Profile(f"u{i}", orders=orders, first_purchase_ts=0, last_purchase_ts=(i % 60) * DAY)
        p.spend_cents = {"USD": orders * (1000 + 137 * (i % 23))}
        p.last_ts = p.last_purchase_ts
        out.append(p)
    return out


class FakeValueStore:
    def __init__(self) -> None:
        self.saved: ValueFit | None = None

    async def load_fit(self) -> ValueFit | None:
        return self.saved

    async def save_fit(self, fit: ValueFit) -> None:
        self.saved = fit


class FakeChurnStore:
    """The churn store of one worker: sample, lock, model and calibration snapshots."""

    def __init__(self, users: Sequence[str]) -> None:
        self.users = list(users)
        self.model: tuple[BGNBDParams, Any] | None = None
        self.pairs: dict[str, list[Any]] = {}

    async def load_pairs(self, user_ids: Sequence[str]) -> dict[str, list[Any]]:
        return {u: self.pairs.get(u, []) for u in user_ids}

    async def save_pairs(self, updates: Sequence[tuple[Profile, list[Any]]]) -> None:
        self.pairs.update((p.user_id, e) for p, e in updates)

    async def sample_customers(self, partitions: int, per_partition: int) -> list[str]:
        return self.users

    async def fit_lock(self, ttl_s: int) -> bool:
        return True

    async def save_model(
        self, params: BGNBDParams, as_of: int, customers: int, calibrator: Any = None
    ) -> None:
        self.model = (params, calibrator)

    async def load_model(self) -> tuple[BGNBDParams, Any] | None:
        return self.model


class Loader:
    def __init__(self, profiles: Sequence[Profile]) -> None:
        self.by_id = {p.user_id: p for p in profiles}

    async def load(self, user_ids: Any, item_ids: Any) -> tuple[dict[str, Profile], dict[str, Any]]:
        return {u: self.by_id[u] for u in user_ids}, {}


async def test_the_churn_refit_fits_the_value_model_from_the_same_sample() -> None:
    people = customers(200)
    fitting, other = scorer(None), scorer(None)
    shared = FakeValueStore()
    churn_store = FakeChurnStore([p.user_id for p in people])
    sweeper = ChurnSweeper(
        ChurnTracker(),
        churn_store,  # type: ignore[arg-type]
        Loader(people),
        lambda _: None,
        2,
        companions=[ValuePopulation(fitting, shared)],
    )
    params = await sweeper.fit(90 * DAY, 60)
    assert params is not None and fitting.fit is not None
    assert fitting.fit == fit_value(people, 90 * DAY)
    assert fitting.fit.cuts is not None and fitting.fit.gg is not None
    assert fitting.fit.customers == 200 and fitting.fit.repeat_buyers == 160
    assert shared.saved == fitting.fit
    # Another worker picks the stored fit up at its next sweep's refresh.
    reader = ChurnSweeper(
        ChurnTracker(),
        churn_store,  # type: ignore[arg-type]
        Loader(people),
        lambda _: None,
        2,
        companions=[ValuePopulation(other, shared)],
    )
    await reader.refresh_model()
    assert other.fit == fitting.fit and reader.tracker.params == params
    assert ValueFit.from_dict(orjson.loads(orjson.dumps(fitting.fit.to_dict()))) == fitting.fit
