"""The per-arm experiment counters, read from every owner partition's shared counter
(``rtp:xp:{<partition>}``, written by the experiment feature's fenced ``CountsAdd``)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from profiles.experiments.assign import parse_arms
from profiles.experiments.feature import COUNTER
from profiles.experiments.report import arm_counts, report
from profiles.recommend.popularity import NO_DECAY, PartitionCounts, merge_partitions
from profiles.redis import keys


async def experiment_totals(client: aioredis.Redis, partitions: int) -> dict[str, float]:
    """Every ``<experiment>/<arm>/<count>`` field summed over the owner partitions."""
    pipe = client.pipeline(transaction=False)
    for partition in range(partitions):
        pipe.hgetall(keys.counter(COUNTER, partition))
    parts = []
    for found in await pipe.execute():
        fields = {_text(k): _text(v) for k, v in found.items()}
        if "@a" not in fields:
            continue
        counts = {k: float(v) for k, v in fields.items() if not k.startswith("@")}
        latest = fields.get("@t")
        parts.append(
            PartitionCounts(int(fields["@a"]), None if latest is None else int(latest), counts)
        )
    # Keys written before NO_DECAY (a 2**52 ms half-life) hold values within 1e-6 of whole
    # counts; summed as they are, the report rounds them (report.arm_counts).
    merged, _, _ = merge_partitions(parts, NO_DECAY)
    return merged


def _text(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


async def experiment_report(
    client: aioredis.Redis, partitions: int, name: str, arms: str, alpha: float = 0.05
) -> dict[str, Any]:
    """The report of experiment ``name`` (arms as in RTP_EXPERIMENT_ARMS) from the counters;
    the control is its first ``holdout...`` arm, else its last arm."""
    names = [arm for arm, _ in parse_arms(arms)]
    control = next((n for n in names if n.startswith("holdout")), names[-1])
    totals = await experiment_totals(client, partitions)
    return {"experiment": name, **report(arm_counts(totals, name, names), control, alpha)}
