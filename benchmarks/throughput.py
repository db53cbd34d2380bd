"""Pipeline throughput against its ceilings, in one run, on one pre-filled topic.

    python benchmarks/throughput.py                 # N=40k, 3 repetitions, print a table
    python benchmarks/throughput.py --write         # ... and update BENCHMARKS.md
    python benchmarks/throughput.py --pipeline core --events 100000 --iter

Consumers, each run ``--repeats`` times, interleaved (a, b, [b'], c0, c, a, b, ...):

(a)  raw aiokafka: assign every partition, seek to the beginning, ``getmany`` +
     ``orjson.loads`` until the end offsets; no consumer group (in this process);
(b)  a Faust no-op agent, ``take_events(batch_max, batch_within)`` like the pipeline
     (``benchmarks/faust_noop.py``, a child process configured like the worker);
(b') with ``--iter``: the same no-op agent iterating per event (``async for value in stream``);
(c)  the real worker, ``python -m stream worker``, at its defaults (embedding profiles on,
     so the text encoder runs in the worker), with a fresh app id, fresh internal and output
     topics, and a flushed Redis for every repetition;
(c0) the same worker with the optional model features off (``RTP_EMBEDDINGS``,
     ``RTP_SEGMENTS``, ``RTP_CHURN`` = false): the Kafka, validation, tag and Redis path
     (``--pipeline core|default`` picks which of c0 and c run; both by default);
(c0f) c0 with its input read by a Faust agent (``RTP_INGEST_CONSUMER=faust``), as every
     worker did before the batch ingest consumer (``--pipeline core-faust``).

(b) and (c) are measured the same way from outside: ``/stats`` is polled every ``--poll-ms``
and the clock runs from the last poll that saw nothing consumed to the first poll that saw
every event done, so the consumer-group join (~5 s with Tansu) is excluded and the window
errs long by at most two poll intervals (the rate errs low, never high).

The default N is 40k, not 100k: with embeddings on, the worker encodes every distinct text
of the data on this machine's CPU (~6.2k texts in 40k events, ~120 texts/s on 2 cores),
and three repetitions of everything must fit in about five minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console

from benchmarks.common import (
    BENCHMARKS_MD,
    ROOT,
    DataSpec,
    cpu_seconds,
    encode,
    facts_lines,
    generate_events,
    machine_busy,
    machine_facts,
    markdown_table,
    median,
    others_cores,
    scratch_services,
    service_pid,
    write_subsection,
)
from stream.devtools.services import BROKER, REDIS, LocalServices, free_port

SUBSECTION = "### End-to-end events/s (`benchmarks/throughput.py`)"
TARGET = 0.6  # pipeline / Faust no-op
#: A run during which other processes used more than this many cores is marked (†) and its
#: repetition redone (``--redo``); a repetition starts once they use less than QUIET_CORES.
BUSY_CORES = 0.25
QUIET_CORES = 0.1
PARTITIONS = 4


@dataclass(frozen=True)
class Variant:
    """One configuration of the real worker."""

    kind: str  # key of its samples
    label: str  # its letter in the table
    title: str
    env: dict[str, str]


#: The optional model features, all off in the core variant. Older checkouts ignore the names
#: they do not know, so the same script measures any commit.
_FEATURES_OFF = {"RTP_EMBEDDINGS": "false", "RTP_SEGMENTS": "false", "RTP_CHURN": "false"}

VARIANTS: dict[str, Variant] = {
    "core": Variant(
        "pipeline-core",
        "(c0)",
        "pipeline core (`RTP_EMBEDDINGS`, `RTP_SEGMENTS`, `RTP_CHURN` = false)",
        _FEATURES_OFF,
    ),
    "core-faust": Variant(
        "pipeline-core-faust",
        "(c0f)",
        "pipeline core, input read by a Faust agent (`RTP_INGEST_CONSUMER=faust`, as before)",
        {**_FEATURES_OFF, "RTP_INGEST_CONSUMER": "faust"},
    ),
    "default": Variant(
        "pipeline", "(c)", "pipeline, defaults (embeddings, segments, churn on)", {}
    ),
}

console = Console(stderr=True, highlight=False)


@dataclass(frozen=True)
class Options:
    data: DataSpec
    repeats: int
    poll_s: float
    batch_max: int
    batch_within: float
    bundle_max: int
    with_iter: bool
    session_timeout: float
    run_timeout: float
    pipelines: tuple[str, ...] = tuple(VARIANTS)
    redo: int = 1
    quiet_wait: float = 30.0
    py_spy: Path | None = None


@dataclass
class Sample:
    """One measured repetition of one consumer."""

    rate: float  # events/s
    seconds: float
    cpu: float  # consumer CPU seconds / wall seconds, over the measured window
    broker_cpu: float
    others: float  # cores used by processes that are not ours (the machine is shared)
    extra: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Snapshot:
    """CPU seconds so far: the measured child, the broker, all of ours, the machine."""

    child: float
    broker: float
    ours: float
    machine: float


@dataclass(frozen=True)
class Meter:
    """Reads CPU counters, so a figure can say what else was using the machine."""

    broker_pid: int | None
    redis_pid: int | None

    def snapshot(self, child_pid: int | None) -> Snapshot:
        child = cpu_seconds(child_pid) if child_pid else time.process_time()
        broker = cpu_seconds(self.broker_pid)
        own = time.process_time() if child_pid else 0.0  # this process: poller or consumer
        ours = child + broker + cpu_seconds(self.redis_pid) + own
        return Snapshot(child, broker, ours, machine_busy())

    @staticmethod
    def sample(rate: float, wall: float, a: Snapshot, b: Snapshot) -> Sample:
        others = others_cores(a.machine, b.machine, b.ours - a.ours, wall)
        return Sample(rate, wall, (b.child - a.child) / wall, (b.broker - a.broker) / wall, others)


class Child:
    """A consumer process with a ``/stats`` page, started and stopped like the worker."""

    def __init__(
        self, name: str, argv: list[str], env: Mapping[str, str], port: int, log_path: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: a clean leave, as an operator would stop a worker."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Window:
    started: float
    ended: float
    first: Snapshot
    last: Snapshot
    stage_ended: float | None  # when `consumed` reached N (the ingest stage of the worker)
    final: dict[str, Any]


async def _fetch_stats(http: aiohttp.ClientSession, port: int) -> dict[str, Any] | None:
    try:
        async with http.get(f"http://127.0.0.1:{port}/stats") as resp:
            if resp.status != 200:
                return None
            return dict(orjson.loads(await resp.read()))
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
        return None


async def watch(
    child: Child,
    meter: Meter,
    n: int,
    done: Callable[[dict[str, Any]], int],
    poll_s: float,
    timeout: float,
    on_first: Callable[[], None] | None = None,
) -> Window:
    """Poll ``/stats`` until ``done(stats) >= n``; time from the last idle poll.

    ``on_first`` runs when consumption is first seen (to attach a profiler to the busy part
    only, not to imports and the group join).
    """
    deadline = time.monotonic() + timeout
    idle: tuple[float, Snapshot] | None = None  # time and counters of the last idle poll
    started: tuple[float, Snapshot] | None = None
    stage_ended = None
    last: dict[str, Any] | None = None
    # One kept-alive connection: a new TCP connection per poll would tax the child more.
    connector = aiohttp.TCPConnector(limit=1)
    timeout_cfg = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout_cfg) as http:
        while time.monotonic() < deadline:
            child.check_alive()
            sent = time.perf_counter()
            counters = meter.snapshot(child.pid)
            stats = await _fetch_stats(http, child.port)
            got = time.perf_counter()
            if stats is None:
                await asyncio.sleep(0.2)  # not listening yet: the web server is starting
                continue
            last = stats
            if started is None:
                if stats["consumed"] == 0:
                    idle = (sent, counters)
                    await asyncio.sleep(poll_s)
                    continue
                if idle is None:
                    raise RuntimeError(f"{child.name} consumed before the first poll answered")
                started = idle
                if on_first is not None:
                    on_first()
            if stage_ended is None and stats["consumed"] >= n:
                stage_ended = got
            if done(stats) >= n:
                end = meter.snapshot(child.pid)
                return Window(started[0], got, started[1], end, stage_ended, stats)
            await asyncio.sleep(poll_s)
    raise RuntimeError(
        f"{child.name} did not finish {n} events in {timeout:.0f}s; last /stats: {last}\n"
        f"{child.tail()}"
    )


class PySpy:
    """``py-spy record`` on a child while it consumes: collapsed stacks for :func:`hotspots`.

    Sampling runs in another process and does not pause the target (``--nonblocking``), but
    on a small machine it still takes CPU: profiled runs are for diagnosis, not for figures.
    """

    def __init__(self, child: Child, output: Path) -> None:
        self.child = child
        self.output = output
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        argv = [
            exe,
            "record",
            "--pid",
            str(self.child.pid),
            "--format",
            "raw",
            "--nolineno",
            "--nonblocking",
            "--rate",
            "200",
            "--output",
            str(self.output),
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.output.exists():
            console.log(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")


#: Where a sample's time goes. Only the frames of the task or callback the event loop is
#: running count (below ``Handle._run``: every stack has Faust's worker at its root): the
#: deepest project-level marker among them, else the library of the leaf-most frame that has
#: one, else the event loop itself (select, wake-ups, future callbacks).
_STAGE_MARKERS: tuple[tuple[str, str], ...] = (
    ("update: BatchUpdater tags + apply", "BatchUpdater._compute ("),
    ("update: Redis commit", "RedisStore.commit ("),
    ("update: Redis load", "RedisStore.load ("),
    ("update: BatchUpdater other", "BatchUpdater.process ("),
    ("update: unpack bundles", "unpack (stream/worker/ingest.py)"),
    ("update: profile_updated payload", "profile_updated ("),
    ("ingest: route (decode, validate, bundle)", "route (stream/worker/ingest.py)"),
    ("ingest: _inbound", "_inbound ("),
    ("Kafka sends (Topic.send, _confirm)", "_confirm ("),
    ("Kafka sends (Topic.send, _confirm)", "Topic.send ("),
    ("web: /stats", "stream/worker/web.py"),
)
_LIBRARY_MARKERS: tuple[tuple[str, str], ...] = (
    ("Kafka sends (aiokafka producer)", "aiokafka/producer"),
    ("aiokafka consumer, fetcher, protocol", "aiokafka/"),
    ("Faust + mode: consumer, streams, acks", "faust/"),
    ("Faust + mode: consumer, streams, acks", "mode/"),
    ("redis-py", "redis/"),
    ("web server (aiohttp)", "aiohttp/"),
    ("jieba (cold tag cache)", "jieba/"),
)
_DISPATCH = ("Handle._run (", "BaseEventLoop._run_once (")


def _stage_of(frames: Sequence[str]) -> str:
    cut = max((i for i, f in enumerate(frames) if f.startswith(_DISPATCH)), default=-1)
    task = frames[cut + 1 :]
    for markers in (_STAGE_MARKERS, _LIBRARY_MARKERS):
        for frame in reversed(task):
            for name, marker in markers:
                if marker in frame:
                    return name
    return "asyncio event loop (select, wake-ups, callbacks)"


def stages(raw: Path) -> str:
    """Share of samples per pipeline stage (see ``_STAGE_MARKERS``)."""
    counts: Counter[str] = Counter()
    for frames, count in _samples(raw):
        counts[_stage_of(frames)] += count
    total = sum(counts.values()) or 1
    return "\n".join(f"{100 * c / total:5.1f}  {name}" for name, c in counts.most_common())


def _samples(raw: Path) -> Iterator[tuple[list[str], int]]:
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if frames:
            yield frames, int(count_text)


def hotspots(raw: Path, top: int = 25) -> str:
    """Self and inclusive shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for frames, count in _samples(raw):
        total += count
        own[frames[-1]] += count
        for frame in set(frames):  # a recursive frame counts once per sample
            inclusive[frame] += count
    if not total:
        return "(no samples)"
    lines = [f"{total} samples", "", "self%  function"]
    lines += [f"{100 * c / total:5.1f}  {f}" for f, c in own.most_common(top)]
    lines += ["", "incl%  function (project code)"]
    ours = [
        (f, c)
        for f, c in inclusive.most_common()
        if any(p in f for p in ("stream/", "profiles/", "schemas/"))
    ]
    lines += [f"{100 * c / total:5.1f}  {f}" for f, c in ours[:top]]
    return "\n".join(lines)


