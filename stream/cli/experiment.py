"""``python -m stream experiment report``: conversion per arm, lift with its interval and the
sample size needed, from the per-arm counters in Redis."""

from __future__ import annotations

from typing import Any

from profiles.experiments.assign import parse_arms
from profiles.experiments.report import arm_counts, report
from stream.settings import Settings


async def experiment_report(settings: Settings, alpha: float = 0.05) -> dict[str, Any]:
    """The running experiment's report (RTP_EXPERIMENT); the control is its first holdout
    arm, else its last arm."""
    from profiles.redis.client import async_client
    from profiles.redis.experiments import experiment_totals

    s = settings.experiment
    if not s.name:
        raise SystemExit("no experiment: set RTP_EXPERIMENT (and RTP_EXPERIMENT_ARMS)")
    names = [name for name, _ in parse_arms(s.arms)]
    control = next((n for n in names if n.startswith("holdout")), names[-1])
    client = async_client(settings.redis.url.get_secret_value(), settings.redis.tls)
    try:
        totals = await experiment_totals(client, settings.kafka.partitions)
    finally:
        await client.aclose()
    out = report(arm_counts(totals, s.name, names), control, alpha)
    out["experiment"] = s.name
    return out
