"""Fault injection under load: real broker, real Redis, real worker processes.

Each test streams thousands of generated events (``RTP_SOAK_EVENTS`` per test, default 8,000;
``make soak`` runs them at 60,000) through ``python -m stream worker`` while one fault is injected
mid-stream: the worker SIGKILLed and restarted, Redis SIGKILLed and restarted on the same port
and AOF directory, a second worker joining and leaving the group. Then every profile is
recomputed offline from the input log with the same pure code and must be equal: the behaviour
part (counts, RFM, tags, offset fences) byte for byte, the vectors within float rounding. The
downstream topic must announce every user's final version, and copies of one ``user:version``
must be identical.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from profiles.core.profile import Profile, apply
from profiles.embedding.cache import EmbeddingCache
from profiles.embedding.feature import vector_learner
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile
from profiles.embedding.text import combine, event_texts
from profiles.redis import keys
from profiles.redis.tier import RedisVectorTier
from profiles.tags.event_tags import event_tags
from profiles.tags.extractor import TagExtractor
from schemas.validate import validate_output
from stream.devtools.services import BROKER, REDIS, LocalServices, free_port
from stream.settings import Settings
from stream.simulation.generator import TrafficConfig, TrafficGenerator
from tests.integration.harness import Consumed, Feed, Names, Worker, read_topic
from tests.integration.oracle import (
    diff,
    eventually,
    expected_profiles,
    replay_log,
    stored_profiles,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SETTINGS = Settings.from_env({})
CONFIG = SETTINGS.profile
#: Events per fault test; `make soak` raises it.
EVENTS = int(os.environ.get("RTP_SOAK_EVENTS") or 8000)
#: Producer rate (events/s) of the fault tests: below the worker's throughput with embeddings
#: (~1,400/s on 2 CPUs), so the stream is still flowing when each fault hits.
RATE = float(os.environ.get("RTP_SOAK_RATE") or 400)
#: Events sent after the last fault, at least (a share of EVENTS), at three times RATE.
TAIL = 0.2
WAIT_S = max(240.0, EVENTS / 100)
#: A profile state that differs and has not changed for this long is final: fail then.
STALL_S = 60.0


def key(event: dict[str, Any]) -> bytes:
    return str(event["user_id"]).encode()


def soak_traffic(seed: int, n: int) -> Iterator[dict[str, Any]]:
    """The catalog, then a generated history (~25 events per user over ``n`` events), lazily:
    a feed takes as many as the faults need."""
    gen = TrafficGenerator(TrafficConfig(seed=seed, users=max(100, n // 25), products=400))
    return itertools.chain(gen.catalog(), gen.history(3650.0))


@dataclass
class Run:
    """One fault test's stream and what happened to it, printed at the end (``-s``)."""

    name: str
    feed: Feed
    started: float = field(default_factory=time.monotonic)
    faults: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.feed.sent)

    def fault(self, what: str) -> None:
        self.faults.append(f"{what} at event {self.sent}")

    async def finish(self) -> int:
        """At least EVENTS in all, and a tail after the last fault, sent faster."""
        return await self.feed.finish(EVENTS, tail=int(EVENTS * TAIL), rate=RATE * 3)

    def report(self, **figures: object) -> None:
        took = time.monotonic() - self.started
        extra = "".join(f", {k}={v}" for k, v in figures.items())
        print(  # the figures RELIABILITY.md quotes (seen with -s)
            f"\n[faults] {self.name}: {self.sent} events in {took:.1f}s; "
            f"faults: {'; '.join(self.faults)}{extra}"
        )


@pytest.fixture
async def feeds() -> AsyncIterator[list[Feed]]:
    """Feeds a test starts; cancelled at the end if the test failed before finishing them."""
    started: list[Feed] = []
    yield started
    for feed in started:
        await feed.cancel()


def start_run(name: str, seed: int, brokers: str, names: Names, feeds: list[Feed]) -> Run:
    feed = Feed(brokers, names.input, soak_traffic(seed, EVENTS), RATE, key).start()
    feeds.append(feed)
    return Run(name, feed)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = WAIT_S) -> None:
    await eventually(check, timeout=timeout)


