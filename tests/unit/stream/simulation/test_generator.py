"""Tests for the synthetic traffic generator (stream.simulation.generator)."""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.simulation.catalog_words import CATEGORIES, REVIEW_EN, REVIEW_ZH
from stream.simulation.generator import (
    CATALOG_USER_ID,
    DAY_MS,
    TrafficConfig,
    TrafficGenerator,
    read_jsonl,
    to_jsonl,
)

CJK = re.compile("[\u4e00-\u9fff]")
SMALL = TrafficConfig(seed=11, users=300, products=600)
USER_KINDS = {"click", "add_to_cart", "purchase", "review", "search", "user_erasure"}


@cache
def _small_history(days: float = 30.0) -> tuple[dict[str, Any], ...]:
    return tuple(TrafficGenerator(SMALL).history(days))


def _first(config: TrafficConfig, n: int) -> list[dict[str, Any]]:
    return list(itertools.islice(TrafficGenerator(config).history(60), n))


def test_same_seed_same_events_and_catalog() -> None:
    cfg = TrafficConfig(seed=3, users=200, products=300)
    assert _first(cfg, 5000) == _first(cfg, 5000)
    assert TrafficGenerator(cfg).catalog() == TrafficGenerator(cfg).catalog()


def test_different_seed_differs() -> None:
    a = _first(TrafficConfig(seed=3, users=200, products=300), 500)
    b = _first(TrafficConfig(seed=4, users=200, products=300), 500)
    strip = [{k: v for k, v in e.items() if k != "event_id"} for e in a]
    assert strip != [{k: v for k, v in e.items() if k != "event_id"} for e in b]
    cat_a = TrafficGenerator(TrafficConfig(seed=3, products=300)).catalog()
    cat_b = TrafficGenerator(TrafficConfig(seed=4, products=300)).catalog()
    assert [e["title"] for e in cat_a] != [e["title"] for e in cat_b]


def test_history_prefix_does_not_depend_on_length() -> None:
    gen = TrafficGenerator(SMALL)
    short = list(gen.history(2))
    assert short == list(itertools.islice(gen.history(5), len(short)))


def test_history_ts_nondecreasing_and_in_window() -> None:
    events = _small_history()
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    assert ts[0] >= SMALL.start_ms
    assert ts[-1] <= SMALL.start_ms + 30 * DAY_MS


def test_common_fields_and_kind_fields() -> None:
    events = _small_history()
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids)
    kinds = Counter(e["type"] for e in events)
    assert {"click", "add_to_cart", "purchase", "review", "search", "product"} <= set(kinds)
    for e in events:
        assert isinstance(e["event_id"], str) and e["event_id"]
        assert e["schema_version"] == 1 and type(e["schema_version"]) is int
        assert isinstance(e["user_id"], str) and e["user_id"]
        assert type(e["ts"]) is int
        assert isinstance(e.get("session_id", ""), str)
        kind = e["type"]
        if kind in ("click", "add_to_cart", "review", "product"):
            assert isinstance(e["product_id"], str) and isinstance(e["title"], str)
            assert 2 <= len(e["category"]) <= 3
            assert all(isinstance(c, str) and c for c in e["category"])
        if kind in ("click", "add_to_cart", "product"):
            assert isinstance(e["price"], float) and e["price"] > 0
        if kind == "add_to_cart":
            assert type(e["quantity"]) is int and e["quantity"] >= 1
        elif kind == "review":
            assert type(e["rating"]) is int and 1 <= e["rating"] <= 5
            assert len(e["text"]) > 10
        elif kind == "search":
            assert isinstance(e["query"], str) and e["query"].strip()
        elif kind == "product":
            assert e["user_id"] == CATALOG_USER_ID and e["currency"] == "CNY"
        if kind in USER_KINDS:
            assert re.fullmatch(r"u\d{6}", e["user_id"])


