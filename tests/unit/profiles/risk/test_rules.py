"""The rule table is data, validated on load; the window counts behind it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from profiles.risk import windows
from profiles.risk.rules import HOUR, MINUTE, RULES, Condition, Rule, table, validate


def test_the_shipped_table_is_valid_and_names_its_signals() -> None:
    assert validate(RULES) == RULES
    signals = {c.signal for r in RULES for c in r.conditions}
    assert signals == {
        "clicks",
        "purchases",
        "reviews",
        "amount_vs_own",
        "amount_vs_population",
        "interest_shift",
        "anomaly",
    }
    assert {r.severity for r in RULES} <= {"low", "medium", "high"}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (Rule("", (Condition("clicks", MINUTE, 1),), "high", HOUR), "unique and non-empty"),
        (Rule("a", (Condition("clicks", MINUTE, 1),), "urgent", HOUR), "severity"),
        (Rule("a", (Condition("clicks", MINUTE, 1),), "high", 0), "clear_after_ms"),
        (Rule("a", (), "high", HOUR), "needs a condition"),
        (Rule("a", (Condition("logins", MINUTE, 1),), "high", HOUR), "unknown signal"),
        (Rule("a", (Condition("reviews", 0, 1),), "high", HOUR), "needs a window"),
        (Rule("a", (Condition("anomaly", 0, math.nan),), "high", HOUR), "finite and > 0"),
        (Rule("a", (Condition("anomaly", 0, 0.0),), "high", HOUR), "finite and > 0"),
    ],
)
def test_a_bad_rule_is_refused_with_its_name(rule: Rule, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate((rule,))


def test_two_rules_of_one_name_are_refused() -> None:
    rule = Rule("a", (Condition("anomaly", 0, 1.0),), "low", HOUR)
    with pytest.raises(ValueError, match="unique"):
        validate((rule, rule))


def test_window_counts_slide_and_forget() -> None:
    c = windows.new()
    for ts in range(0, 60_000, 1_000):  # 60 events in one minute bucket
        windows.add(c, ts, MINUTE)
    assert windows.count(c, 59_000, MINUTE) == 60.0
    # A quarter into the next minute, three quarters of the last one still count.
    windows.add(c, 75_000, MINUTE)
    assert windows.count(c, 75_000, MINUTE) == 1 + 60 * 0.75
    # A late event of the previous bucket still counts there; an older one nowhere.
    windows.add(c, 59_500, MINUTE)
    windows.add(c, 1_000, MINUTE)
    windows.add(c, -120_000, MINUTE)
    assert c == [1, 1, 62]
    # Two buckets on, nothing is left.
    assert windows.count(c, 180_000, MINUTE) == 0.0


def test_the_readme_shows_the_rule_table_as_shipped() -> None:
    readme = (Path(__file__).parents[4] / "README.md").read_text(encoding="utf-8")
    assert table() in readme
