"""Send a batch's outputs so that one refused message never ends the agent.

A send can fail for two kinds of reasons. The world (broker unreachable, leader moving,
request timed out): the batch is retried until it passes (``stream/worker/retry.py``). Or the
message itself (too large for the producer's ``max_request_size`` or the broker's
``message.max.bytes``, a bad timestamp, a header the client cannot encode): retrying would
fail forever, and letting the error escape would end the agent, whose batch Faust then
acknowledges, losing the batch's other outputs. :func:`deliver` therefore sends every output
on its own and returns the refused ones; the agents turn each into a small dead letter with
reason ``output_rejected`` (:func:`refusal`) and the batch goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnsupportedForMessageFormatError,
)
from faust.exceptions import ProducerSendError

from stream.worker import dead_letters
from stream.worker.transport import Sink

log = logging.getLogger(__name__)

#: Broker or producer answers about the message itself: sending it again cannot pass.
REJECTIONS: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
    UnsupportedForMessageFormatError,
)
#: Value bytes a refusal dead letter keeps of the refused message (its length and SHA-256
#: are in the headers): small, so the refusal itself always fits.
REFUSED_VALUE_MAX = 1024


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send, and what a refusal dead letter needs to say about it."""

    role: str  # the topic's role (``stream/worker/topics.py``), resolved by the sink
    key: bytes | None
    value: bytes | None
    kind: str  # what it is: "bundle", "dead_letter", "profile_updated", ...
    stage: str  # "ingest" or "update"
    origin: tuple[str, int, int] | None  # input (topic, partition, offset) it came from
    headers: Sequence[tuple[str, bytes]] | None = None
    partition: int | None = None
    # A bundle's records, each as it would be dead-lettered should the bundle be refused
    # (computed only then: unpacking every bundle would cost the hot path).
    parts: Callable[[], Sequence[Outgoing]] | None = None


def _rejection(exc: BaseException) -> BaseException | None:
    """The reason ``exc`` is about the message itself, or None for an outage."""
    cause: BaseException | None = exc.__cause__ if isinstance(exc, ProducerSendError) else exc
    if cause is not None and isinstance(cause, REJECTIONS):
        return exc.__cause__ if isinstance(exc, ProducerSendError) else exc
    if isinstance(cause, KafkaError):
        return None
    # Queueing raised something else (e.g. aiokafka's assertion on a message with neither
    # key nor value, a header it cannot encode): deterministic, about this message.
    return cause if cause is not None else exc


def _outage(exc: BaseException) -> BaseException:
    """What the retry loop should see: the Kafka error Faust wrapped, if any."""
    cause = exc.__cause__
    return cause if isinstance(exc, ProducerSendError) and cause is not None else exc


async def deliver(outgoing: Sequence[Outgoing], sink: Sink) -> list[tuple[Outgoing, BaseException]]:
    """Queue every message in order (bundles of one partition must stay ordered), wait for
    the broker to confirm each, and return the refused ones with their error. An outage is
    raised (after every confirmation came back), for the caller to retry the whole batch."""
    pending: list[tuple[Outgoing, Awaitable[object]]] = []
    refused: list[tuple[Outgoing, BaseException]] = []
    outage: BaseException | None = None
    for out in outgoing:
        try:
            future = await sink.send(out.role, out.key, out.value, out.headers, out.partition)
        except Exception as exc:
            why = _rejection(exc)
            if why is None:
                outage = _outage(exc)
                break
            refused.append((out, why))
            continue
        pending.append((out, future))
    results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
    for (out, _), result in zip(pending, results, strict=True):
        if isinstance(result, BaseException):
            why = _rejection(result)
            if why is None:
                outage = outage or _outage(result)
            else:
                refused.append((out, why))
    if outage is not None:
        raise outage
    return refused


def refusal(out: Outgoing, error: BaseException, name: str) -> Outgoing:
    """A small dead letter saying that ``out`` (sent to topic ``name``) was refused, and why,
    where it came from."""
    why = dict(out.headers or ()).get(dead_letters.REASON)
    was = f" (a dead letter: {why.decode('utf-8', 'replace')})" if why else ""
    detail = f"{out.kind} to {name}{was} refused: {type(error).__name__}: {error}"
    topic, partition, offset = out.origin or (name, out.partition or 0, 0)
    letter = dead_letters.letter(
        "output_rejected",
        detail,
        topic,
        partition,
        offset,
        out.stage,
        out.key,
        out.value,
        value_max=REFUSED_VALUE_MAX,
        extra=[(dead_letters.OUTPUT_TOPIC, name.encode())],
    )
    return Outgoing(
        "dlq", letter.key, letter.value, "refusal", out.stage, out.origin, letter.headers
    )


async def deliver_all(outgoing: Sequence[Outgoing], sink: Sink) -> int:
    """:func:`deliver`, then a refusal dead letter for each refused message (a refused bundle
    becomes the refusals of its records, :attr:`Outgoing.parts`). Returns the number of
    refusals; a refusal that is refused too (it cannot be, by its size) is logged and dropped.
    """
    refused = await deliver(outgoing, sink)
    if not refused:
        return 0
    letters: list[Outgoing] = []
    for out, error in refused:
        log.error(
            "%s to %s refused (%s: %s); dead-lettering it as output_rejected",
            out.kind,
            sink.topic_name(out.role),
            type(error).__name__,
            error,
        )
        parts = out.parts() if out.parts is not None else (out,)
        letters += [refusal(p, error, sink.topic_name(p.role)) for p in parts]
    for out, error in await deliver(letters, sink):
        log.error(
            "refusal dead letter for %s refused too (%s: %s); dropped",
            out.origin,
            type(error).__name__,
            error,
        )
    return len(letters)
