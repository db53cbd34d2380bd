"""Live answers to pushed lists: ``python -m stream produce --answer UPLIFT``.

Reads the ``recommendation`` events the worker pushes and sends the generator's users'
answers (:mod:`stream.simulation.respond`: a click carrying the list's
``recommendation_id``, then a purchase) to the input topic when they fall due in wall-clock
time, so a running demo with ``RTP_EXPERIMENT`` set shows conversions and click-through per
arm. The closed-loop *evaluation* (``python -m stream.evaluation.experiment_loop``) runs the
same answers in event time, without a broker.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.devtools.produce import message_key
from stream.security import kafka_client_kwargs
from stream.settings import Settings
from stream.simulation.respond import Responder

log = logging.getLogger(__name__)

#: Live answers come seconds after the list (the event-time default is minutes to hours).
LIVE_DELAY_S = (2.0, 20.0)


def _wall_ms() -> int:
    return int(time.time() * 1000)


async def answer_lists(
    settings: Settings,
    responder: Responder,
    stop: asyncio.Event,
    *,
    from_start: bool = False,
    now_ms: Callable[[], int] = _wall_ms,
) -> int:
    """Answer pushed lists until ``stop`` is set; returns how many answer events were sent.

    Lists are read from the end of the topic (``from_start``: from its beginning) without a
    consumer group: a restarted producer answers only new lists."""
    kwargs = kafka_client_kwargs(settings.kafka)
    consumer = AIOKafkaConsumer(
        settings.topics.recs,
        bootstrap_servers=settings.kafka.broker_hosts,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_start else "latest",
        **kwargs,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.broker_hosts, acks="all", linger_ms=5, **kwargs
    )
    due: list[tuple[int, int, dict[str, Any]]] = []
    seq = itertools.count()
    sent = 0
    await consumer.start()
    try:
        await producer.start()
        while not stop.is_set():
            found = await consumer.getmany(timeout_ms=200, max_records=1000)
            for messages in found.values():
                for message in messages:
                    if message.value is None:  # an erased user's tombstone
                        continue
                    try:
                        rec = orjson.loads(message.value)
                        answers = responder.respond(rec)
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                        log.warning("not a recommendation event (%s): skipped", exc)
                        continue
                    for answer in answers:
                        heapq.heappush(due, (int(answer["ts"]), next(seq), answer))
            now = now_ms()
            while due and due[0][0] <= now:
                answer = heapq.heappop(due)[2]
                value = orjson.dumps(answer)
                await producer.send(settings.topics.input, value, key=message_key(answer))
                sent += 1
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()
    return sent
