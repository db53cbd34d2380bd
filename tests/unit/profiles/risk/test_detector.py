"""Every rule at and just short of its threshold, flags clearing in event time, redelivery,
through the base profile's :func:`apply` with the detector as its learner."""

from __future__ import annotations

import copy
from typing import Any

from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record, apply
from profiles.risk import anomaly
from profiles.risk.detector import RiskChange, RiskDetector, open_flags
from profiles.risk.rules import DAY, HOUR, MINUTE

T0 = 1_767_225_600_000  # a minute (and hour, and day) boundary
CFG = ProfileConfig(lateness_ms=DAY)


def tagger(event: dict[str, Any]) -> list[tuple[str, float]]:
    topic = event.get("topic")
    return [(topic, 1.0)] if topic else []


class User:
    """One user's events through apply(), numbering offsets as it goes."""

    def __init__(self, detector: RiskDetector | None = None, user: str = "u") -> None:
        self.detector = detector or RiskDetector()
        self.profile = Profile(user)
        self.offset = 0
        self.records: list[Record] = []

    def send(self, *events: dict[str, Any]) -> list[RiskChange]:
        records = []
        for e in events:
            records.append(Record(InputPartition("in", 0), self.offset, e))
            self.offset += 1
        self.records += records
        return self.replay(records)

    def replay(self, records: list[Record]) -> list[RiskChange]:
        self.profile.parts["risk_changes"] = []
        apply(self.profile, records, CFG, tagger, [self.detector.learn])
        changes: list[RiskChange] = self.profile.parts.pop("risk_changes")
        return changes


def ev(kind: str, ts: int, n: int, **extra: Any) -> dict[str, Any]:
    base = {"event_id": f"{kind}{n}-{ts}", "type": kind, "schema_version": 1, "user_id": "u"}
    return {**base, "ts": ts, "product_id": "p", **extra}


def clicks(start: int, n: int, gap_ms: int, topic: str = "tea") -> list[dict[str, Any]]:
    return [ev("click", start + i * gap_ms, i, topic=topic) for i in range(n)]


def buy(ts: int, amount: float, n: int = 0, topic: str = "tea") -> dict[str, Any]:
    line = {"product_id": "p", "quantity": 1, "price": amount}
    return ev(
        "purchase",
        ts,
        n,
        order_id=f"o{n}-{ts}",
        amount=amount,
        currency="USD",
        items=[line],
        topic=topic,
    )


def opened(changes: list[RiskChange]) -> list[str]:
    return [c.rule for c in changes if c.status == "opened"]


def test_clicks_open_the_bot_flag_at_forty_a_minute_not_thirty_nine() -> None:
    u = User()
    assert opened(u.send(*clicks(T0, 39, 1000))) == []
    changes = u.send(ev("click", T0 + 39_500, 99))
    assert opened(changes) == ["bot_clicks"]
    flag = changes[0].flag
    assert flag["severity"] == "high" and flag["kind"] == "rule"
    assert flag["evidence"] == {"clicks_per_60s": {"value": 40.0, "threshold": 40}}
    assert (flag["opened"], flag["until"]) == (T0 + 39_500, T0 + 39_500 + HOUR)


def test_purchases_open_card_testing_at_six_an_hour() -> None:
    u = User()
    assert opened(u.send(*[buy(T0 + i * MINUTE, 1.0, i) for i in range(5)])) == []
    assert opened(u.send(buy(T0 + 5 * MINUTE, 1.0, 5))) == ["card_testing"]


def test_reviews_open_the_burst_flag_at_five_an_hour() -> None:
    u = User()
    reviews = [ev("review", T0 + i * MINUTE, i, rating=5, text="ok") for i in range(5)]
    assert opened(u.send(*reviews[:4])) == []
    assert opened(u.send(reviews[4])) == ["review_burst"]


def test_spread_out_activity_opens_nothing() -> None:
    u = User()
    changes = u.send(*clicks(T0, 200, 20_000))  # three a minute for over an hour
    changes += u.send(*[buy(T0 + i * 15 * MINUTE, 20.0, i) for i in range(5)])
    assert changes == [] and open_flags(u.profile) == {}


def after_two_orders(
    amount: float, population: float | None, own: tuple[float, float] = (400.0, 600.0)
) -> list[RiskChange]:
    u = User(RiskDetector(population=lambda: population))
    assert u.send(buy(T0, own[0], 1), buy(T0 + DAY, own[1], 2)) == []  # own mean 500
    return u.send(buy(T0 + 2 * DAY, amount, 3))


def test_an_order_far_above_the_users_own_history_and_the_population() -> None:
    assert opened(after_two_orders(7499.0, 100.0)) == []  # 14.998x the user's own mean
    changes = after_two_orders(7500.0, 100.0)
    assert opened(changes) == ["order_amount"]
    assert changes[0].flag["evidence"] == {
        "amount_vs_own": {"value": 15.0, "threshold": 15.0},
        "amount_vs_population": {"value": 75.0, "threshold": 15.0},
    }
    assert opened(after_two_orders(7500.0, 500.1)) == []  # 14.997x the population's
    assert opened(after_two_orders(7500.0, 500.0)) == ["order_amount"]


def test_before_a_value_fit_the_population_floor_is_the_reference() -> None:
    small = (100.0, 100.0)
    assert opened(after_two_orders(2999.0, None, small)) == []  # 14.995x the 200 floor
    assert opened(after_two_orders(3000.0, None, small)) == ["order_amount"]


def test_a_first_order_has_no_history_to_be_far_above() -> None:
    u = User(RiskDetector(population=lambda: 1.0))
    assert u.send(buy(T0, 100_000.0, 1)) == []