# -- the offline oracle for vectors -----------------------------------------------------------


class _ReadOnlyTier:
    """The worker's shared vector cache in Redis, read but never written by the oracle."""

    def __init__(self, url: str) -> None:
        self.tier = RedisVectorTier(url)

    def mget(self, names: Sequence[str]) -> list[bytes | None]:
        return self.tier.mget(names)

    def mset(self, items: object) -> None:
        pass

    def close(self) -> None:
        self.tier.close()


class _LazyEncoder:
    """The real encoder, loaded only for texts the worker's Redis tier does not hold (a tier
    write that failed while Redis was down); its vectors match within float rounding."""

    def __init__(self, model_id: str, dim: int) -> None:
        self.model_id, self.dim = model_id, dim
        self._encoder: Any = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._encoder is None:
            from profiles.embedding.channel import ChannelEncoder
            from profiles.encoder.encoder import Encoder, EncoderConfig

            plain = Encoder(EncoderConfig())
            # The worker mixes the text channel in by default (RTP_TEXT_CHANNEL): so must we.
            self._encoder = ChannelEncoder(plain) if SETTINGS.embedding.text_channel else plain
            assert self._encoder.model_id == self.model_id
        return np.asarray(self._encoder.encode(list(texts)))


def embedding_config(model_id: str, dim: int) -> EmbeddingConfig:
    return EmbeddingConfig(
        model_id=model_id,
        dim=dim,
        long_half_life_ms=CONFIG.half_life_ms,
        short_half_life_ms=int(SETTINGS.embedding.short_half_life_min * 60_000),
        interests=SETTINGS.embedding.interests,
    )


def expected_embeddings(
    topic: str, log: list[Consumed], config: EmbeddingConfig, redis_url: str
) -> dict[str, EmbeddingProfile]:
    """Every user's embedding profile recomputed from the log with the worker's text vectors."""
    tagger = TagExtractor()
    items, by_user = replay_log(topic, log)
    tier = _ReadOnlyTier(redis_url)
    cache = EmbeddingCache(_LazyEncoder(config.model_id, config.dim), tier=tier)
    texts = [t for recs in by_user.values() for r in recs for t, _ in event_texts(r.event, items)]
    distinct = list(dict.fromkeys(t for t in texts if t))
    try:
        vectors = dict(zip(distinct, cache.get_many(distinct), strict=True))
    finally:
        tier.close()
    out = {}
    for user, records in by_user.items():
        profile = Profile(user)
        profile.embedding = EmbeddingProfile(config)
        apply(
            profile,
            records,
            CONFIG,
            lambda e: event_tags(e, tagger, items),
            [vector_learner(lambda e: combine(event_texts(e, items), vectors))],
        )
        out[user] = profile.embedding
    return out


