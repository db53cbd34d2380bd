"""The audience rule format: every kind of mistake is refused on load with where and why;
valid rules evaluate over the profile fields and say when time alone may change them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from profiles.audiences.definitions import definitions_from, definitions_from_bytes
from profiles.audiences.fields import DAY_MS, FIELDS
from profiles.audiences.rules import MAX_DEPTH, Fieldset, RuleError, parse
from profiles.core.profile import Profile
from profiles.sentiment.state import SentimentState


def pred(field: str, op: str, value: Any) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (pred("spnd", ">", 1), "rule: unknown field 'spnd'; fields: churn_level"),
        (pred("spend", "contains", "x"), "operator 'contains' does not apply to spend (number)"),
        (pred("tags", ">", 1), "operator '>' does not apply to tags (set); use one of contains"),
        (pred("spend", ">", "100"), "rule: spend > needs a finite number, got '100'"),
        (pred("spend", ">", True), "spend > needs a finite number, got True"),
        (pred("spend", ">", float("nan")), "needs a finite number"),
        (pred("value_tier", "==", 3), "value_tier == needs a string, got 3"),
        (pred("value_tier", "in", []), "needs a non-empty list of at most 1000 strings"),
        (pred("value_tier", "in", ["lost", 1]), "needs a non-empty list"),
        (pred("consent", "==", "yes"), "consent == needs true or false, got 'yes'"),
        (pred("days_since_purchase", ">", -1), "needs a number of days from 0 to 100000"),
        ({"all": []}, "rule.all: a non-empty list of rules"),
        ({"any": {"field": "x"}}, "rule.any: a non-empty list of rules"),
        ({"all": [pred("orders", ">", 1), {"op": "=="}]}, "rule.all[1]: expected one of all"),
        ({"not": [pred("orders", ">", 1)]}, "rule.not: a rule is an object, got list"),
        (
            {"field": "orders", "op": ">", "value": 1, "x": 2},
            "got keys ['field', 'op', 'value', 'x']",
        ),
        ("orders > 1", "rule: a rule is an object, got str"),
    ],
)
def test_bad_rules_are_refused_with_where_and_why(raw: Any, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse(raw)
    assert message in str(caught.value)


def test_deep_or_huge_rules_are_refused() -> None:
    rule: dict[str, Any] = pred("orders", ">", 1)
    for _ in range(MAX_DEPTH + 1):
        rule = {"not": rule}
    with pytest.raises(RuleError, match="nested deeper than 16"):
        parse(rule)
    with pytest.raises(RuleError, match="more than 200 nodes"):
        parse({"any": [pred("orders", ">", i) for i in range(300)]})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], 'definitions: an object with one key, "audiences"'),
        ({"audiences": [], "version": 3}, 'an object with one key, "audiences"'),
        ({"audiences": {}}, "audiences: a list"),
        ({"audiences": [{"name": "a"}]}, "audiences[0]: keys name, rule"),
        ({"audiences": [{"name": "a" * 65, "rule": {}}]}, "audiences[0].name: 1-64 characters"),
        (
            {"audiences": [{"name": "a", "rule": pred("orders", ">", 1)}] * 2},
            "audiences[1].name: 'a' is defined twice",
        ),
        (
            {"audiences": [{"name": "a", "rule": {"all": [pred("x", "==", 1)]}}]},
            "audiences[0].rule.all[0]: unknown field 'x'",
        ),
        (
            {"audiences": [{"name": "a", "rule": pred("orders", ">", 1), "description": 5}]},
            "audiences[0].description: a string",
        ),
    ],
)
def test_bad_definition_files_are_refused(raw: Any, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        definitions_from(raw)
    assert message in str(caught.value)


def test_a_file_that_is_not_json_is_refused() -> None:
    with pytest.raises(RuleError, match="definitions: not JSON"):
        definitions_from_bytes(b"{audiences: [")


def customer(orders: int, spend_cents: int, last_ts: int, tags: dict[str, float]) -> Profile:
    return Profile(
        "u",
        version=3,
        first_ts=0,
        last_ts=last_ts,
        counts={"purchase": orders, "click": 4},
        orders=orders,
        spend_cents={"USD": spend_cents},
        last_purchase_ts=last_ts if orders else None,
        tag_anchor=0,
        tags=tags,
    )


def test_rules_evaluate_over_the_profile_fields() -> None:
    p = customer(3, 12_050, 10 * DAY_MS, {"tea": 3.0, "cups": 1.0})
    p.churn = {"level": "medium", "risk": 0.55, "next_check_ms": 40 * DAY_MS}
    p.parts["value"] = {"tier": "loyal"}
    p.parts["audiences"] = {"language": [1, "en"], "consent": [1, True]}
    v = Fieldset(p, 12 * DAY_MS)

    def holds(raw: dict[str, Any]) -> bool:
        return parse(raw).holds(v)

    assert holds(pred("spend", ">=", 120.5)) and not holds(pred("spend", ">", 120.5))
    assert holds(pred("orders", "==", 3)) and holds(pred("events", "==", 7))
    assert holds(pred("tags", "contains", "tea")) and not holds(pred("tags", "contains", "x"))
    assert holds(pred("tags", "contains_any", ["x", "cups"]))
    assert holds(pred("churn_level", "in", ["medium", "high"]))
    assert holds(pred("churn_risk", ">", 0.5)) and holds(pred("value_tier", "==", "loyal"))
    assert holds(pred("days_since_purchase", "==", 2)) and holds(pred("language", "==", "en"))
    assert holds(pred("consent", "==", True))
    assert holds({"any": [pred("orders", ">", 5), {"not": pred("spend", "<", 100)}]})
    assert not holds({"all": [pred("orders", ">", 1), pred("segment", "==", 2)]})
    # A field the profile lacks is false whatever the operator; `not` says "lacks or differs".
    assert not holds(pred("segment", "!=", 2)) and holds({"not": pred("segment", "==", 2)})


def test_every_field_reads_a_bare_profile_without_failing() -> None:
    bare = Profile("nobody")
    assert {name: f.get(bare, 0) for name, f in FIELDS.items()} == {
        "segment": None,
        "tags": frozenset(),
        "churn_level": None,
        "churn_risk": None,
        "value_tier": None,
        "risk_flags": frozenset(),
        "risk_severity": "none",
        "sentiment": None,
        "orders": 0,
        "spend": 0.0,
        "events": 0,
        "days_since_last_event": None,
        "days_since_purchase": None,
        "language": None,
        "consent": None,
    }


def test_the_next_change_is_where_a_recency_threshold_is_crossed() -> None:
    p = customer(1, 1000, 10 * DAY_MS, {})
    recent = definitions_from(
        {"audiences": [{"name": "recent", "rule": pred("days_since_purchase", "<=", 7)}]}
    )
    as_of = 10 * DAY_MS
    due = recent.next_change(p, as_of)
    assert due == 17 * DAY_MS + 1  # 7 days exactly still holds; the millisecond after not
    assert recent.evaluate(p, due - 1, False) == {"recent"}
    assert recent.evaluate(p, due, False) == set()
    assert recent.next_change(p, due) is None  # nothing more changes with time alone
    lapsed = definitions_from(
        {"audiences": [{"name": "lapsed", "rule": pred("days_since_purchase", ">=", 30)}]}
    )
    assert lapsed.next_change(p, as_of) == 40 * DAY_MS
    assert lapsed.evaluate(p, 40 * DAY_MS - 1, False) == set()
    assert lapsed.evaluate(p, 40 * DAY_MS, False) == {"lapsed"}
    churned = definitions_from(
        {"audiences": [{"name": "hi", "rule": pred("churn_level", "==", "high")}]}
    )
    p.churn = {"level": "low", "next_check_ms": 30 * DAY_MS}
    assert churned.next_change(p, as_of) == 30 * DAY_MS  # when the churn sweep may move it
    assert churned.next_change(p, 31 * DAY_MS) == 31 * DAY_MS + 1  # churn not swept yet


def test_risk_sentiment_and_tier_fields_and_when_they_change_with_time() -> None:
    p = customer(2, 5000, 10 * DAY_MS, {})
    p.parts["risk"] = {
        "flags": {
            "bot_clicks": {"severity": "high", "until": 11 * DAY_MS},
            "review_burst": {"severity": "low", "until": 13 * DAY_MS},
        }
    }
    p.parts["sentiment"] = SentimentState(2, 2, 0, 0, 0, -1.2, 2.0, 2.0, 10 * DAY_MS).to_dict()
    p.parts["value"] = {"tier": "loyal", "next_check_ms": 20 * DAY_MS}
    clean = definitions_from(
        {
            "audiences": [
                {"name": "clean", "rule": pred("risk_severity", "in", ["none", "low"])},
                {"name": "bots", "rule": pred("risk_flags", "contains", "bot_clicks")},
                {"name": "unhappy", "rule": pred("sentiment", "<", -0.5)},
                {"name": "loyal", "rule": pred("value_tier", "==", "loyal")},
            ]
        }
    )
    assert clean.evaluate(p, 10 * DAY_MS, False) == {"bots", "unhappy", "loyal"}
    assert clean.next_change(p, 10 * DAY_MS) == 11 * DAY_MS  # the first flag lapses
    # Past its `until` a flag no longer counts, whether or not the risk feature cleared it.
    assert clean.evaluate(p, 11 * DAY_MS, False) == {"clean", "unhappy", "loyal"}


def test_opted_out_users_are_in_no_audience() -> None:
    p = customer(1, 1000, DAY_MS, {})
    everyone = definitions_from({"audiences": [{"name": "all", "rule": pred("events", ">=", 0)}]})
    assert everyone.evaluate(p, DAY_MS, require_consent=False) == {"all"}
    assert everyone.evaluate(p, DAY_MS, require_consent=True) == set()  # opt-in: never said yes
    p.parts["audiences"] = {"consent": [DAY_MS, False]}
    assert everyone.evaluate(p, DAY_MS, require_consent=False) == set()
    p.parts["audiences"] = {"consent": [DAY_MS, True]}
    assert everyone.evaluate(p, DAY_MS, require_consent=True) == {"all"}


def test_definitions_round_trip_and_the_digest_follows_the_content() -> None:
    raw = {
        "audiences": [
            {"name": "t", "description": "", "rule": pred("tags", "contains_any", ["b", "a"])}
        ]
    }
    defs = definitions_from(raw)
    again = definitions_from(defs.to_json())
    assert again.to_json() == defs.to_json() and again.digest == defs.digest
    other = definitions_from({"audiences": [{"name": "t", "rule": pred("orders", ">", 1)}]})
    assert other.digest != defs.digest


def test_the_readme_lists_every_field_with_its_type() -> None:
    readme = (Path(__file__).resolve().parents[4] / "README.md").read_text()
    section = readme.split("## Audiences\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (number|string|set|bool) \|", section, re.M)
    assert dict(rows) == {name: f.type for name, f in FIELDS.items()}


def test_rtp_risk_exclude_keeps_flagged_users_out_until_the_flag_lapses() -> None:
    p = customer(2, 5000, 10 * DAY_MS, {})
    p.parts["risk"] = {"flags": {"card_testing": {"severity": "high", "until": 12 * DAY_MS}}}
    buyers = definitions_from({"audiences": [{"name": "buyers", "rule": pred("orders", ">", 0)}]})
    assert buyers.evaluate(p, 10 * DAY_MS, False) == {"buyers"}  # RTP_RISK_EXCLUDE=none
    assert buyers.evaluate(p, 10 * DAY_MS, False, exclude="medium") == set()
    assert buyers.next_change(p, 10 * DAY_MS, exclude="medium") == 12 * DAY_MS  # it lapses
    assert buyers.evaluate(p, 12 * DAY_MS, False, exclude="medium") == {"buyers"}
    p.parts["risk"]["flags"]["card_testing"]["severity"] = "low"
    assert buyers.evaluate(p, 10 * DAY_MS, False, exclude="medium") == {"buyers"}  # too mild
