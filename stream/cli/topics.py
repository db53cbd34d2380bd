"""``python -m stream topics create|check``: every topic on the broker as the layout says.

``create`` makes the missing ones (the input topic too: production brokers should not
auto-create) and reports drift on the others; ``check`` only reports. Drift is never repaired
silently: a different partition count of an owner topic moves users between partitions and
their fences, which needs the documented procedure, not a quiet alter.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stream.security import kafka_client_kwargs
from stream.settings import Settings
from stream.worker.topics import Found, TopicSpec, drift, layout

#: Kafka's "topic already exists": another worker or command created it first.
TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class Row:
    """What the command found (and did) for one topic."""

    spec: TopicSpec
    created: bool
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


async def reconcile(settings: Settings, create: bool) -> list[Row]:
    """Compare every topic of the layout with the broker; create missing ones if asked."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka.broker_hosts, **kafka_client_kwargs(settings.kafka)
    )
    await admin.start()
    try:
        specs = layout(settings)
        created: set[str] = set()
        if create:
            created = await _create_missing(admin, specs, set(await admin.list_topics()))
        found = await _describe(admin, [s.name for s in specs])
        return [
            Row(spec, spec.name in created, drift(spec, found.get(spec.name))) for spec in specs
        ]
    finally:
        await admin.close()


async def _create_missing(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec], existing: set[str]
) -> set[str]:
    wanted = [s for s in specs if s.name not in existing]
    if not wanted:
        return set()
    response = await admin.create_topics(
        [
            NewTopic(s.name, s.partitions, s.replication, topic_configs=dict(s.config))
            for s in wanted
        ]
    )
    made = set()
    for name, code, message in _topic_errors(response):
        if code == 0:
            made.add(name)
        elif code != TOPIC_ALREADY_EXISTS:  # lost a race: it exists, `check` compares it
            raise SystemExit(f"error: could not create topic {name!r}: {message} (code {code})")
    return made


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    # CreateTopicsResponse v0-v5: topic_errors is a list of (name, code[, message][, ...]).
    out = []
    for entry in getattr(response, "topic_errors", ()):
        name, code = entry[0], int(entry[1])
        message = entry[2] if len(entry) > 2 and isinstance(entry[2], str) else None
        out.append((name, code, message))
    return out


async def _describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, Found]:
    existing = set(await admin.list_topics())
    present = [n for n in names if n in existing]
    if not present:
        return {}
    shapes = {}
    for topic in await admin.describe_topics(present):
        if topic["error_code"] != 0:
            continue
        parts = topic["partitions"]
        replication = min((len(p["replicas"]) for p in parts), default=0)
        shapes[topic["topic"]] = (len(parts), replication)
    configs: dict[str, dict[str, str]] = {n: {} for n in present}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in present]
    for response in await admin.describe_configs(resources):
        for resource in response.resources:
            _code, _message, _kind, name, entries = resource[:5]
            configs[name] = {e[0]: e[1] for e in entries if e[1] is not None}
    return {
        n: Found(shapes[n][0], shapes[n][1], configs.get(n, {})) for n in present if n in shapes
    }


def report(rows: list[Row]) -> str:
    """A table a person reads: topic, role, layout, and what differs."""
    lines = [f"{'topic':32} {'role':9} {'layout':30} status"]
    for row in rows:
        s = row.spec
        shape = f"{s.partitions}p x{s.replication} {s.config.get('cleanup.policy', '')}"
        status = "created" if row.created else "ok"
        if row.problems:
            status = "DRIFT: " + "; ".join(row.problems)
        lines.append(f"{s.name:32} {s.role:9} {shape:30} {status}")
    bad = sum(not r.ok for r in rows)
    lines.append(
        f"{len(rows)} topics, {sum(r.created for r in rows)} created, {bad} with drift"
        + ("" if not bad else " (see README 'Running in production: topics')")
    )
    return "\n".join(lines)