# ------------------------------------------------------------------------- the consumers


async def run_raw(brokers: str, topic: str, n: int, meter: Meter, timeout: float) -> Sample:
    """(a) The floor of any Python consumer: fetch and parse, nothing else."""
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        # Read until the N events we produced rather than until `end_offsets`: Tansu answers
        # ListOffsets(latest) with the base offset of each partition's last record batch, so
        # its "end" stops short of the records in that batch.
        total = n
        gc.collect()  # a collection of the setup's garbage must not land inside the window
        deadline = time.monotonic() + timeout
        first, t0 = meter.snapshot(None), time.perf_counter()
        count = 0
        while count < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"raw consumer read {count}/{total} in {timeout:.0f}s")
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    orjson.loads(record.value)
                count += len(records)
        wall = time.perf_counter() - t0
        return Meter.sample(total / wall, wall, first, meter.snapshot(None))
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    for _ in range(50):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no partitions")


def _consumed(stats: dict[str, Any]) -> int:
    return int(stats["consumed"])


def _settled(stats: dict[str, Any]) -> int:
    """Events the update stage has finished with, whatever the outcome."""
    dead = sum(int(v) for v in stats.get("dead", {}).values())
    return int(stats["applied"] + stats["items"] + stats["duplicates"] + stats["fenced"] + dead)


