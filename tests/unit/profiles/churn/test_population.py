"""Population summaries and the periodic fit from stored profiles."""

from __future__ import annotations

import numpy as np

from profiles.churn.bgnbd import BGNBDParams, fit
from profiles.churn.features import DAY_MS
from profiles.churn.population import fit_population, summaries
from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record, apply
from tests.unit.profiles.churn.test_bgnbd import simulate


def profile_with_purchases(user: str, days: list[float], first_seen: float = 0.0) -> Profile:
    """A real profile built by :func:`apply` from a visit and purchases on ``days``."""
    visit = {"type": "search", "user_id": user, "ts": round(first_seen * DAY_MS), "query": "q"}
    events = [{"event_id": f"{user}-v", **visit}]
    for i, d in enumerate(days):
        events.append(
            {
                "event_id": f"{user}-{i}",
                "type": "purchase",
                "user_id": user,
                "ts": round(d * DAY_MS),
                "order_id": f"{user}-o{i}",
                "items": [{"product_id": "p", "quantity": 1, "price": 1.0}],
                "amount": 1.0,
                "currency": "CNY",
            }
        )
    p = Profile(user)
    apply(
        p,
        [Record(InputPartition("t", 0), i, e) for i, e in enumerate(events)],
        ProfileConfig(),
        lambda e: (),
    )
    return p


def test_summaries_read_real_profiles_in_days() -> None:
    profiles = [
        profile_with_purchases("a", [1.0, 4.0, 9.0]),
        profile_with_purchases("b", []),  # never bought: not in the population
        profile_with_purchases("c", [2.5]),
        profile_with_purchases("d", [30.0]),  # first purchase after as_of: not a customer yet
    ]
    x, t_x, T = summaries(profiles, 20 * DAY_MS)
    assert x.tolist() == [2.0, 0.0]
    assert t_x.tolist() == [8.0, 0.0]
    assert T.tolist() == [19.0, 17.5]
    empty = summaries([], 0)
    assert [a.shape for a in empty] == [(0,), (0,), (0,)]


def test_fit_population_needs_enough_customers() -> None:
    profiles = [profile_with_purchases(f"u{i}", [1.0, 1.0 + i % 7]) for i in range(49)]
    profiles.append(profile_with_purchases("browser", []))
    assert fit_population(profiles, 40 * DAY_MS) is None  # 49 customers < 50
    assert fit_population(profiles, 40 * DAY_MS, min_customers=49) is not None
    more = [*profiles, profile_with_purchases("u49", [2.0])]
    params = fit_population(more, 40 * DAY_MS)
    assert params is not None and params.variant == "mbgnbd"


def test_fit_population_is_the_fit_of_the_summaries() -> None:
    truth = BGNBDParams(0.8, 10.0, 0.8, 2.5, "mbgnbd")
    x, t_x, T = simulate(truth, 600, seed=9)
    as_of = 200 * DAY_MS
    profiles = []
    for i, (xi, txi, Ti) in enumerate(zip(x, t_x, T, strict=True)):
        first = 200.0 - float(Ti)
        # Only the first and last purchase and the count matter; fill the rest in between.
        days = [first] + [first + float(txi)] * int(xi)
        profiles.append(profile_with_purchases(f"u{i}", days, first_seen=first))
    got = fit_population(profiles, as_of)
    want = fit(*summaries(profiles, as_of), variant="mbgnbd")
    assert got == want
    sx, stx, sT = summaries(profiles, as_of)
    np.testing.assert_allclose(sx, x)
    np.testing.assert_allclose(stx, t_x, atol=1e-7)
    np.testing.assert_allclose(sT, T, atol=1e-7)
    assert got is not None
