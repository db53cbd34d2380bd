"""The stream calibrates churn on its own matured outcomes: exact labels, no leak, erasable."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.redis import keys
from profiles.redis.churn import PAIRS_FIELD
from stream.settings import Settings
from stream.worker.runtime import Runtime

pytestmark = pytest.mark.integration
DAY = 86_400_000
START = 1_767_225_600_000
H = 30


def purchase(n: int, user: str, ts: int, amount: float) -> dict[str, Any]:
    return {
        "event_id": f"{user}-p{n}",
        "type": "purchase",
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
        "order_id": f"{user}-o{n}",
        "currency": "CNY",
        "amount": amount,
        "items": [{"product_id": "p1", "quantity": 1, "price": amount, "title": "Tea"}],
    }


def erasure(user: str, ts: int) -> dict[str, Any]:
    return {
        "event_id": f"{user}-erase",
        "type": "user_erasure",
        "schema_version": 1,
        "user_id": user,
        "ts": ts,
        "requested_by": "privacy-desk",
        "reason": "GDPR art. 17",
    }


def shop(customers: int, days: int, seed: int) -> list[dict[str, Any]]:
    """Customers buying at their own rates until they drop out (a BG/NBD-like shop)."""
    rng = np.random.default_rng(seed)
    events = []
    for c in range(customers):
        rate = rng.gamma(1.5, 1 / 12.0)  # purchases per day
        t = rng.uniform(0, 20)
        stop = t + rng.exponential(80.0)
        n = 0
        while t < min(stop, days):
            ts = START + int(t * DAY) + 1 + c  # never exactly on a snapshot time
            events.append(purchase(n, f"c{c}", ts, float(rng.choice([5.0, 20.0, 80.0]))))
            n += 1
            t += rng.exponential(1 / rate) + 0.5
    return sorted(events, key=lambda e: int(e["ts"]))


async def test_refits_label_matured_snapshots_exactly_and_fit_the_calibrator(
    redis_url: str,
) -> None:
    env = {
        "RTP_REDIS_URL": redis_url,
        "RTP_EMBEDDINGS": "false",
        "RTP_SEGMENTS": "false",
        "RTP_PARTITIONS": "2",
        "RTP_CHURN_CLOCK": "event",
        "RTP_CHURN_HORIZON_DAYS": str(H),
    }
    rt = Runtime(Settings.from_env(env))
    await rt.store.load_scripts()
    await rt.churn_store.load_scripts()
    events = shop(400, 130, seed=5)
    at = 0
    for day in range(20, 131, 5):  # a refit every 5 days of event time
        cut = START + day * DAY
        batch = []
        while at < len(events) and int(events[at]["ts"]) < cut:
            batch.append(Record(InputPartition("in", 0), at, events[at]))
            at += 1
        await rt.updater.process(batch)
        rt.observer.watermark_ms = cut
        await rt.store.client.delete(keys.CHURN_FIT_LOCK)  # the next interval
        assert await rt.fit_churn() is not None
    # Every label is the truth: no purchase in (s, s + H] (or the pair was dropped).
    bought: dict[str, list[int]] = {}
    for e in events:
        bought.setdefault(str(e["user_id"]), []).append(int(e["ts"]))
    users = sorted(bought)
    stored = await rt.churn_store.load_pairs(users)
    labelled = 0
    for user in users:
        for entry in stored[user]:
            s, label = int(entry[0]), entry[2]
            if label == -1:
                assert s + H * DAY > rt.observer.watermark_ms  # not matured yet
                continue
            truth = not any(s < t <= s + H * DAY for t in bought[user])
            assert label == int(truth), (user, s)
            labelled += 1
    assert labelled >= 1000
    # The calibrator was fitted on them, stored with the model and exported.
    assert rt.churn is not None and rt.churn.calibrator is not None
    cal = rt.churn.calibrator
    model = await rt.churn_store.load_model()
    assert model is not None and model[1] == cal
    assert cal.pairs == labelled
    exported = rt.metrics.registry.get_sample_value
    assert exported("rtp_churn_calibration_auc", {"score": "model"}) == cal.auc_model
    assert exported("rtp_churn_calibration_auc", {"score": "calibrated"}) == cal.auc_calibrated
    assert ("+cal-" in rt.churn.version()) == cal.better
    # Erasure takes the snapshots with the profile, and a later refit does not bring them back.
    user = next(u for u in users if stored[u])
    await rt.updater.process([Record(InputPartition("in", 0), at, erasure(user, cut))])
    await rt.store.client.delete(keys.CHURN_FIT_LOCK)
    await rt.fit_churn()
    left = await rt.store.client.hget(keys.profile(user), PAIRS_FIELD)
    exists = await rt.store.client.exists(keys.profile(user))
    raw = await rt.store.client.get(keys.CHURN_PARAMS)
    await rt.store.close()
    assert left is None and not exists
    assert orjson.loads(raw)["calibrator"] is not None