async def run_child(
    child: Child,
    meter: Meter,
    n: int,
    opts: Options,
    done: Callable[[dict[str, Any]], int],
    spy: Path | None = None,
) -> Sample:
    child.start()
    profiler = PySpy(child, spy) if spy is not None else None
    try:
        window = await watch(
            child,
            meter,
            n,
            done,
            opts.poll_s,
            opts.run_timeout,
            on_first=profiler.start if profiler else None,
        )
    finally:
        if profiler is not None:
            profiler.stop()
        child.stop()
    wall = window.ended - window.started
    sample = Meter.sample(n / wall, wall, window.first, window.last)
    if window.stage_ended is not None and done is not _consumed:
        sample.extra["ingest_rate"] = n / (window.stage_ended - window.started)
        sample.extra["dead"] = float(sum(window.final.get("dead", {}).values()))
        # The update stage's fan-out: one Kafka message per profile written, per batch.
        sample.extra["emitted"] = float(window.final.get("profiles_emitted", 0))
        if "loop_lag_max_ms" in window.final:  # older checkouts do not measure it
            sample.extra["loop_lag_max_ms"] = float(window.final["loop_lag_max_ms"])
        encoder = window.final.get("encoder") or {}
        if encoder.get("enabled"):
            sample.extra["encoded"] = float(encoder.get("encoded", 0))
            sample.extra["encoder_s"] = float(encoder.get("seconds", 0.0))
            sample.notes["device"] = f"{encoder.get('device')} {encoder.get('dtype')}"
    return sample


