"""Fence epochs (stream.worker.epochs): a new log gets a new epoch, the same log never does.

The marks live in Redis in production (their scripts run in
``tests/integration/test_faults.py::test_input_topic_recreated_by_a_broker_restart_...``);
here a dict holds them, to drive every branch of the decision.
"""

from __future__ import annotations

from collections.abc import Mapping

from profiles.redis.marks import Mark, MarkStore, fingerprint
from stream.worker.epochs import InputEpochs
from stream.worker.ingest import Inbound


class Marks(MarkStore):
    def __init__(self) -> None:
        self.marks: dict[tuple[str, int], Mark] = {}
        self.reads = 0

    async def get(self, topic: str, partition: int) -> Mark:
        self.reads += 1
        return self.marks.get((topic, partition), Mark())

    async def advance(self, marks: Mapping[tuple[str, int], tuple[int, int, str]]) -> None:
        for tp, (epoch, offset, fp) in marks.items():
            cur = self.marks.get(tp, Mark())
            if cur.epoch == epoch and offset > cur.high:
                self.marks[tp] = Mark(epoch, offset, fp)

    async def new_epoch(self, topic: str, partition: int, seen: int) -> int:
        cur = self.marks.get((topic, partition), Mark())
        if cur.epoch != seen:
            return cur.epoch
        self.marks[(topic, partition)] = Mark(seen + 1)
        return seen + 1


def log(values: list[bytes], start: int = 0) -> list[Inbound]:
    return [Inbound("in", 0, start + i, b"u1", v) for i, v in enumerate(values)]


OLD = [f"old-{i}".encode() for i in range(10)]
NEW = [f"new-{i}".encode() for i in range(10)]


def no_end(topic: str, partition: int) -> int | None:
    return None


async def nothing(
    topic: str, partition: int, offset: int
) -> tuple[bytes | None, bytes | None] | None:
    raise AssertionError("no fetch expected")


async def routed(epochs: InputEpochs, batch: list[Inbound], **kw: object) -> list[str]:
    highwater = kw.get("highwater", no_end)
    fetch = kw.get("fetch", nothing)
    sources = [s.key for s in await epochs.sources(batch, highwater, fetch)]  # type: ignore[arg-type]
    await epochs.advance(batch)
    return sources


async def test_continuing_offsets_are_checked_once_and_keep_epoch_zero() -> None:
    marks = Marks()
    epochs = InputEpochs(marks)
    assert await routed(epochs, log(OLD[:5])) == ["in:0"] * 5
    assert await routed(epochs, log(OLD[5:], start=5)) == ["in:0"] * 5
    assert marks.reads == 1
    assert marks.marks[("in", 0)] == Mark(0, 9, fingerprint(b"u1", OLD[9]))


async def test_a_redelivery_of_the_same_log_is_the_same_epoch() -> None:
    marks = Marks()
    await routed(InputEpochs(marks), log(OLD))
    restarted = InputEpochs(marks)  # a worker restart: redelivery from offset 4
    assert await routed(restarted, log(OLD[4:], start=4)) == ["in:0"] * 6  # mark in the batch
    again = InputEpochs(marks)  # the batch stops short of the mark: the broker is asked

    async def same(topic: str, partition: int, offset: int) -> tuple[bytes | None, bytes | None]:
        assert offset == 9
        return b"u1", OLD[9]

    assert await routed(again, log(OLD[2:5], start=2), fetch=same) == ["in:0"] * 3
    assert marks.marks[("in", 0)].epoch == 0


async def test_a_new_log_at_the_same_offsets_starts_a_new_epoch_whatever_tells() -> None:
    # The log ends before the mark: no need to look.
    marks = Marks()
    await routed(InputEpochs(marks), log(OLD))
    seen: list[str] = []
    epochs = InputEpochs(marks, on_new_epoch=seen.append)
    assert await routed(epochs, log(NEW[:3]), highwater=lambda t, p: 3) == ["in#1:0"] * 3
    assert seen == ["in"] and marks.marks[("in", 0)] == Mark(1, 2, fingerprint(b"u1", NEW[2]))
    # The message at the mark's offset differs, in the batch...
    marks = Marks()
    await routed(InputEpochs(marks), log(OLD))
    assert await routed(InputEpochs(marks), log(NEW)) == ["in#1:0"] * 10
    # ...or read from the broker.
    marks = Marks()
    await routed(InputEpochs(marks), log(OLD))

    async def other(topic: str, partition: int, offset: int) -> tuple[bytes | None, bytes | None]:
        return b"u1", NEW[offset]

    epochs = InputEpochs(marks)
    assert await routed(epochs, log(NEW[:2]), highwater=lambda t, p: 50, fetch=other) == [
        "in#1:0",
        "in#1:0",
    ]
    # Later batches continue in epoch 1 without asking again; a jump back inside it is checked
    # against the epoch-1 mark (the same log: still epoch 1).
    assert await routed(epochs, log(NEW[2:4], start=2)) == ["in#1:0"] * 2
    assert await routed(epochs, log(NEW[1:4], start=1)) == ["in#1:0"] * 3
    assert marks.marks[("in", 0)].epoch == 1


async def test_offsets_that_jump_back_inside_one_batch_are_checked_there() -> None:
    marks = Marks()
    epochs = InputEpochs(marks)
    await routed(epochs, log(OLD))
    mixed = [*log(OLD[8:], start=8), *log(NEW[:3])]  # a reset mid-batch
    assert await routed(epochs, mixed, highwater=lambda t, p: 3) == ["in:0"] * 2 + ["in#1:0"] * 3
