"""``python -m stream churn fit|backtest``: refit the churn model now; back-test it on a log.

``fit`` runs the workers' own refit (:meth:`profiles.churn.sweeper.ChurnSweeper.fit`, the same
deterministic sample, warm-started from the stored fit) against Redis, even if a worker's fit
holds the lock; each worker picks the new model up at its next sweep and re-checks every
customer. ``backtest FILE`` is the real-log back-test of :mod:`stream.evaluation.churn_log`
with the settings a replay needs (event time, no earliest-event cut) fixed by the command.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from profiles.churn.risk import RiskConfig
from profiles.churn.tracker import ChurnTracker
from profiles.redis.store import RedisStore
from stream.settings import Settings
from stream.worker.compose import churn_sweeper, value_scorer

__all__ = ["fit", "parse_time"]


def parse_time(text: str) -> int:
    """Epoch ms from epoch ms or an ISO 8601 date/time (UTC when no zone is given).

    >>> parse_time("1997-10-01"), parse_time("875664000000")
    (875664000000, 875664000000)
    """
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


async def fit(settings: Settings, as_of_ms: int | None) -> dict[str, Any]:
    """Refit now, as of ``as_of_ms`` (None: the wall clock, or with ``RTP_CHURN_CLOCK=event``
    the latest event among the sampled customers); what was stored."""
    if not settings.churn.enabled:
        raise SystemExit("RTP_CHURN is false: no churn model to fit")
    if as_of_ms is None and settings.churn.clock != "event":
        as_of_ms = int(time.time() * 1000)
    store = RedisStore.from_url(
        settings.redis.url.get_secret_value(), settings.privacy.key, tls=settings.redis.tls
    )
    try:
        tracker = ChurnTracker(RiskConfig(horizon_days=settings.churn.horizon_days))
        sweeper = churn_sweeper(
            settings, store, tracker, value_scorer(settings, tracker), lambda _: None
        )
        await sweeper.refresh_model()  # warm start from the stored fit
        ttl = max(1, int(settings.churn.fit_s * 0.9))
        params = await sweeper.fit(as_of_ms, ttl, force=True)
        stored = await sweeper.store.load_model()
    finally:
        await store.close()
    if params is None:
        raise SystemExit("too few customers to fit the churn model (need 50 who bought)")
    return {
        "model_version": tracker.version(),
        "params": {"r": params.r, "alpha": params.alpha, "a": params.a, "b": params.b},
        "stored": stored is not None and stored[0] == params,
    }
