"""Send events to the input topic: generated traffic, or a JSONL replay, at a chosen rate."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stream.security import kafka_client_kwargs
from stream.settings import Settings

#: Malformed messages the demo mixes in, so the dead-letter path is visible.
BAD_MESSAGES: tuple[bytes, ...] = (
    b"{not json",
    b'["an", "array"]',
    b'{"type": "click", "schema_version": 1}',
    b'{"event_id": "x", "type": "teleport", "schema_version": 1, "user_id": "u", "ts": 1}',
    b"\xff\xfe invalid utf-8",
    b'{"event_id": "x", "type": "search", "schema_version": 1, "user_id": "u", "ts": "soon",'
    b' "query": "q"}',
)


@dataclass(frozen=True)
class Plan:
    """How to send: rate (events/s, 0 = as fast as possible), how many, how keyed."""

    rate: float = 0.0
    count: int | None = None
    duration_s: float | None = None
    keyed: bool = True
    bad_share: float = 0.0
    seed: int = 7


def message_key(event: dict[str, Any]) -> bytes:
    """The partition key: the user id of our event or of a Segment call (``userId``, else
    the ``anonymousId`` of an anonymous visitor's call)."""
    user = event.get("user_id") or event.get("userId") or event.get("anonymousId") or ""
    return str(user).encode()


def _encode(events: Iterable[dict[str, Any]], plan: Plan) -> Iterator[tuple[bytes | None, bytes]]:
    rng = random.Random(plan.seed)
    for event in events:
        if plan.bad_share and rng.random() < plan.bad_share:
            yield None, rng.choice(BAD_MESSAGES)
        key = message_key(event) if plan.keyed else None
        yield key, orjson.dumps(event)


async def send_events(
    settings: Settings, events: Iterable[dict[str, Any]], plan: Plan, *, quiet: bool = False
) -> int:
    """Send events with a progress bar; returns how many messages were sent."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.broker_hosts,
        **kafka_client_kwargs(settings.kafka),
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        enable_idempotence=False,
    )
    try:
        await producer.start()
    except BaseException:  # e.g. refused credentials: release what start() opened
        await producer.stop()
        raise
    messages = _encode(events, plan)
    if plan.count is not None:
        messages = itertools.islice(messages, plan.count)
    deadline = None if plan.duration_s is None else time.monotonic() + plan.duration_s
    sent = 0
    started = time.monotonic()
    pending: list[asyncio.Future[Any]] = []
    progress = Progress(
        TextColumn("[bold]producing[/] {task.fields[rate]:>8.0f} ev/s"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=quiet,
    )
    try:
        with progress:
            task = progress.add_task("produce", total=plan.count, rate=0.0)
            for key, value in messages:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                pending.append(await producer.send(settings.topics.input, value, key=key))
                sent += 1
                if len(pending) >= 2000:
                    await asyncio.gather(*pending)
                    pending.clear()
                if plan.rate > 0:
                    ahead = sent / plan.rate - (time.monotonic() - started)
                    if ahead > 0.005:
                        await asyncio.sleep(ahead)
                if sent % 500 == 0:
                    elapsed = max(time.monotonic() - started, 1e-9)
                    progress.update(task, completed=sent, rate=sent / elapsed)
            await asyncio.gather(*pending)
            elapsed = max(time.monotonic() - started, 1e-9)
            progress.update(task, completed=sent, rate=sent / elapsed)
    finally:
        await producer.stop()
    return sent
