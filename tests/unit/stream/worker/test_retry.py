"""An agent's batch survives outages and poison: stream.worker.retry.

Only an :class:`~profiles.core.errors.Outage` is retried; every other error, whatever its
builtin type (``RuntimeError``, ``MemoryError``, ``NotImplementedError``, ``RecursionError``, a
torch shape error), splits the batch by user and dead-letters the users that still fail, so a
deterministic error can never stall a partition.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import torch
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, RequestTimedOutError
from faust.exceptions import ProducerSendError

from profiles.core.config import ProfileConfig
from profiles.core.errors import DeviceOutage, Outage
from profiles.core.partition import InputPartition
from profiles.core.profile import Record
from profiles.encoder.encoder import Encoder
from profiles.pipeline.store import Commit, CommitResult, MemoryStore
from profiles.pipeline.updater import BatchUpdater
from profiles.redis.client import RedisOutage, async_client, outages
from stream.devtools.services import free_port
from stream.worker import retry
from stream.worker.retry import KafkaOutage, kafka_outages
from tests.unit.profiles.pipeline.test_updater import Words, click


class Flaky(MemoryStore):
    """A store whose first ``outages`` commits meet an outage (as the Redis adapter raises)."""

    def __init__(self, outages: int) -> None:
        super().__init__()
        self.outages = outages

    async def commit(self, commit: Commit) -> CommitResult:
        if self.outages:
            self.outages -= 1
            raise RedisOutage("ConnectionError: Connection closed by server.")
        return await super().commit(commit)


class Touchy(Words):
    """A tagger with a bug that one title triggers, raising ``error``."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error or KeyError("boom")

    def text(self, text: str) -> tuple[tuple[str, float], ...]:
        if "boom" in text:
            raise self.error
        return super().text(text)


