"""Which send errors are about the message (a refusal dead letter) and which are outages."""

from __future__ import annotations

from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, NodeNotReadyError
from faust.exceptions import ProducerSendError

from stream.worker import dead_letters as dl
from stream.worker.delivery import REFUSED_VALUE_MAX, Outgoing, _outage, _rejection, refusal


def _wrapped(cause: BaseException) -> ProducerSendError:
    try:
        raise ProducerSendError(f"Error while sending: {cause!r}") from cause
    except ProducerSendError as exc:
        return exc


def test_size_refusals_are_rejections_wrapped_or_not() -> None:
    too_big = MessageSizeTooLargeError("1,300,000 bytes")
    assert _rejection(_wrapped(too_big)) is too_big
    assert _rejection(too_big) is too_big


def test_kafka_outages_are_retried_and_unwrapped_for_the_retry_loop() -> None:
    for cause in (KafkaTimeoutError(), NodeNotReadyError("down")):
        assert _rejection(_wrapped(cause)) is None
        assert _outage(_wrapped(cause)) is cause


def test_a_message_the_client_cannot_queue_is_a_rejection() -> None:
    error = AssertionError("Need at least one: key or value")
    assert _rejection(error) is error


def test_refusal_is_small_and_names_topic_origin_and_reason() -> None:
    big = Outgoing(
        "profiles",
        b"user",
        b"x" * 2_000_000,
        "profile_updated",
        "update",
        ("in", 2, 99),
        headers=[(dl.REASON, b"oversize_message")],
    )
    letter = refusal(big, MessageSizeTooLargeError("too large"), "profiles")
    assert letter.role == "dlq" and letter.key == b"user"
    assert letter.value == b"x" * REFUSED_VALUE_MAX
    heads = dl.parse(letter.headers or [])
    assert heads[dl.REASON] == "output_rejected"
    assert (heads[dl.TOPIC], heads[dl.PARTITION], heads[dl.OFFSET]) == ("in", "2", "99")
    assert heads[dl.OUTPUT_TOPIC] == "profiles" and heads[dl.VALUE_BYTES] == "2000000"
    assert "oversize_message" in heads[dl.DETAIL] and "MessageSizeTooLargeError" in heads[dl.DETAIL]
