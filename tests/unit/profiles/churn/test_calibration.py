"""The calibrator: it recovers a known calibration, keeps the time-monotone signs, never ships
a score that lost on its holdout, and is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from profiles.churn.calibration import (
    FEATURES,
    HOLDOUT_SHARE,
    Calibrator,
    feature_row,
    fit_calibrator,
    in_holdout,
)

K = len(FEATURES)


def synthetic(n: int, seed: int, weights: list[float]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, K))
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-(0.5 + f @ np.array(weights))))
    return f, y, [f"user-{seed}-{i}" for i in range(n)]


def test_it_recovers_a_known_logistic_and_is_calibrated_on_new_pairs() -> None:
    truth = [1.5, 0.5, -1.0, 0.0, 0.8, -0.6]
    f, y, users = synthetic(20_000, 1, truth)
    cal = fit_calibrator(f, y, users)
    assert cal is not None and cal.better
    # Weights are on standardised features; these are ~N(0, 1), so close to the truth.
    np.testing.assert_allclose(cal.weights, truth, atol=0.1)
    f2, y2, _ = synthetic(20_000, 2, truth)
    p = cal.risks(f2)
    order = np.argsort(p)
    for chunk in np.array_split(order, 10):  # decile by decile, predicted ~ observed
        assert abs(p[chunk].mean() - y2[chunk].mean()) < 0.03
    assert cal.risk(tuple(f2[0])) == pytest.approx(p[0])


def test_weights_of_features_that_grow_with_time_are_never_negative() -> None:
    # The data say "longer since the last event, more likely to buy": the fit may not follow
    # (that would let the risk fall as time passes), so that weight stops at 0.
    f, y, users = synthetic(5_000, 3, [1.0, 0.0, 0.0, 0.0, -2.0, -1.0])
    cal = fit_calibrator(f, y, users)
    assert cal is not None
    for (name, grows), w in zip(FEATURES, cal.weights, strict=True):
        if grows:
            assert w >= 0.0, name
    assert cal.weights[4] == 0.0
    # Order value stays put as time passes, so its weight may take either sign.
    assert cal.weights[5] < -0.3


def test_a_calibrator_that_loses_to_the_model_is_not_better() -> None:
    # The outcome depends on the model's log-odds only; the other features are noise.
    f, y, users = synthetic(400, 4, [2.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    cal = fit_calibrator(f, y, users, l2=5.0)  # heavy shrinkage: a worse ranking is possible
    assert cal is not None
    assert cal.better == (cal.auc_calibrated > cal.auc_model)


def test_too_few_or_one_sided_pairs_give_no_calibrator() -> None:
    f, y, users = synthetic(100, 5, [1.0, 0, 0, 0, 0, 0])
    assert fit_calibrator(f, y, users) is None  # under min_pairs
    assert fit_calibrator(f[:0], y[:0], []) is None
    assert fit_calibrator(f, np.ones(100, dtype=bool), users, min_pairs=10) is None
    with pytest.raises(ValueError):
        fit_calibrator(f, y[:5], users)


def test_deterministic_and_round_trips() -> None:
    f, y, users = synthetic(2_000, 6, [1.0, 0.3, -0.5, 0.2, 0.4, 0.1])
    a, b = fit_calibrator(f, y, users), fit_calibrator(f, y, users)
    assert a == b and a is not None
    assert Calibrator.from_dict(a.to_dict()) == a
    assert b is not None and a.version() == b.version()


def test_the_holdout_is_a_stable_hash_share() -> None:
    users = [f"u{i}" for i in range(20_000)]
    share = np.mean([in_holdout(u) for u in users])
    assert abs(share - HOLDOUT_SHARE) < 0.01
    assert [in_holdout(u) for u in users[:50]] == [in_holdout(u) for u in users[:50]]


def test_feature_row_clips_probabilities() -> None:
    assert np.isfinite(feature_row(1.0, 0.0, 0, 0.0, 0.0, 0.0)).all()
    assert np.isfinite(feature_row(0.0, -1.0, 0, -1.0, -1.0, -5.0)).all()
    assert np.isfinite(feature_row(0.5, 1, 1, 1, 1, float("inf"))).all()
    assert feature_row(0.9, 1, 1, 1, 1, 1)[0] > feature_row(0.5, 1, 1, 1, 1, 1)[0]


def test_order_value_reads_spend_over_orders_and_survives_odd_values() -> None:
    from profiles.churn.features import Behaviour

    base = {"first_ts": 0, "last_ts": 0, "orders": 4}
    b = Behaviour.read({**base, "spend_cents": {"CNY": 6000, "USD": 2000}})
    assert b.order_value == 20.0
    for odd in ({"CNY": -5}, {"CNY": float("nan")}, {"CNY": "x"}, None, "12", True):
        assert Behaviour.read({**base, "spend_cents": odd}).order_value == 0.0
    assert Behaviour.read({**base, "orders": 0, "spend_cents": {"CNY": 1}}).order_value == 0.0