def _clean_env() -> dict[str, str]:
    # A developer's RTP_* settings must not leak into the benchmark's processes.
    return {k: v for k, v in os.environ.items() if not k.startswith("RTP_")}


def noop_child(
    services: LocalServices, base: Path, topic: str, tag: str, mode: str, opts: Options
) -> Child:
    port = free_port()
    argv = [
        sys.executable,
        str(ROOT / "benchmarks" / "faust_noop.py"),
        "--broker",
        services.broker_url,
        "--topic",
        topic,
        "--app-id",
        f"noop-{mode}-{tag}",
        "--web-port",
        str(port),
        "--mode",
        mode,
        "--batch-max",
        str(opts.batch_max),
        "--batch-within",
        str(opts.batch_within),
        "--session-timeout",
        str(opts.session_timeout),
        "--data-dir",
        str(base / "faust"),
    ]
    env = {**_clean_env(), "PYTHONUNBUFFERED": "1"}
    return Child(f"faust-noop-{mode}", argv, env, port, base / f"noop-{mode}-{tag}.log")


def worker_child(
    services: LocalServices, base: Path, topic: str, tag: str, opts: Options, variant: Variant
) -> Child:
    port = free_port()
    # Per run *and* per variant: a group another variant just left has committed offsets at
    # the end of the topic (nothing left to read) and makes the next member wait to rejoin.
    tag = f"{variant.kind}-{tag}"
    env = {
        **_clean_env(),
        "PYTHONUNBUFFERED": "1",
        # Fresh group and fresh internal/output topics: no rejoin wait, no leftover bundles.
        "RTP_APP_ID": f"bench-{tag}",
        "RTP_BROKER": services.broker_url,
        "RTP_REDIS_URL": services.redis_url,
        "RTP_INPUT_TOPIC": topic,
        "RTP_ROUTED_TOPIC": f"routed-{tag}",
        "RTP_PROFILE_TOPIC": f"profiles-{tag}",
        "RTP_DLQ_TOPIC": f"dlq-{tag}",
        "RTP_SEGMENT_TOPIC": f"segments-{tag}",
        "RTP_CHURN_TOPIC": f"churn-{tag}",
        "RTP_DATA_DIR": str(base / "faust"),
        "RTP_WEB_PORT": str(port),
        "RTP_WEB_OPEN": "true",  # polled on loopback; the token check is not what is measured
        "RTP_PARTITIONS": str(PARTITIONS),
        "RTP_SESSION_TIMEOUT_S": str(opts.session_timeout),
        "RTP_BATCH_MAX": str(opts.batch_max),
        "RTP_BATCH_WITHIN": str(opts.batch_within),
        "RTP_BUNDLE_MAX": str(opts.bundle_max),
        **variant.env,
    }
    argv = [sys.executable, "-m", "stream", "worker", "-l", "info"]
    return Child(f"worker {variant.kind}", argv, env, port, base / f"{tag}.log")