class Seen:
    """A :class:`retry.Watcher` that remembers what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def failed(self, what: str, exc: Outage) -> None:
        self.events.append(("failed", type(exc).__name__))

    def ok(self, what: str) -> None:
        self.events.append(("ok", what))


async def test_an_outage_is_waited_out_and_applies_everything_once(monkeypatch: Any) -> None:
    monkeypatch.setattr(retry, "MAX_DELAY_S", 0.01)
    store = Flaky(outages=3)
    seen = Seen()
    updater = BatchUpdater(store, ProfileConfig(), Words(), clock=lambda: 1.0)
    records = [
        Record(InputPartition("in", 0), i, click(i, f"u{i % 2}", title="tea cup")) for i in range(6)
    ]
    result = await retry.apply_batch(updater, records, seen)
    assert seen.events == [("failed", "RedisOutage")] * 3 + [("ok", "update batch")]
    assert result.applied == 6 and result.dead == []
    profiles = {u: (await store.get(u)) for u in ("u0", "u1")}
    assert {u: p.counts if p else None for u, p in profiles.items()} == {
        "u0": {"click": 3},
        "u1": {"click": 3},
    }


async def test_a_poison_user_is_dead_lettered_and_the_others_applied() -> None:
    store = MemoryStore()
    updater = BatchUpdater(store, ProfileConfig(), Touchy(), clock=lambda: 1.0)
    good = [Record(InputPartition("in", 0), i, click(i, "ok", title="tea cup")) for i in range(3)]
    bad = [Record(InputPartition("in", 0), 3, click(3, "bad", title="boom box"))]
    result = await retry.apply_batch(updater, [*good, *bad])
    assert result.applied == 3
    assert [(d.record.offset, d.reason) for d in result.dead] == [(3, "internal_error")]
    assert result.dead[0].detail == "KeyError: 'boom'"
    ok = await store.get("ok")
    assert ok is not None and ok.counts == {"click": 3}
    assert await store.get("bad") is None


@pytest.mark.parametrize(
    "error",
    [
        NotImplementedError("no tagger for this script"),
        RecursionError("maximum recursion depth exceeded"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (3x384 and 768x384)"),
        MemoryError(),
        OSError(22, "Invalid argument"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_deterministic_errors_of_any_builtin_type_are_split_off_not_retried(
    error: BaseException,
) -> None:
    """Before: RuntimeError, OSError and MemoryError were retried for ever (a stalled
    partition). Now the batch completes at once: the poison user dead-lettered, the rest applied."""
    store = MemoryStore()
    seen = Seen()
    updater = BatchUpdater(store, ProfileConfig(), Touchy(error), clock=lambda: 1.0)
    good = [
        Record(InputPartition("in", 0), i, click(i, f"u{i}", title="tea cup")) for i in range(4)
    ]
    bad = [Record(InputPartition("in", 0), 9, click(9, "bad", title="boom box"))]
    result = await asyncio.wait_for(retry.apply_batch(updater, [*good, *bad], seen), 30)
    assert not [e for e in seen.events if e[0] == "failed"], seen.events  # never retried
    assert result.applied == 4
    assert [(d.record.event["user_id"], d.reason) for d in result.dead] == [
        ("bad", "internal_error")
    ]
    assert result.dead[0].detail.startswith(type(error).__name__)


async def test_until_done_retries_only_outages() -> None:
    calls: list[int] = []

    async def once_down() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise KafkaOutage("KafkaConnectionError: down")
        return "done"

    assert await retry.until_done(once_down, "send") == "done"
    assert len(calls) == 2

    async def buggy() -> None:
        calls.append(1)
        raise RuntimeError("a bug, not an outage")

    calls.clear()
    with pytest.raises(RuntimeError):
        await retry.until_done(buggy, "send")
    assert len(calls) == 1


def test_kafka_send_errors_are_outages_only_when_transient() -> None:
    for transient in (KafkaConnectionError("down"), RequestTimedOutError()):
        with pytest.raises(KafkaOutage), kafka_outages():
            raise transient
        with pytest.raises(KafkaOutage), kafka_outages():  # as Faust wraps a queueing error
            raise ProducerSendError(f"Error while sending: {transient!r}") from transient
    with pytest.raises(ProducerSendError), kafka_outages():  # the message itself: not retried
        raise ProducerSendError("too large") from MessageSizeTooLargeError()
    with pytest.raises(MessageSizeTooLargeError), kafka_outages():
        raise MessageSizeTooLargeError()


async def test_the_redis_client_raises_an_outage_when_redis_is_unreachable() -> None:
    client = async_client(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=2)
    try:
        with pytest.raises(RedisOutage) as caught:
            await client.ping()
        # Still a redis ConnectionError for code that catches those.
        import redis.exceptions

        assert isinstance(caught.value, redis.exceptions.ConnectionError)
        assert caught.value.dependency == "redis"
        with pytest.raises(RedisOutage):
            pipe = client.pipeline(transaction=False)
            pipe.get("x")
            await pipe.execute()
        async with client.pipeline(transaction=True) as watching:  # optimistic transaction
            with pytest.raises(RedisOutage):
                await watching.watch("model")
    finally:
        await client.aclose()


def test_only_transient_redis_errors_become_outages() -> None:
    import redis.exceptions as rex

    with pytest.raises(RedisOutage), outages():
        raise rex.BusyLoadingError("Redis is loading the dataset in memory")
    with pytest.raises(rex.ResponseError) as caught, outages():
        raise rex.ResponseError("WRONGTYPE Operation against a key holding the wrong kind")
    assert not isinstance(caught.value, Outage)
    # A wrong password is a ConnectionError to redis-py, but no retry cures it.
    with pytest.raises(rex.AuthenticationError) as denied, outages():
        raise rex.AuthenticationError("invalid username-password pair or user is disabled.")
    assert not isinstance(denied.value, Outage)


def test_cuda_out_of_memory_in_the_encoder_is_an_outage(monkeypatch: Any) -> None:
    """Only the GPU's OOM: the encoder's own errors stay errors (split off, dead-lettered)."""
    encoder = Encoder.__new__(Encoder)  # no model needed: encode() wraps _encode()
    encoder._lock = threading.Lock()
    encoder.device = "cuda:0"
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)

    def full(texts: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(encoder, "_encode", full)
    with pytest.raises(DeviceOutage) as caught:
        encoder.encode(["tea"])
    assert caught.value.dependency == "gpu"

    def shape(texts: Any) -> Any:
        raise RuntimeError("shape '[2, 64]' is invalid for input of size 96")

    monkeypatch.setattr(encoder, "_encode", shape)
    with pytest.raises(RuntimeError) as other:
        encoder.encode(["tea"])
    assert not isinstance(other.value, Outage)
