"""The narrow seam between the worker's stages and the broker.

A stage reads :class:`InputRecord` batches and writes through a :class:`Sink`, naming
topics by *role* (``stream/worker/topics.py``): ``routed``, ``profiles``, ``dlq``,
``segments``, ``churn``, ``recs``, ``value``, ``sentiment``, ``risk``,
``audiences``, ``merged``. Production wires the Faust
topics (:class:`KafkaSink`, :func:`inbound`); tests wire :class:`MemorySource` and
:class:`MemorySink`, which refuses
what a broker would (a message over its size limit), so a whole flow runs in-process with
the same code (``tests/integration/test_flow.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import faust
from aiokafka.errors import MessageSizeTooLargeError
from faust.types import EventT, TopicT

from stream.settings import Settings
from stream.worker import topics
from stream.worker.ingest import Inbound

#: One consumed message with its coordinates (what a stage reads).
InputRecord = Inbound

Headers = Sequence[tuple[str, bytes]]


class Source(Protocol):
    """What the ingest stage asks of its input beyond the batch: where a partition ends,
    and one earlier message (to tell a replayed partition from a reset one)."""

    def highwater(self, topic: str, partition: int) -> int | None: ...

    async def fetch(
        self, topic: str, partition: int, offset: int
    ) -> tuple[bytes | None, bytes | None] | None: ...


class Sink(Protocol):
    """Where a stage's outputs go."""

    def topic_name(self, role: str) -> str:
        """The topic ``role`` is written to (for dead letters that name it)."""
        ...

    async def send(
        self,
        role: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Awaitable[object]:
        """Queue one message; the awaitable resolves once the broker confirmed it, or raises
        why not. Queueing itself raises for a message the client refuses outright."""
        ...


def consumer_options(session_timeout_s: float) -> dict[str, Any]:
    """How the worker consumes and produces (the throughput benchmark's no-op agent uses
    the same, so the two differ only in the work per batch)."""
    session = session_timeout_s
    return {
        "store": "memory://",  # state lives in Redis; Faust only consumes, routes, produces
        "producer_acks": -1,
        "stream_publish_on_commit": False,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": session,
        "broker_heartbeat_interval": max(0.5, session / 10),
        "broker_rebalance_timeout": max(session * 2, 20.0),
        "broker_commit_interval": 1.0,
        "web_in_thread": False,
        "loghandlers": [],
    }


@dataclass(frozen=True)
class Topics:
    """Every topic the worker reads or writes, declared once per app."""

    input: TopicT
    routed: TopicT
    profiles: TopicT
    dlq: TopicT
    segments: TopicT
    churn: TopicT
    recs: TopicT
    value: TopicT
    sentiment: TopicT
    risk: TopicT
    audiences: TopicT
    merged: TopicT

    @classmethod
    def declare(cls, app: faust.App, settings: Settings) -> Topics:
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        specs = {spec.role: spec for spec in topics.layout(settings)}

        def output(role: str) -> TopicT:
            # The worker creates its outputs with the same layout as `stream topics create`.
            spec = specs[role]
            return app.topic(
                spec.name,
                **raw,
                internal=True,
                partitions=spec.partitions,
                replicas=spec.replication,
                config=dict(spec.config),
            )

        return cls(
            input=app.topic(settings.topics.input, **raw),
            routed=output("routed"),
            profiles=output("profiles"),
            dlq=output("dlq"),
            segments=output("segments"),
            churn=output("churn"),
            recs=output("recs"),
            value=output("value"),
            sentiment=output("sentiment"),
            risk=output("risk"),
            audiences=output("audiences"),
            merged=output("merged"),
        )

    def by_role(self, role: str) -> TopicT:
        if role not in topics.ROLES:
            raise KeyError(f"no topic role {role!r}; roles: {', '.join(topics.ROLES)}")
        return cast(TopicT, getattr(self, role))

    async def declare_outputs(self) -> None:
        """Create the output topics at start-up (idempotent), so the first send never waits
        on a broker's auto-creation, or fails where that is off (Apache Kafka in production)."""
        for role in topics.ROLES:
            if role != "input":
                await self.by_role(role).declare()


def user_keyed() -> tuple[str, ...]:
    """The compacted per-user output roles: an erasure tombstones the user on each."""
    return tuple(role for role in topics.ROLES if role in topics.COMPACTED)


class KafkaSink:
    """The Faust topics as a :class:`Sink`."""

    def __init__(self, declared: Topics) -> None:
        self.topics = declared

    def topic_name(self, role: str) -> str:
        return self.topics.by_role(role).get_topic_name()

    async def send(
        self,
        role: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Awaitable[object]:
        topic = self.topics.by_role(role)
        heads = list(headers) if headers is not None else None
        return await topic.send(key=key, value=value, headers=heads, partition=partition)


def inbound(event: EventT[Any]) -> InputRecord:
    """A Faust event as the stages see it."""
    msg = event.message
    raw = msg.headers or ()
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    headers = [
        (str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in pairs if v is not None
    ]
    stamp = int((msg.timestamp or 0) * 1000)  # Faust gives seconds
    return Inbound(msg.topic, msg.partition, msg.offset, msg.key, msg.value, headers, stamp)


class MemorySource:
    """An input log in memory (one partition): batches of it, and the lookups of
    :class:`Source`."""

    def __init__(self, topic: str = "site-events") -> None:
        self.topic = topic
        self.log: list[InputRecord] = []

    def append(self, values: Sequence[bytes], key: bytes | None = None) -> list[InputRecord]:
        """Add messages at the next offsets; returns them as a batch."""
        start = len(self.log)
        batch = [Inbound(self.topic, 0, start + i, key, v) for i, v in enumerate(values)]
        self.log += batch
        return batch

    def highwater(self, topic: str, partition: int) -> int | None:
        return len(self.log)

    async def fetch(
        self, topic: str, partition: int, offset: int
    ) -> tuple[bytes | None, bytes | None] | None:
        if offset >= len(self.log):
            return None
        return self.log[offset].key, self.log[offset].value


@dataclass(frozen=True, slots=True)
class Sent:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int | None


@dataclass
class MemorySink:
    """Keeps what is sent, per role; refuses messages over ``max_bytes`` (or a role's own
    limit in ``limits``) as a broker would."""

    max_bytes: int = 1_000_000
    limits: dict[str, int] = field(default_factory=dict)
    sent: dict[str, list[Sent]] = field(default_factory=dict)

    def topic_name(self, role: str) -> str:
        return f"memory-{role}"

    async def send(
        self,
        role: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Awaitable[object]:
        if role not in topics.ROLES:
            raise KeyError(f"no topic role {role!r}")
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        limit = self.limits.get(role, self.max_bytes)
        if len(value or b"") + len(key or b"") > limit:
            done.set_exception(MessageSizeTooLargeError(f"over {limit} bytes"))
        else:
            self.sent.setdefault(role, []).append(Sent(key, value, list(headers or ()), partition))
            done.set_result(None)
        return done

    def take(self, role: str) -> list[Sent]:
        """What was sent to ``role`` since the last take."""
        return self.sent.pop(role, [])

    def as_input(self, role: str, partitions: int = 1) -> list[InputRecord]:
        """Take ``role``'s messages as the next stage would consume them (offsets per
        partition continue across takes)."""
        out: list[InputRecord] = []
        for message in self.take(role):
            partition = message.partition or 0
            offset = self._next.get((role, partition), 0)
            self._next[(role, partition)] = offset + 1
            out.append(
                Inbound(
                    self.topic_name(role),
                    partition,
                    offset,
                    message.key,
                    message.value,
                    message.headers,
                    0,
                )
            )
        return out

    def __post_init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}
