"""``python -m stream experiment report``: conversion per arm, lift with its interval and the
sample size needed, from the per-arm counters in Redis."""

from __future__ import annotations

from typing import Any

from stream.settings import Settings


async def experiment_report(settings: Settings, alpha: float = 0.05) -> dict[str, Any]:
    """The running experiment's report (RTP_EXPERIMENT)."""
    from profiles.redis import experiments
    from profiles.redis.client import async_client

    s = settings.experiment
    if not s.name:
        raise SystemExit("no experiment: set RTP_EXPERIMENT (and RTP_EXPERIMENT_ARMS)")
    client = async_client(settings.redis.url.get_secret_value(), settings.redis.tls)
    try:
        return await experiments.experiment_report(
            client, settings.kafka.partitions, s.name, s.arms, alpha
        )
    finally:
        await client.aclose()
