"""Keep a batch until it is done: an agent must never let an error end its batch.

Faust acknowledges the events a ``take_events`` batch buffered even when the agent raised
(its ``finally``), so an exception escaping an agent loses the batch for good: later batches
move the offset fences past it. The agents therefore hand their work to these helpers, which

* retry an outage (Redis or Kafka unreachable, Redis loading its AOF after a restart, a full
  GPU) with backoff until it is over: the events are fine, the world is not;
* split a batch that fails for another reason (a bug met by some event) into its users and
  retry each alone: the users that pass are applied, the events of those that fail go to the
  dead-letter topic as ``internal_error`` with the exception, to be replayed after a fix.

Everything a retry repeats is idempotent: profile writes are fenced and version-checked,
outputs carry deterministic ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import redis.exceptions
from aiokafka.errors import KafkaError

from profiles.core.profile import Record
from profiles.pipeline.updater import BatchResult, BatchUpdater, DeadLetter

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Errors of the surroundings, not of the events: wait them out.
OUTAGES: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (AOF replay after a restart)
    redis.exceptions.TimeoutError,
    KafkaError,
    OSError,
    MemoryError,
    RuntimeError,  # e.g. CUDA out of memory, users still conflicting after every attempt
)
MAX_DELAY_S = 5.0


async def until_done(
    call: Callable[[], Awaitable[T]],
    what: str,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """``await call()`` again after each outage, backing off up to :data:`MAX_DELAY_S`."""
    delay = 0.1
    while True:
        try:
            return await call()
        except OUTAGES as exc:
            name = type(exc).__name__
            log.warning("%s failed (%s: %s); retrying in %.1f s", what, name, exc, delay)
            if on_retry is not None:
                on_retry(exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY_S)


async def apply_batch(
    updater: BatchUpdater,
    records: Sequence[Record],
    on_retry: Callable[[BaseException], None] | None = None,
) -> BatchResult:
    """The batch applied, whatever it takes (see the module docstring)."""
    try:
        return await until_done(lambda: updater.process(records), "update batch", on_retry)
    except Exception:
        log.exception("update batch of %d records failed; applying users one by one", len(records))
    result = BatchResult()
    for group in _by_user(records):
        result.absorb(await _apply_alone(updater, group, on_retry))
    return result


async def _apply_alone(
    updater: BatchUpdater,
    group: list[Record],
    on_retry: Callable[[BaseException], None] | None,
) -> BatchResult:
    """One user's records; dead letters (``internal_error``) if they fail for a reason of
    their own."""
    try:
        return await until_done(lambda: updater.process(group), "update of one user", on_retry)
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