def test_purchase_amount_is_sum_of_items() -> None:
    purchases = [e for e in _small_history() if e["type"] == "purchase"]
    assert len(purchases) > 50
    currencies = Counter(e["currency"] for e in purchases)
    assert set(currencies) == {"CNY", "USD"} and currencies["CNY"] > currencies["USD"]
    for e in purchases:
        assert e["items"]
        total = sum(i["quantity"] * i["price"] for i in e["items"])
        assert abs(e["amount"] - total) < 0.005 + 1e-9
        assert round(e["amount"], 2) == e["amount"]
        for item in e["items"]:
            assert type(item["quantity"]) is int and item["quantity"] >= 1
            assert {"product_id", "price", "title", "category"} <= set(item)
    assert len({e["order_id"] for e in purchases}) == len(purchases)


def test_churners_go_silent() -> None:
    gen = TrafficGenerator(SMALL)
    end = SMALL.start_ms + 30 * DAY_MS
    last: dict[str, int] = {}
    for e in _small_history():
        last[e["user_id"]] = e["ts"]
    truths = [gen.user_truth(u) for u in gen.user_ids()]
    churners = [t for t in truths if t["churn_ms"] is not None]
    assert 0.12 <= len(churners) / len(truths) <= 0.28
    active_before = 0
    for t in churners:
        if t["user_id"] in last:
            active_before += 1
            assert last[t["user_id"]] < t["churn_ms"]
    assert active_before >= 0.8 * len(churners)
    # Everyone planted to churn has churned within the 28-day window.
    assert all(t["churn_ms"] <= end for t in churners)
    # Most of those who stay are still seen in the last week.
    stayers = [t for t in truths if t["churn_ms"] is None]
    recent = sum(1 for t in stayers if last.get(t["user_id"], 0) > end - 7 * DAY_MS)
    assert recent >= 0.7 * len(stayers)


def test_catalog_titles_in_both_languages() -> None:
    gen = TrafficGenerator(TrafficConfig())
    catalog = gen.catalog()
    assert len(catalog) == 2000
    assert len({e["product_id"] for e in catalog}) == 2000
    assert all(e["ts"] == TrafficConfig().start_ms for e in catalog)
    zh = sum(1 for e in catalog if CJK.search(e["title"]))
    assert 0.5 < zh / len(catalog) < 0.7
    en = [e for e in catalog if not CJK.search(e["title"])]
    assert all(re.search(r"[A-Za-z]{3}", e["title"]) for e in en)
    # A listing's category path is in the language of its title.
    for e in catalog:
        assert bool(CJK.search(e["category"][0])) == bool(CJK.search(e["title"]))
    roots = {e["category"][0] for e in catalog}
    assert len(roots) == 2 * len(CATEGORIES) == 24
    assert any(e.get("discontinued") for e in catalog)


def test_users_act_in_their_language_and_interests() -> None:
    gen = TrafficGenerator(SMALL)
    name_to_key = {c.zh: c.key for c in CATEGORIES} | {c.en: c.key for c in CATEGORIES}
    clicks: dict[str, Counter[str]] = defaultdict(Counter)
    texts: dict[str, list[str]] = defaultdict(list)
    for e in _small_history():
        if e["type"] == "click":
            clicks[e["user_id"]][name_to_key[e["category"][0]]] += 1
        elif e["type"] in ("search", "review"):
            texts[e["user_id"]].append(e.get("query") or e["text"])
    hits = total = 0
    for uid, counts in clicks.items():
        if sum(counts.values()) < 20:
            continue
        total += 1
        hits += counts.most_common(1)[0][0] == gen.user_truth(uid)["interests"][0]["key"]
    assert total > 50 and hits / total > 0.75
    for uid, items in texts.items():
        zh_user = gen.user_truth(uid)["language"] == "zh"
        for text in items:
            if not zh_user:
                assert not CJK.search(text), text