def _close(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Equal directions: the worker stores vectors as float16 after every batch (stochastic
    rounding, ``profiles/embedding/codec.py``), the recomputation keeps them in memory."""
    if a is None or b is None:
        return a is None and b is None
    cosine = float(a @ b) / float(np.linalg.norm(a) * np.linalg.norm(b))
    return cosine > 0.9999 and bool(np.allclose(a, b, atol=2e-3))


def vector_diff(
    expected: dict[str, EmbeddingProfile], stored: dict[str, EmbeddingProfile]
) -> list[str]:
    bad = []
    for user, want in expected.items():
        have = stored.get(user)
        if have is None:
            bad.append(f"{user}: no stored vectors")
            continue
        if not _close(want.long_term(), have.long_term()):
            bad.append(f"{user}: long-term vector differs")
        if not _close(want.short_term(), have.short_term()):
            bad.append(f"{user}: short-term vector differs")
        mine, theirs = want.interest_list(), have.interest_list()
        if [i.events for i in mine] != [i.events for i in theirs]:
            bad.append(
                f"{user}: interests {[i.events for i in mine]} != {[i.events for i in theirs]}"
            )
    return bad


# -- checks shared by every fault test --------------------------------------------------------


async def check_state(
    brokers: str, names: Names, client: aioredis.Redis, redis_url: str, name: str, total: int
) -> tuple[list[str], float]:
    """Wait until Redis equals the offline recomputation of the ``total`` events sent; the
    users, and the seconds that took from the call (the last event was sent)."""
    sent_at = time.monotonic()
    log = await read_topic(brokers, names.input, lambda got: len(got) >= total, timeout=120)
    assert len(log) == total, f"input topic holds {len(log)} messages, sent {total}"
    expected = expected_profiles(names.input, log, CONFIG)
    users = sorted(expected)

    # Generous, but a state that stopped changing while it still differs fails early: lost
    # events never come back, so waiting out the whole timeout would only cost CI time.
    deadline, last, changed = time.monotonic() + WAIT_S, 0, time.monotonic()
    while True:
        stored = await stored_profiles(client, users)
        bad = diff(expected, stored)
        if not bad:
            break
        now = time.monotonic()
        digest = hash(tuple(stored.values()))
        if digest != last:
            last, changed = digest, now
        if now > deadline or now - changed > STALL_S:
            lost, twice = _miscount(expected, stored)
            pytest.fail(
                f"{name}: {len(bad)} of {len(users)} profiles differ (state unchanged for "
                f"{now - changed:.0f}s): {lost} events missing, {twice} applied twice; "
                f"e.g. {bad[:3]}"
            )
        await asyncio.sleep(0.5)
    caught_up = time.monotonic() - sent_at

    # Vectors: with the worker's own text vectors (its Redis tier), within float rounding.
    pipe = client.pipeline(transaction=False)
    for user in users:
        pipe.hget(keys.profile(user), "e")
    blobs = dict(zip(users, await pipe.execute(), strict=True))
    some = next((EmbeddingProfile.stored_model(b) for b in blobs.values() if b), None)
    assert some is not None, "the workers run with embeddings on (the default)"
    config = embedding_config(*some)
    want = await asyncio.to_thread(expected_embeddings, names.input, log, config, redis_url)
    have = {u: EmbeddingProfile.load(b, config)[0] for u, b in blobs.items() if b}
    bad = vector_diff(want, have)
    assert not bad, f"{name}: {len(bad)} embedding profiles differ, e.g. {bad[:3]}"
    return users, caught_up


def _miscount(expected: dict[str, bytes], stored: dict[str, bytes | None]) -> tuple[int, int]:
    """Events missing from the stored counts, and events counted more than once."""
    lost = twice = 0
    for user, blob in expected.items():
        want = orjson.loads(blob)["counts"]
        blob_now = stored.get(user)
        got = orjson.loads(blob_now)["counts"] if blob_now else {}
        for kind in want.keys() | got.keys():
            delta = want.get(kind, 0) - got.get(kind, 0)
            lost, twice = lost + max(0, delta), twice + max(0, -delta)
    return lost, twice


def crashes(worker: Worker) -> str:
    """The worker's first logged agent crash with its traceback, or '' if there was none."""
    text = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
    start = text.find("Crashed reason=")
    if start < 0:
        return ""
    start = text.rfind("\n", 0, start) + 1
    lines = text[start:].splitlines()
    end = next((i for i, line in enumerate(lines[1:], 1) if line.startswith("[20")), len(lines))
    return "\n".join(lines[:end])


async def check_downstream(
    brokers: str, names: Names, client: aioredis.Redis, users: list[str]
) -> dict[str, int]:
    """Every user's final version announced; copies of one ``user:version`` identical."""
    pipe = client.pipeline(transaction=False)
    for user in users:
        pipe.hget(keys.profile(user), "v")
    final = {u: int(v) for u, v in zip(users, await pipe.execute(), strict=True)}
    latest: dict[str, int] = {}
    seen = [0]

    def complete(got: list[Consumed]) -> bool:
        for m in got[seen[0] :]:
            if m.key is not None and m.value is not None:
                user = m.key.decode()
                latest[user] = max(latest.get(user, 0), int(orjson.loads(m.value)["version"]))
        seen[0] = len(got)
        return all(latest.get(u) == v for u, v in final.items())

    out = await read_topic(brokers, names.profiles, complete, timeout=WAIT_S)
    copies: dict[tuple[str, int], dict[str, Any]] = {}
    duplicates = 0
    for m in out:
        assert m.key is not None and m.value is not None, "no erasures here: no tombstones"
        payload = orjson.loads(m.value)
        user, version = payload["user_id"], int(payload["version"])
        assert m.key.decode() == user and payload["event_id"] == f"{user}:{version}"
        assert version <= final[user], f"{user}: announced v{version}, stored v{final[user]}"
        payload.pop("processed_at")
        first = copies.setdefault((user, version), payload)
        if first is not payload:
            duplicates += 1
            assert payload == first, f"two different payloads for {user}:{version}"
    for payload in list(copies.values())[:200]:
        validate_output("profile_updated", {**payload, "processed_at": 0})
    return {"announced": len(out), "duplicates": duplicates}


@pytest.fixture
def env(worker_env: dict[str, str]) -> dict[str, str]:
    return {**worker_env, "RTP_SESSION_TIMEOUT_S": "6"}


@pytest.fixture
async def started(env: dict[str, str], tmp_path: Path) -> AsyncIterator[list[Worker]]:
    """Workers a test starts; all stopped (SIGTERM) at the end, whatever happened."""
    workers: list[Worker] = []
    yield workers
    for w in workers:
        if w.proc is not None:
            w.stop()


async def applied(worker: Worker) -> int:
    try:
        return int((await worker.stats())["applied"])
    except Exception:  # restarting: no answer yet
        return 0


# -- the faults -------------------------------------------------------------------------------


async def progressed(worker: Worker, run: Run, events: int, applied_over: int = 0) -> bool:
    """``events`` sent, and the worker applied more than ``applied_over`` since it started."""
    return run.sent >= events and await applied(worker) > applied_over


async def test_worker_sigkilled_twice_midstream_loses_nothing_and_applies_nothing_twice(
    env: dict[str, str],
    started: list[Worker],
    feeds: list[Feed],
    brokers: str,
    names: Names,
    redis_client: aioredis.Redis,
    redis_url: str,
    tmp_path: Path,
) -> None:
    worker = Worker(env, tmp_path / "worker.log").start()
    started.append(worker)
    await worker.wait_ready(timeout=120)
    run = start_run("worker SIGKILL", 21, brokers, names, feeds)
    for at in (EVENTS // 4, EVENTS // 2):
        await until(functools.partial(progressed, worker, run, at))
        worker.kill()  # SIGKILL: no leave, offsets behind Redis, outputs maybe unsent
        run.fault("worker SIGKILL")
        worker.start()
        await worker.wait_ready(timeout=120)  # after the dead member's session timeout
        run.fault("worker back")
    await run.finish()
    users, caught_up = await check_state(
        brokers, names, redis_client, redis_url, run.name, run.sent
    )
    out = await check_downstream(brokers, names, redis_client, users)
    run.report(users=len(users), equal_after_s=round(caught_up, 1), **out)


@pytest.fixture
def own_redis(services: LocalServices, tmp_path: Path) -> Iterator[LocalServices]:
    """A Redis of this test's own (AOF, appendfsync always), so killing it harms no other test."""
    local = LocalServices(
        tmp_path / "own", broker_port=services.ports[BROKER], redis_port=free_port()
    )
    local.start(REDIS)
    try:
        yield local
    finally:
        local.down()


async def test_redis_sigkilled_and_restarted_midstream_loses_nothing(
    env: dict[str, str],
    started: list[Worker],
    feeds: list[Feed],
    own_redis: LocalServices,
    brokers: str,
    names: Names,
    tmp_path: Path,
) -> None:
    redis_url = own_redis.redis_url
    worker = Worker({**env, "RTP_REDIS_URL": redis_url}, tmp_path / "worker.log").start()
    started.append(worker)
    assert worker.proc is not None
    await worker.wait_ready(timeout=120)
    run = start_run("Redis SIGKILL", 22, brokers, names, feeds)
    await until(lambda: progressed(worker, run, int(EVENTS * 0.3)))
    # SIGKILL; AOF with appendfsync always keeps every write Redis acknowledged.
    await asyncio.to_thread(own_redis.kill, REDIS)
    run.fault("Redis SIGKILL")
    await asyncio.sleep(3.0)  # the outage; traffic keeps arriving meanwhile
    await asyncio.to_thread(own_redis.start, REDIS)  # same port, same AOF directory
    run.fault("Redis back")
    before = await applied(worker)
    await until(lambda: progressed(worker, run, 0, applied_over=before))
    assert worker.proc.poll() is None, f"the worker died with Redis:\n{worker.tail(80)}"
    await run.finish()
    client = aioredis.Redis.from_url(redis_url)
    try:
        users, caught_up = await check_state(brokers, names, client, redis_url, run.name, run.sent)
        out = await check_downstream(brokers, names, client, users)
    except pytest.fail.Exception as failed:
        # Say why: the update agent's crash on the Redis error, as the worker logged it.
        crash = crashes(worker)
        pytest.fail(f"{failed}\nworker's first agent crash:\n{crash}" if crash else str(failed))
    finally:
        await client.aclose()
    assert worker.proc.poll() is None, f"the worker died:\n{worker.tail(80)}"
    retries = int((await worker.stats())["retries"])
    assert retries > 0, "the outage should show as retried batches"
    run.report(users=len(users), equal_after_s=round(caught_up, 1), retries=retries, **out)


async def test_second_worker_joins_and_leaves_midstream_without_loss_or_double_apply(
    env: dict[str, str],
    started: list[Worker],
    feeds: list[Feed],
    brokers: str,
    names: Names,
    redis_client: aioredis.Redis,
    redis_url: str,
    tmp_path: Path,
) -> None:
    first = Worker(env, tmp_path / "first.log").start()
    started.append(first)
    await first.wait_ready(timeout=120)
    run = start_run("rebalance", 23, brokers, names, feeds)
    await until(lambda: progressed(first, run, int(EVENTS * 0.1)))
    before = int((await first.stats())["rebalances"])
    second = Worker(env, tmp_path / "second.log").start()
    started.append(second)
    run.fault("second worker started")
    await second.wait_ready(timeout=120)  # ready = owns partitions: the group rebalanced
    run.fault("second worker owns partitions")
    await until(lambda: progressed(second, run, 0))  # it applied events of its own
    by_second = await applied(second)
    assert await asyncio.to_thread(second.stop) == 0, second.tail()  # SIGTERM: leaves cleanly
    run.fault("second worker left (SIGTERM)")
    await run.finish()
    users, caught_up = await check_state(
        brokers, names, redis_client, redis_url, run.name, run.sent
    )
    out = await check_downstream(brokers, names, redis_client, users)
    stats = await first.stats()
    assert int(stats["rebalances"]) >= before + 2, stats  # one for the join, one for the leave
    assert stats["assigned"] == SETTINGS.kafka.partitions  # the survivor owns every partition again
    run.report(
        users=len(users),
        equal_after_s=round(caught_up, 1),
        rebalances=int(stats["rebalances"]) - before,
        applied_by_second=by_second,
        **out,
    )


# -- offsets that start again -----------------------------------------------------------------


@pytest.fixture
def own_broker(services: LocalServices, tmp_path: Path) -> Iterator[LocalServices]:
    """A Tansu broker of this test's own (memory storage), so restarting it harms no other
    test; the session's Redis."""
    local = LocalServices(
        tmp_path / "own-broker", broker_port=free_port(), redis_port=services.ports[REDIS]
    )
    local.start(BROKER)
    try:
        yield local
    finally:
        local.down()


async def settled(
    client: aioredis.Redis, expected: dict[str, bytes], name: str
) -> dict[str, bytes | None]:
    """Wait until Redis holds exactly ``expected`` (fail early once it stopped changing)."""
    users = sorted(expected)
    deadline, last, changed = time.monotonic() + WAIT_S, 0, time.monotonic()
    while True:
        stored = await stored_profiles(client, users)
        if not diff(expected, stored):
            return stored
        now = time.monotonic()
        digest = hash(tuple(stored.values()))
        if digest != last:
            last, changed = digest, now
        if now > deadline or now - changed > STALL_S:
            lost, twice = _miscount(expected, stored)
            bad = diff(expected, stored)
            pytest.fail(
                f"{name}: {len(bad)} of {len(users)} profiles differ: {lost} events missing, "
                f"{twice} applied twice; e.g. {bad[:2]}"
            )
        await asyncio.sleep(0.5)


async def test_input_topic_recreated_by_a_broker_restart_new_events_applied_none_lost_or_doubled(
    env: dict[str, str],
    started: list[Worker],
    own_broker: LocalServices,
    names: Names,
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    """Tansu keeps topics in memory (and compose's Kafka without a volume loses them too): after
    a restart the input topic is created again and its offsets start at 0, below every user's
    fence. Before fence epochs every such event was skipped as ``fenced``, silently."""
    from stream.devtools.services import BROKER as broker_service
    from tests.integration.harness import produce

    brokers = own_broker.broker_url.removeprefix("kafka://")
    # Embeddings off: the fences are the same, and the test stays light on a loaded machine.
    wenv = {**env, "RTP_BROKER": own_broker.broker_url, "RTP_EMBEDDINGS": "false"}
    first_n, second_n = 1500, 900
    traffic = soak_traffic(24, first_n + second_n)
    first = list(itertools.islice(traffic, first_n))
    second = list(itertools.islice(traffic, second_n))

    worker = Worker(wenv, tmp_path / "worker.log").start()
    started.append(worker)
    await worker.wait_ready(timeout=120)
    await produce(brokers, names.input, first, key)
    log1 = await read_topic(brokers, names.input, lambda got: len(got) >= first_n)
    await settled(redis_client, expected_profiles(names.input, log1, CONFIG), "before restart")

    assert await asyncio.to_thread(worker.stop) == 0, worker.tail()
    await asyncio.to_thread(own_broker.kill, broker_service)  # every topic and offset gone
    await asyncio.to_thread(own_broker.start, broker_service)
    worker.start()
    await worker.wait_ready(timeout=120)
    await produce(brokers, names.input, second, key)  # re-creates the topic: offsets from 0
    log2 = await read_topic(brokers, names.input, lambda got: len(got) >= second_n)
    assert len(log2) == second_n and min(m.offset for m in log2) == 0
    expected = expected_profiles(names.input, log1, CONFIG, epochs=[log2])
    await settled(redis_client, expected, "after re-creation")

    stats = await worker.stats()
    assert stats["fenced"] == 0, f"new events skipped as fenced: {stats['fenced']}"
    status, health = await worker.get("/health")
    assert status == 200, health
    text = worker.log_path.read_text(errors="replace")
    assert "started again" in text, worker.tail()
    partitions = {m.partition for m in log2}
    # A second restart of the worker alone (redelivery of the same new log) starts no epoch.
    assert await asyncio.to_thread(worker.stop) == 0, worker.tail()
    worker.start()
    await worker.wait_ready(timeout=120)
    more = list(itertools.islice(traffic, 300))
    await produce(brokers, names.input, more, key)
    log3 = await read_topic(brokers, names.input, lambda got: len(got) >= second_n + 300)
    expected = expected_profiles(names.input, log1, CONFIG, epochs=[log3])
    await settled(redis_client, expected, "after a worker restart in the new epoch")
    marks = [await redis_client.hget(keys.input_mark(names.input, p), "e") for p in partitions]
    assert marks == [b"1"] * len(partitions), marks
    print(
        f"\n[faults] topic re-created: {first_n} events, broker restarted (memory storage), "
        f"{second_n} + 300 more on {len(partitions)} partitions from offset 0; all applied "
        f"once (epoch 1), {len(expected)} users"
    )