def history(u: User, topic: str = "tea") -> None:
    """40 events over weeks on one topic, three orders of 50."""
    u.send(*clicks(T0, 37, 12 * HOUR, topic))
    u.send(*[buy(T0 + 20 * DAY + i * DAY, 50.0, i, topic) for i in range(3)])


def takeover_at(amount: float) -> list[RiskChange]:
    u = User(RiskDetector(population=lambda: 20.0))
    history(u)
    later = T0 + 40 * DAY
    assert opened(u.send(*clicks(later, 6, 30_000, "laptop"))) == []
    return u.send(buy(later + 5 * MINUTE, amount, 8, "laptop"))


def test_a_sudden_new_interest_with_high_spend_is_a_takeover() -> None:
    assert opened(takeover_at(149.0)) == []  # 2.98x the user's 50
    changes = takeover_at(150.0)
    assert opened(changes) == ["takeover"]
    evidence = changes[0].flag["evidence"]
    assert evidence["interest_shift"] == {"value": 1.0, "threshold": 0.95}
    assert evidence["amount_vs_own"] == {"value": 3.0, "threshold": 3.0}


def test_high_spend_on_the_usual_interests_is_no_takeover() -> None:
    u = User(RiskDetector(population=lambda: 20.0))
    history(u)
    later = T0 + 40 * DAY
    u.send(*clicks(later, 6, 30_000, "tea"))
    assert opened(u.send(buy(later + 5 * MINUTE, 300.0, 8, "tea"))) == []


def test_a_new_user_has_no_habits_to_shift_from() -> None:
    u = User(RiskDetector(population=lambda: 20.0))
    u.send(*clicks(T0, 5, 30_000, "tea"), buy(T0 + DAY, 50.0, 1, "tea"))
    u.send(*clicks(T0 + 2 * DAY, 5, 30_000, "laptop"))
    assert opened(u.send(buy(T0 + 2 * DAY + 5 * MINUTE, 200.0, 2, "laptop"))) == []


def test_flags_stay_open_while_triggered_and_clear_after_in_event_time() -> None:
    u = User()
    u.send(*clicks(T0, 40, 1000))
    u.send(*clicks(T0 + MINUTE, 40, 1000))  # still at it: the flag lasts longer
    flag = open_flags(u.profile)["bot_clicks"]
    last = T0 + MINUTE + 39_000
    assert (flag["opened"], flag["last"], flag["hits"]) == (T0 + 39_000, last, 41)
    assert u.send(ev("click", last + HOUR - 1, 1)) == []
    changes = u.send(ev("click", last + HOUR, 2))
    assert [(c.rule, c.status, c.at) for c in changes] == [("bot_clicks", "cleared", last + HOUR)]
    assert open_flags(u.profile) == {}


def test_redelivered_events_are_not_counted_again() -> None:
    u = User()
    u.send(*clicks(T0, 30, 1000))
    state = repr(u.profile.parts["risk"])
    assert u.replay(u.records) == []  # fenced: the learner never sees them
    assert repr(u.profile.parts["risk"]) == state
    assert opened(u.send(*clicks(T0 + 31_000, 9, 1000))) == []  # 39 a minute, not 69
    assert opened(u.send(ev("click", T0 + 50_000, 9))) == ["bot_clicks"]


def test_a_replay_opens_the_same_flags_at_the_same_times() -> None:
    events = [*clicks(T0, 45, 800), *[buy(T0 + HOUR + i * MINUTE, 3.0, i) for i in range(7)]]
    live, replay = User(), User()
    a = [c for e in events for c in live.send(e)]  # one event per batch
    b = replay.send(*events)  # all at once
    assert [(c.rule, c.status, c.at) for c in a] == [(c.rule, c.status, c.at) for c in b]
    assert live.profile.parts["risk"] == replay.profile.parts["risk"]


def test_the_anomaly_score_catches_a_burst_only_after_the_users_warmup() -> None:
    calm, newcomer = User(), User()
    calm.send(*clicks(T0, 40, 40 * MINUTE))  # 40 one-click sessions
    burst = clicks(T0 + 2 * DAY, 60, 900)
    kinds = {c.flag["kind"] for c in calm.send(*burst) if c.status == "opened"}
    assert kinds == {"rule", "score"}
    assert {c.rule for c in newcomer.send(*burst)} == {"bot_clicks"}  # no baseline: rules only


def test_the_anomaly_score_at_and_short_of_its_threshold() -> None:
    s = anomaly.new()
    for _ in range(anomaly.WARMUP):
        assert anomaly.score(s, [1.0, 1.0, 0.0, 0.0, None]) == 0.0
        anomaly.end_session(s)
    assert anomaly.score(copy.deepcopy(s), [3.0, 1.0, 0.0, 0.0, None]) == 4.0
    assert anomaly.score(copy.deepcopy(s), [2.99, 1.0, 0.0, 0.0, None]) < 4.0
    assert anomaly.score(copy.deepcopy(s), [0.0, 0.0, 0.0, 0.0, None]) == 0.0
    # A session's peak is learned when it ends: the next session's burst is less unusual.
    anomaly.score(s, [3.0, 1.0, 0.0, 0.0, None])
    anomaly.end_session(s)
    assert anomaly.score(s, [3.0, 1.0, 0.0, 0.0, None]) < 4.0


def test_hostile_amounts_do_not_crash_or_flag() -> None:
    u = User()
    changes = u.send(
        buy(T0, 0.0, 1),
        ev(
            "purchase",
            T0 + 1,
            2,
            order_id="o",
            amount=-5.0,
            currency="USD",
            items=[{"product_id": "p", "quantity": 1, "price": 0}],
        ),
    )
    assert changes == []
