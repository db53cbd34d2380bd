"""A closed loop: the generator's traffic through the worker's real stages, and its users
answering the lists the worker pushes (:mod:`stream.simulation.respond`).

The stages are the ones the agents run (:class:`IngestStage`, :class:`UpdateStage`), over
an in-memory input and sinks and a real Redis: no broker, no Faust. Events go in in event
time, a batch at a time; after each batch the pushed ``recommendation`` events are answered,
and the answers join the input at their own event time. The item index follows the catalog
and popularity in Redis as the worker's poll would. What the experiment counted is read
back from the fenced per-arm counters, as ``python -m stream experiment report`` does.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from profiles.redis.experiments import experiment_report
from stream.settings import Settings
from stream.simulation.generator import TrafficGenerator
from stream.simulation.respond import Responder
from stream.worker.flow import IngestStage, UpdateStage
from stream.worker.runtime import Runtime
from stream.worker.transport import MemorySink, MemorySource

log = logging.getLogger(__name__)

#: Batches between two reads of the shared popularity into the item index.
POPULARITY_EVERY = 5


@dataclass
class LoopResult:
    report: dict[str, Any]  # the experiment report, as the CLI prints it in JSON
    events: int = 0  # generated events put in
    answers: int = 0  # events the responder added
    lists: Counter[str] = field(default_factory=Counter)  # pushed lists per arm (and control)


def merged(
    traffic: Iterable[dict[str, Any]], answers: list[tuple[int, int, dict[str, Any]]]
) -> Iterator[dict[str, Any]]:
    """The traffic with the answers (a heap of ``(ts, seq, event)`` that grows while this
    runs) slotted in by event time; an answer dated before the traffic already read comes
    next (it was pushed late: the list it answers was only just sent).

    >>> heap = [(5, 0, {"ts": 5, "a": 1})]
    >>> [e["ts"] for e in merged([{"ts": 1}, {"ts": 9}], heap)]
    [1, 5, 9]
    """
    for event in traffic:
        while answers and answers[0][0] <= int(event["ts"]):
            yield heapq.heappop(answers)[2]
        yield event
    while answers:
        yield heapq.heappop(answers)[2]


async def run_loop(
    settings: Settings,
    generator: TrafficGenerator,
    responder: Responder,
    days: float,
    batch: int = 200,
    progress: Callable[[int], None] | None = None,
) -> LoopResult:
    """Run ``days`` of the generator's history through the stages with the answers."""
    experiment = settings.experiment
    if not experiment.name:
        raise ValueError("the loop measures an experiment: set RTP_EXPERIMENT")
    rt = Runtime(settings)
    await rt.ensure_ready()
    mirror = rt.models.mirror
    if mirror is None:
        raise ValueError("the loop needs recommendations (RTP_EMBEDDINGS, RTP_RECOMMEND on)")
    ingest, update = IngestStage(settings, rt), UpdateStage(settings, rt)
    source, sink = MemorySource(settings.topics.input), MemorySink()
    result = LoopResult({})
    answers: list[tuple[int, int, dict[str, Any]]] = []
    seq = itertools.count()

    async def put(events: list[dict[str, Any]], n: int) -> None:
        routed = MemorySink()
        await ingest.handle(source.append([orjson.dumps(e) for e in events]), source, routed)
        await update.handle(routed.as_input("routed"), sink)
        for sent in sink.take("recs"):
            rec = orjson.loads(sent.value or b"{}")
            result.lists["/".join(filter(None, (rec.get("arm"), rec.get("control"))))] += 1
            for answer in responder.respond(rec):
                heapq.heappush(answers, (int(answer["ts"]), next(seq), answer))
                result.answers += 1
        sink.sent.clear()  # the other roles: not looked at here
        await mirror.poll()
        if n % POPULARITY_EVERY == 0:
            await mirror.refresh_popularity()

    try:
        await put(generator.catalog(), 0)
        await mirror.refresh_popularity()

        def counted(events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for event in events:
                result.events += 1
                yield event

        n = 0
        stream = merged(counted(generator.history(days)), answers)
        while True:
            chunk = list(itertools.islice(stream, batch))
            if not chunk:
                if not answers:
                    break
                # The traffic is over; answers to the last lists are still due.
                chunk = [heapq.heappop(answers)[2] for _ in range(min(batch, len(answers)))]
            n += 1
            await put(chunk, n)
            if progress is not None:
                progress(len(chunk))
        result.report = await experiment_report(
            rt.store.client,
            settings.kafka.partitions,
            experiment.name,
            experiment.arms,
        )
        return result
    finally:
        await rt.store.close()
        rt.models.close()