def test_review_sentiment_matches_rating() -> None:
    reviews = [e for e in _small_history() if e["type"] == "review"]
    assert len(reviews) > 20
    assert {e["rating"] for e in reviews} == {1, 2, 3, 4, 5}
    for e in reviews:
        pool = REVIEW_ZH if CJK.search(e["text"]) else REVIEW_EN
        mood = "pos" if e["rating"] >= 4 else ("mid" if e["rating"] == 3 else "neg")
        found = {m for m in ("pos", "mid", "neg") if any(s in e["text"] for s in pool[m])}
        assert found == {mood}, e


def test_user_truth() -> None:
    gen = TrafficGenerator(SMALL)
    truth = gen.user_truth("u000000")
    assert truth["language"] in ("zh", "en") and truth["currency"] in ("CNY", "USD")
    assert 1 <= len(truth["interests"]) <= 3
    assert abs(sum(i["weight"] for i in truth["interests"]) - 1.0) < 1e-9
    assert truth["purchase_cadence_days"] > 0
    with pytest.raises(KeyError):
        gen.user_truth("u999999")
    with pytest.raises(KeyError):
        gen.user_truth("nobody")


def test_erasure_events_end_the_user() -> None:
    cfg = TrafficConfig(seed=5, users=200, products=300, erasure_rate=0.002)
    events = list(TrafficGenerator(cfg).history(20))
    erased_at = {e["user_id"]: e["ts"] for e in events if e["type"] == "user_erasure"}
    assert erased_at
    for e in events:
        if e["type"] == "user_erasure":
            assert e["requested_by"] == "privacy-desk" and e["reason"]
        elif e["user_id"] in erased_at:
            assert e["ts"] <= erased_at[e["user_id"]]
    assert sum(1 for e in events if e["type"] == "user_erasure") == len(erased_at)
    # Zero rate (the default) never erases anyone.
    assert not any(e["type"] == "user_erasure" for e in _small_history())


def test_live_uses_the_clock_and_shows_purchases() -> None:
    clock = itertools.count(1_800_000_000_000, 50)
    gen = TrafficGenerator(TrafficConfig(users=300, products=500))
    events = list(itertools.islice(gen.live(lambda: next(clock)), 3000))
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts) and ts[0] > 1_800_000_000_000
    assert len({e["event_id"] for e in events}) == len(events)
    assert any(e["type"] == "purchase" for e in events[:1000])
    # A restart (a later clock) never reuses an event id.
    later = itertools.count(1_900_000_000_000, 50)
    again = list(itertools.islice(gen.live(lambda: next(later)), 100))
    assert not {e["event_id"] for e in again} & {e["event_id"] for e in events}


def test_live_survives_everyone_churning() -> None:
    clock = itertools.count(1_800_000_000_000, 1)
    gen = TrafficGenerator(TrafficConfig(users=5, products=50, churn_share=1.0))
    events = list(itertools.islice(gen.live(lambda: next(clock)), 5000))
    assert len(events) == 5000


def test_tiny_catalog_and_population() -> None:
    gen = TrafficGenerator(TrafficConfig(users=1, products=1))
    assert len(gen.catalog()) == 1
    assert len(list(gen.history(5))) > 0


def test_jsonl_round_trip(tmp_path: Path) -> None:
    gen = TrafficGenerator(SMALL)
    events = gen.catalog()[:50] + list(itertools.islice(gen.history(5), 500))
    path = tmp_path / "events.jsonl"
    assert to_jsonl(events, path) == len(events)
    assert list(read_jsonl(path)) == events
    assert path.read_bytes().count(b"\n") == len(events)


def test_events_pass_the_validator() -> None:
    validate = pytest.importorskip("schemas.validate")
    gen = TrafficGenerator(TrafficConfig(erasure_rate=0.001))
    events = gen.catalog() + list(itertools.islice(gen.history(30), 3000))
    now = max(e["ts"] for e in events) + 1
    for e in events:
        decoded = validate.decode(orjson.dumps(e), validate.Limits(), now_ms=now)
        assert isinstance(decoded, dict), (e, decoded)
        assert decoded == e
