"""``python -m stream partitions grow --to M``: more owner partitions without loss or double apply.

Fences are per *input* partition (the highest input offset applied to a profile), so the
routed topic is only transport and its partition count can change, provided no bundle routed
under the old count is still waiting: a user moved to a new owner partition must not get a
newer event applied there before an older one still queued on the old partition (the older one
would then sit below the fence and be skipped). Hence drain, then switch:

1. restart every worker with ``RTP_INGEST_PAUSED=true``: they apply what is routed and read no
   input (the input waits in Kafka, uncommitted); once ``python -m stream lag`` shows lag 0 on
   the routed topic, stop them (their sweeps write the per-partition indexes);
2. this command checks that the routed topic is drained and quiet, creates a new routed topic
   with ``M`` partitions, and moves every per-partition index member (churn customers and due
   times, value due times) to its new owner partition;
3. start the workers with ``RTP_PARTITIONS=M``, ``RTP_ROUTED_TOPIC=<new>`` and
   ``RTP_OUTPUT_PARTITIONS=<old N>`` (the outputs keep their partitions, so consumers keep each
   user's order), ingest on again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from profiles.redis.client import async_client
from profiles.redis.partitions import Moved, rebucket
from stream.cli.lag import PartitionLag, group_lag
from stream.cli.topics import reconcile
from stream.settings import Settings


@dataclass(frozen=True)
class Plan:
    old: int
    new: int
    routed: str  # the new routed topic
    output_partitions: int


class NotDrained(SystemExit):
    """The routed topic still holds bundles not applied, or is still being written."""


def plan(settings: Settings, to: int, routed_topic: str | None) -> Plan:
    old = settings.kafka.partitions
    if to <= old:
        raise SystemExit(
            f"error: owner partitions can only grow: RTP_PARTITIONS is {old}, asked for {to}"
        )
    routed = routed_topic or f"{settings.topics.routed}-p{to}"
    if routed == settings.topics.routed:
        raise SystemExit("error: the new routed topic needs a new name (--routed-topic)")
    return Plan(old, to, routed, settings.topics.output_partitions or old)


def grown(settings: Settings, p: Plan) -> Settings:
    """The settings the workers restart with."""
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"partitions": p.new}),
            "topics": settings.topics.model_copy(
                update={"routed": p.routed, "output_partitions": p.output_partitions}
            ),
        }
    )


async def drained(settings: Settings, settle_s: float) -> list[PartitionLag]:
    """The routed topic's lag, read twice ``settle_s`` apart: empty when drained and quiet."""
    first = await group_lag(settings, [settings.topics.routed])
    await asyncio.sleep(settle_s)
    second = await group_lag(settings, [settings.topics.routed])
    ends = {(r.topic, r.partition): r.end for r in first}
    return [r for r in second if r.lag > 0 or ends.get((r.topic, r.partition)) != r.end]


async def grow(
    settings: Settings,
    to: int,
    routed_topic: str | None = None,
    settle_s: float = 10.0,
    say: Callable[[str], None] = print,
) -> Moved:
    p = plan(settings, to, routed_topic)
    busy = await drained(settings, settle_s)
    if busy:
        where = ", ".join(f"{r.topic}[{r.partition}] lag {r.lag}" for r in busy)
        raise NotDrained(
            f"error: {settings.topics.routed} is not drained or still written ({where}). "
            "Restart every worker with RTP_INGEST_PAUSED=true, wait until `python -m stream "
            "lag` shows lag 0 on it, stop them, then run this again."
        )
    say(f"{settings.topics.routed}: drained and quiet for {settle_s:g}s")
    after = grown(settings, p)
    rows = await reconcile(after, create=True)
    for row in rows:
        if row.spec.role == "routed":
            say(f"{row.spec.name}: {'created' if row.created else 'exists'}, {p.new} partitions")
        elif row.problems:
            say(f"note: {row.spec.name}: {'; '.join(row.problems)}")
    client = async_client(settings.redis.url.get_secret_value(), settings.redis.tls)
    try:
        moved = await rebucket(client, p.old, p.new)
    finally:
        await client.aclose()
    for kind, n in sorted(moved.counts.items()):
        say(f"moved {n} members of {kind}:* to their new owner partitions")
    say(
        "now start every worker with: "
        f"RTP_PARTITIONS={p.new} RTP_ROUTED_TOPIC={p.routed} "
        f"RTP_OUTPUT_PARTITIONS={p.output_partitions} (and RTP_INGEST_PAUSED unset)"
    )
    return moved
