"""The layout of every topic the worker reads or writes, in one place.

The worker declares its outputs with it at start-up (Faust), ``python -m stream topics
create|check`` creates and verifies all of them with it (aiokafka's admin client), so the two
cannot disagree. User-keyed outputs are compacted: the latest event per user is what a
downstream consumer needs after a restart, and an erasure's tombstone (a null value under the
user's key) then removes the user's last event from the log for good. The input, the routed
stream and the dead letters are event logs: they expire after a retention.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from stream.settings import Settings

#: Topic roles, in the order the commands report them.
ROLES = (
    "input",
    "routed",
    "profiles",
    "dlq",
    "segments",
    "churn",
    "recs",
    "value",
    "sentiment",
    "risk",
    "audiences",
    "merged",
)
#: Outputs keyed by user id, where an erasure sends tombstones.
COMPACTED = frozenset(
    {"profiles", "segments", "churn", "recs", "value", "sentiment", "risk", "audiences"}
)


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the project wants it on the broker."""

    role: str
    name: str
    partitions: int
    replication: int
    config: Mapping[str, str] = field(default_factory=dict)


def layout(settings: Settings) -> list[TopicSpec]:
    """Every topic of this deployment with its partitions, replication and configuration.

    >>> from stream.settings import Settings
    >>> specs = {t.role: t for t in layout(Settings.from_env({}))}
    >>> specs["profiles"].config["cleanup.policy"], specs["routed"].config["cleanup.policy"]
    ('compact', 'delete')
    >>> specs["input"].partitions, specs["dlq"].partitions, specs["recs"].replication
    (4, 1, 1)
    """
    names = {
        "input": settings.topics.input,
        "routed": settings.topics.routed,
        "profiles": settings.topics.profile,
        "dlq": settings.topics.dlq,
        "segments": settings.topics.segment,
        "churn": settings.topics.churn,
        "recs": settings.topics.recs,
        "value": settings.topics.value,
        "sentiment": settings.topics.sentiment,
        "risk": settings.topics.risk,
        "audiences": settings.topics.audience,
        "merged": settings.topics.merged,
    }
    shared = {"min.insync.replicas": str(settings.topics.min_insync)}
    retention = str(int(settings.topics.retention_hours * 3_600_000))
    specs = []
    for role in ROLES:
        if role in COMPACTED:
            config = {**shared, "cleanup.policy": "compact"}
        else:
            config = {**shared, "cleanup.policy": "delete", "retention.ms": retention}
        if role == "input":
            partitions = settings.topics.input_partitions
        elif role == "dlq":
            partitions = 1  # dead letters are rare; one partition keeps them in order
        elif role == "routed":
            partitions = settings.kafka.partitions  # the owner partitions
        else:  # user-keyed outputs: as many as the owner partitions unless set apart
            partitions = settings.topics.output_partitions or settings.kafka.partitions
        specs.append(TopicSpec(role, names[role], partitions, settings.topics.replication, config))
    return specs


@dataclass(frozen=True)
class Found:
    """A topic as the broker describes it (``None``: it does not exist)."""

    partitions: int
    replication: int
    config: Mapping[str, str]


def drift(spec: TopicSpec, found: Found | None) -> list[str]:
    """How the broker's topic differs from ``spec``, one line per difference.

    >>> spec = TopicSpec("profiles", "p", 4, 3, {"cleanup.policy": "compact"})
    >>> drift(spec, Found(4, 3, {"cleanup.policy": "compact"}))
    []
    >>> drift(spec, Found(8, 1, {"cleanup.policy": "delete"}))  # doctest: +NORMALIZE_WHITESPACE
    ['partitions 8, want 4', 'replication 1, want 3', 'cleanup.policy=delete, want compact']
    >>> drift(spec, None)
    ['missing']
    """
    if found is None:
        return ["missing"]
    out = []
    if found.partitions != spec.partitions:
        out.append(f"partitions {found.partitions}, want {spec.partitions}")
    if found.replication != spec.replication:
        out.append(f"replication {found.replication}, want {spec.replication}")
    for key, want in spec.config.items():
        have = found.config.get(key)
        if have != want:
            out.append(f"{key}={have if have is not None else '(unset)'}, want {want}")
    return out


def ingest_group(settings: Settings) -> str:
    """The consumer group whose committed offsets say how far the input was routed: the
    batch ingest consumer's own (``stream/worker/consumer.py``), or the Faust app's."""
    if settings.ingest.consumer == "batch":
        return f"{settings.kafka.app_id}-ingest"
    return settings.kafka.app_id


def group_of(settings: Settings, topic: str) -> str:
    """The worker's consumer group reading ``topic``."""
    return ingest_group(settings) if topic == settings.topics.input else settings.kafka.app_id
