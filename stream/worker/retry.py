"""Keep a batch until it is done: an agent must never let an error end its batch.

Faust acknowledges the events a ``take_events`` batch buffered even when the agent raised
(its ``finally``), so an exception escaping an agent loses the batch for good: later batches
move the offset fences past it. The agents therefore hand their work to these helpers, which

* retry an :class:`~profiles.core.errors.Outage` (Redis or Kafka unreachable, Redis loading
  its AOF after a restart, a full GPU, writers conflicting for longer than a batch's attempts)
  with backoff until it is over: the events are fine, the world is not. Only the adapters
  decide what an outage is (:mod:`profiles.redis.client`, :func:`kafka_outages` here, the
  encoder); an error is never retried for its builtin type, because a ``RuntimeError`` or a
  ``MemoryError`` may just as well be a bug that one event meets every time;
* split a batch that fails for any other reason into its users and retry each alone: the
  users that pass are applied, the events of those that fail go to the dead-letter topic as
  ``internal_error`` with the exception, to be replayed after a fix.

Everything a retry repeats is idempotent: profile writes are fenced and version-checked,
outputs carry deterministic ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, TypeVar

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    RequestTimedOutError,
)
from faust.exceptions import ProducerSendError

from profiles.core.errors import Outage
from profiles.core.profile import Record
from profiles.pipeline.updater import BatchResult, BatchUpdater, DeadLetter

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_DELAY_S = 5.0


class KafkaOutage(Outage):
    """The broker is unreachable or cannot take the send now."""

    dependency = "kafka"


#: Kafka errors that say nothing about the message; aiokafka marks most of them ``retriable``.
_KAFKA_TRANSIENT = (
    KafkaConnectionError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    RequestTimedOutError,
)


@contextmanager
def kafka_outages() -> Iterator[None]:
    """Turn a transient Kafka error at a send (raw, or wrapped in Faust's
    ``ProducerSendError``) into :class:`KafkaOutage`. A send refused for the message itself
    (``MessageSizeTooLargeError``, an invalid topic) stays what it is."""
    try:
        yield
    except (KafkaError, ProducerSendError) as exc:
        cause = exc.__cause__ if isinstance(exc, ProducerSendError) else exc
        if isinstance(cause, KafkaError) and (
            cause.retriable or isinstance(cause, _KAFKA_TRANSIENT)
        ):
            raise KafkaOutage(f"{type(cause).__name__}: {cause}") from exc
        raise


class Watcher(Protocol):
    """Told of each outage retry and of each success (the runtime: metrics, one log line)."""

    def failed(self, what: str, exc: Outage) -> None: ...

    def ok(self, what: str) -> None: ...


async def until_done(
    call: Callable[[], Awaitable[T]], what: str, watcher: Watcher | None = None
) -> T:
    """``await call()`` again after each :class:`Outage`, backing off up to
    :data:`MAX_DELAY_S`; any other exception propagates at once."""
    delay = 0.1
    while True:
        try:
            result = await call()
        except Outage as exc:
            if watcher is None:
                log.warning(
                    "%s failed (%s: %s); retrying in %.1f s", what, type(exc).__name__, exc, delay
                )
            else:
                watcher.failed(what, exc)
        else:
            if watcher is not None:
                watcher.ok(what)
            return result
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY_S)


async def apply_batch(
    updater: BatchUpdater,
    records: Sequence[Record],
    watcher: Watcher | None = None,
) -> BatchResult:
    """The batch applied, whatever it takes (see the module docstring)."""
    try:
        return await until_done(lambda: updater.process(records), "update batch", watcher)
    except Exception:
        log.exception("update batch of %d records failed; applying users one by one", len(records))
    result = BatchResult()
    for group in _by_user(records):
        result.absorb(await _apply_alone(updater, group, watcher))
    return result


async def _apply_alone(
    updater: BatchUpdater,
    group: list[Record],
    watcher: Watcher | None,
) -> BatchResult:
    """One user's records; dead letters (``internal_error``) if they fail for a reason of
    their own."""
    try:
        return await until_done(lambda: updater.process(group), "update of one user", watcher)
    except Exception as exc:
        log.exception("dead-lettering %d records of one user after an internal error", len(group))
        detail = f"{type(exc).__name__}: {exc}"[:500]
        return BatchResult(dead=[DeadLetter(r, "internal_error", detail) for r in group])


def _by_user(records: Sequence[Record]) -> list[list[Record]]:
    """One group per user (in arrival order), one per catalog event."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for i, record in enumerate(records):
        event = record.event
        key = f"product:{i}" if event["type"] == "product" else f"user:{event['user_id']}"
        groups[key].append(record)
    return list(groups.values())
