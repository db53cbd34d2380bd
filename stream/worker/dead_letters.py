"""The dead-letter contract: raw bytes kept as they came, headers saying why and whence."""

from __future__ import annotations

from collections.abc import Sequence

REASON = "dlq.reason"
DETAIL = "dlq.detail"
TOPIC = "dlq.topic"
PARTITION = "dlq.partition"
OFFSET = "dlq.offset"
STAGE = "dlq.stage"
SCHEMA_ID = "dlq.schema_id"


def headers(
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    stage: str,
    original: Sequence[tuple[str, bytes]] = (),
    schema_id: int | None = None,
) -> list[tuple[str, bytes]]:
    """Headers of a dead letter: ours first, then the original ones (minus stale ``dlq.*``)."""
    ours = [
        (REASON, reason.encode()),
        (DETAIL, detail[:300].encode("utf-8", "replace")),
        (TOPIC, topic.encode()),
        (PARTITION, str(partition).encode()),
        (OFFSET, str(offset).encode()),
        (STAGE, stage.encode()),
    ]
    if schema_id is not None:
        ours.append((SCHEMA_ID, str(schema_id).encode()))
    kept = [(k, v) for k, v in original if not k.startswith("dlq.")]
    return ours + kept


def parse(raw_headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    """The ``dlq.*`` headers of a consumed dead letter as text."""
    return {
        k: (v or b"").decode("utf-8", "replace") for k, v in raw_headers if k.startswith("dlq.")
    }