# ------------------------------------------------------------------------- the run


async def prefill(brokers: str, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> float:
    """Create the topic and fill it as fast as the producer goes; returns events/s."""
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=brokers,
        acks="all",
        linger_ms=5,
        max_batch_size=512 * 1024,
        enable_idempotence=False,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending: list[asyncio.Future[Any]] = []
        for key, value in messages:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 10_000:  # bound memory, keep the pipe full
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(messages) / (time.perf_counter() - started)


KINDS = ("raw", "noop-take", "noop-iter", *(v.kind for v in VARIANTS.values()))


async def run(opts: Options) -> tuple[dict[str, list[Sample]], dict[str, Any]]:
    n = opts.data.n
    console.log(f"generating {n:,} events")
    messages = encode(generate_events(opts.data))
    results: dict[str, list[Sample]] = {k: [] for k in KINDS}
    # Other processes on a small machine skew every figure; say how busy it was.
    context: dict[str, Any] = {"load": " / ".join(f"{x:.2f}" for x in os.getloadavg())}
    with scratch_services() as (services, base):
        brokers = services.broker_url.removeprefix("kafka://")
        meter = Meter(service_pid(services, BROKER), service_pid(services, REDIS))
        (base / "faust").mkdir()  # Faust creates its data dir, not the parents
        topic = f"bench-in-{uuid.uuid4().hex[:8]}"
        console.log(f"pre-filling {topic} ({PARTITIONS} partitions)")
        context["produce_rate"] = await prefill(brokers, topic, messages)
        context["bytes"] = sum(len(v) for _, v in messages)
        console.log(f"  {context['produce_rate']:,.0f} events/s produced")
        del messages
        gc.collect()
        redis = aioredis.Redis.from_url(services.redis_url)
        context["redone"] = 0
        try:
            for rep in range(1, opts.repeats + 1):
                for attempt in range(opts.redo + 1):
                    await wait_quiet(meter, opts.quiet_wait)
                    round_ = await _one_round(rep, opts, services, base, topic, meter, redis)
                    busy = [k for k, s in round_.items() if s.others > BUSY_CORES]
                    if not busy or attempt == opts.redo:
                        break
                    # Someone else's job slowed part of the round: redo all of it, so the
                    # consumers stay interleaved under the same conditions.
                    context["redone"] += 1
                    console.log(f"[{rep}] other processes were busy during {busy}; redoing")
                for kind, sample in round_.items():
                    results[kind].append(sample)
        finally:
            await redis.aclose()
    return results, context


async def wait_quiet(meter: Meter, max_wait: float, window: float = 3.0) -> None:
    """Wait (up to ``max_wait`` s) until processes not ours use less than QUIET_CORES."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        first = meter.snapshot(None)
        await asyncio.sleep(window)
        if Meter.sample(0.0, window, first, meter.snapshot(None)).others < QUIET_CORES:
            return
    if max_wait > 0:
        console.log(f"the machine is still busy after {max_wait:.0f}s; measuring anyway")


async def _one_round(
    rep: int,
    opts: Options,
    services: LocalServices,
    base: Path,
    topic: str,
    meter: Meter,
    redis: aioredis.Redis,
) -> dict[str, Sample]:
    """One repetition of every consumer, in order; returns each one's sample."""
    n = opts.data.n
    results: dict[str, Sample] = {}
    tag = f"{rep}-{uuid.uuid4().hex[:6]}"
    brokers = services.broker_url.removeprefix("kafka://")
    label = f"[{rep}/{opts.repeats}]"

    def report(kind: str, sample: Sample) -> None:
        results[kind] = sample
        more = "".join(f", {k} {v:,.0f}" for k, v in sample.extra.items())
        console.log(
            f"{label} {kind:<14} {sample.rate:>7,.0f} events/s in {sample.seconds:6.2f}s"
            f" (cpu {sample.cpu:.0%}, broker {sample.broker_cpu:.0%}, "
            f"others {sample.others:.2f} cores{more})"
        )

    report("raw", await run_raw(brokers, topic, n, meter, opts.run_timeout))
    modes = ("take", "iter") if opts.with_iter else ("take",)
    for mode in modes:
        child = noop_child(services, base, topic, tag, mode, opts)
        spy = _spy_path(opts, f"noop-{mode}", rep)
        report(f"noop-{mode}", await run_child(child, meter, n, opts, _consumed, spy))
    for name in opts.pipelines:
        variant = VARIANTS[name]
        # Every run builds profiles (and the shared vector cache tier) from nothing.
        await redis.flushdb()
        child = worker_child(services, base, topic, tag, opts, variant)
        spy = _spy_path(opts, variant.kind, rep)
        report(variant.kind, await run_child(child, meter, n, opts, _settled, spy))
        if spy is not None and spy.exists():
            console.print(
                f"[bold]py-spy, {variant.kind}, repetition {rep}[/]\n"
                f"{hotspots(spy)}\n\nby stage (% of samples)\n{stages(spy)}"
            )
    return results


def _spy_path(opts: Options, kind: str, rep: int) -> Path | None:
    if opts.py_spy is None:
        return None
    opts.py_spy.mkdir(parents=True, exist_ok=True)
    return opts.py_spy / f"{kind}-{rep}.txt"


# ------------------------------------------------------------------------- reporting


def _rates(samples: Sequence[Sample], key: str | None = None) -> list[float]:
    return [
        s.rate if key is None else s.extra[key] for s in samples if key is None or key in s.extra
    ]


def render(results: dict[str, list[Sample]], opts: Options) -> tuple[str, dict[str, float]]:
    """The markdown table and the medians it shows."""
    b = f"`take_events({opts.batch_max}, {opts.batch_within})`"
    rows_spec: list[tuple[str, str, str | None]] = [
        ("(a) raw aiokafka `getmany` + `orjson.loads`, no group", "raw", None),
        (f"(b) Faust no-op agent, {b}", "noop-take", None),
        ("(b') Faust no-op agent, per-event `async for`", "noop-iter", None),
    ]
    for v in VARIANTS.values():
        rows_spec += [
            (f"{v.label} {v.title}: ingest stage only (`consumed` = N)", v.kind, "ingest_rate"),
            (f"{v.label} {v.title}: **end to end** (all applied in Redis)", v.kind, None),
        ]
    medians: dict[str, float] = {}
    rows = []
    for title, kind, key in rows_spec:
        samples = results.get(kind, [])
        rates = _rates(samples, key)
        if not rates:
            continue
        # A run slowed by someone else's job says nothing about ours: leave it out of the
        # median whenever a clean run of the same consumer exists.
        clean = [r for r, s in zip(rates, samples, strict=True) if s.others <= BUSY_CORES]
        med = median(clean or rates)
        medians[kind if key is None else f"{kind}:{key}"] = med
        kept = [s for s in samples if s.others <= BUSY_CORES] or samples
        cpu = "" if key else f"{median([s.cpu for s in kept]):.0%}"
        broker = "" if key else f"{median([s.broker_cpu for s in kept]):.0%}"
        others = "" if key else f"{max(s.others for s in samples):.2f}"
        runs = ", ".join(
            f"{r:,.0f}" + ("†" if s.others > BUSY_CORES else "")
            for r, s in zip(rates, samples, strict=True)
        )
        rows.append([title, f"**{med:,.0f}**", runs, cpu, broker, others])
    table = markdown_table(
        [
            "consumer",
            "median events/s (unmarked runs)",
            "runs (events/s)",
            "consumer CPU",
            "broker CPU",
            "others, max (cores)",
        ],
        rows,
    )
    return table, medians


def ratios(medians: dict[str, float]) -> list[str]:
    noop, raw = medians["noop-take"], medians["raw"]
    lines = [f"- b/a = {noop / raw:.3f} (Faust no-op / raw aiokafka)"]
    if "noop-iter" in medians:
        lines.append(
            f"- b'/b = {medians['noop-iter'] / noop:.2f} (per-event iteration / take_events)"
        )
    for v in VARIANTS.values():
        if v.kind not in medians:
            continue
        c = v.label.strip("()")
        pipe = medians[v.kind]
        verdict = "met" if pipe >= TARGET * noop else "**not met**"
        lines += [
            f"- **{c}/b = {pipe / noop:.2f}** ({v.title} / Faust no-op); "
            f"target >= {TARGET}: {verdict}",
            f"- {c}(ingest)/b = {medians[v.kind + ':ingest_rate'] / noop:.2f}, "
            f"{c}/a = {pipe / raw:.3f}",
        ]
    return lines


def conditions(
    opts: Options, context: dict[str, Any], facts: dict[str, str], results: dict[str, list[Sample]]
) -> list[str]:
    return [
        *facts_lines(facts),
        f"- Data: {opts.data.describe()}; one topic, {PARTITIONS} partitions, keyed by user "
        f"(catalog events by product), {context['bytes'] / opts.data.n:.0f} B/event on "
        f"average; pre-filled at {context['produce_rate']:,.0f} events/s before measuring",
        f"- Repeats: {opts.repeats} per consumer, interleaved "
        f"({', '.join(_order(opts))}); medians shown",
        f"- Batch settings: `RTP_BATCH_MAX={opts.batch_max}`, "
        f"`RTP_BATCH_WITHIN={opts.batch_within}`, `RTP_BUNDLE_MAX={opts.bundle_max}`, "
        f"`RTP_PARTITIONS={PARTITIONS}`, `RTP_SESSION_TIMEOUT_S={opts.session_timeout:g}`",
        "- Each (c)/(c0) run: fresh `RTP_APP_ID` and routed/profile/DLQ topics, Redis flushed "
        "(AOF, `appendfsync always`, the dev default), worker logging at info, every other "
        "setting at its default",
        f"- (b) and (c) are child processes polled on `/stats` every {opts.poll_s * 1000:.0f} "
        "ms; the window runs from the last poll with nothing consumed to the first poll with "
        "all N done (group join excluded; errs long by <= 2 polls). (a) runs in the "
        "benchmark process from its first `getmany`",
        "- CPU columns: CPU seconds / wall seconds during the window (100% = one core); "
        "*others* = machine busy time (/proc/stat) minus the consumer, broker, Redis and "
        f"this script, in cores; † marks a run where others used more than {BUSY_CORES} "
        "cores (the machine is shared, so such a run is slowed by someone else) and left "
        "out of the medians when the same consumer has unmarked runs; each "
        f"repetition waits up to {opts.quiet_wait:.0f} s for quiet and is redone (up to "
        f"{opts.redo} times) when a run was marked; {context['redone']} redone in this run",
        f"- Load average (1/5/15 min) before the run: {context['load']}",
        *_pipeline_notes(results, opts.data.n),
    ]


def _order(opts: Options) -> list[str]:
    kinds = ["a", "b", *(["b'"] if opts.with_iter else [])]
    return kinds + [VARIANTS[name].label.strip("()") for name in opts.pipelines]


def _pipeline_notes(results: dict[str, list[Sample]], n: int) -> list[str]:
    lines = []
    for v in VARIANTS.values():
        runs = results.get(v.kind, [])
        if not runs:
            continue
        emitted = median([s.extra.get("emitted", 0.0) for s in runs])
        dead = max(s.extra.get("dead", 0.0) for s in runs)
        line = (
            f"- {v.label} per run: {emitted:,.0f} `profile_updated` messages "
            f"({emitted / n:.2f} per input event), {dead:.0f} dead letters"
        )
        if any("encoded" in s.extra for s in runs):
            encoded = median([s.extra.get("encoded", 0.0) for s in runs])
            seconds = median([s.extra.get("encoder_s", 0.0) for s in runs])
            device = runs[-1].notes.get("device", "?")
            line += (
                f"; encoder ({device}) encoded {encoded:,.0f} distinct texts (cold "
                f"cache: fresh process, flushed Redis tier) in {seconds:.1f} s"
            )
        lines.append(line)
    return lines


def parse_args(argv: list[str] | None) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(
        description="Events/s of raw aiokafka, a Faust no-op agent and the pipeline, "
        "measured on the same pre-filled topic.",
    )
    parser.add_argument("--events", type=int, default=40_000, help="N (default 40000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per consumer (default 3)")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--products", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--poll-ms", type=float, default=50.0, help="/stats poll interval")
    parser.add_argument("--batch-max", type=int, default=2000, help="RTP_BATCH_MAX")
    parser.add_argument("--batch-within", type=float, default=0.05, help="RTP_BATCH_WITHIN")
    parser.add_argument("--bundle-max", type=int, default=64, help="RTP_BUNDLE_MAX")
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=6.0,
        help="RTP_SESSION_TIMEOUT_S of the children (as the test harness)",
    )
    parser.add_argument(
        "--iter", action="store_true", help="also run (b'), the per-event Faust no-op"
    )
    parser.add_argument(
        "--pipeline",
        action="append",
        choices=tuple(VARIANTS),
        default=None,
        help="worker configurations to run, repeatable (default: all)",
    )
    parser.add_argument(
        "--redo",
        type=int,
        default=1,
        help="redo a repetition up to this many times when other processes were busy (†)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="seconds to wait for the machine to be quiet before each repetition",
    )
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=300.0,
        help="seconds one consumer may take before the run fails",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="record the no-op and pipeline children with py-spy into DIR and "
        "print the pipeline's hotspots (diagnosis only: it costs CPU)",
    )
    parser.add_argument(
        "--write", action="store_true", help="update the issue-2 section of BENCHMARKS.md"
    )
    parser.add_argument(
        "--md",
        type=Path,
        default=BENCHMARKS_MD,
        help="the file --write updates (default: BENCHMARKS.md of this checkout)",
    )
    args = parser.parse_args(argv)
    if args.write and args.py_spy is not None:
        parser.error("--py-spy runs are slowed by the sampler; do not --write their figures")
    opts = Options(
        data=DataSpec(n=args.events, users=args.users, products=args.products, seed=args.seed),
        repeats=args.repeats,
        poll_s=args.poll_ms / 1000,
        batch_max=args.batch_max,
        batch_within=args.batch_within,
        bundle_max=args.bundle_max,
        with_iter=args.iter,
        session_timeout=args.session_timeout,
        run_timeout=args.run_timeout,
        pipelines=tuple(args.pipeline or VARIANTS),
        redo=args.redo,
        quiet_wait=args.quiet_wait,
        py_spy=args.py_spy,
    )
    return opts, (args.md if args.write else None)


def main(argv: list[str] | None = None) -> int:
    opts, md = parse_args(argv)
    started = time.monotonic()
    results, context = asyncio.run(run(opts))
    table, medians = render(results, opts)
    body = "\n".join(
        [
            table,
            "",
            *ratios(medians),
            "",
            "Conditions:",
            "",
            *conditions(opts, context, machine_facts(), results),
        ]
    )
    print(body)
    console.log(f"total {time.monotonic() - started:.0f}s")
    if md is not None:
        write_subsection(SUBSECTION, body, md)
        console.log(f"updated {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
