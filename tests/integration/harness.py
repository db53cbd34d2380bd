"""Real processes and real topics for integration tests: a worker, a producer, readers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.devtools.services import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Names:
    """Unique topics and consumer group per test, so tests never see each other's data."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def env(self) -> dict[str, str]:
        return {
            "RTP_APP_ID": f"t{self.tag}",
            "RTP_INPUT_TOPIC": f"in-{self.tag}",
            "RTP_ROUTED_TOPIC": f"routed-{self.tag}",
            "RTP_PROFILE_TOPIC": f"profiles-{self.tag}",
            "RTP_DLQ_TOPIC": f"dlq-{self.tag}",
            "RTP_RECS_TOPIC": f"recs-{self.tag}",
            "RTP_VALUE_TOPIC": f"value-{self.tag}",
            "RTP_SENTIMENT_TOPIC": f"sentiment-{self.tag}",
            "RTP_RISK_TOPIC": f"risk-{self.tag}",
            "RTP_AUDIENCE_TOPIC": f"audiences-{self.tag}",
            "RTP_MERGED_TOPIC": f"merged-{self.tag}",
            "RTP_DATA_DIR": f"/tmp/rtp-test-faust/{self.tag}",
        }

    @property
    def input(self) -> str:
        return f"in-{self.tag}"

    @property
    def profiles(self) -> str:
        return f"profiles-{self.tag}"

    @property
    def dlq(self) -> str:
        return f"dlq-{self.tag}"

    @property
    def recs(self) -> str:
        return f"recs-{self.tag}"

    @property
    def value(self) -> str:
        return f"value-{self.tag}"

    @property
    def sentiment(self) -> str:
        return f"sentiment-{self.tag}"

    @property
    def risk(self) -> str:
        return f"risk-{self.tag}"

    @property
    def audiences(self) -> str:
        return f"audiences-{self.tag}"

    @property
    def merged(self) -> str:
        return f"merged-{self.tag}"


class Worker:
    """``python -m stream worker`` as a child process, as in production."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        # The API is closed without tokens: a token of the test's own, unless it set its own.
        self.token: str | None = None
        auth = {"RTP_WEB_TOKENS", "RTP_WEB_TOKENS_FILE", "RTP_WEB_OPEN"}
        own: dict[str, str] = {}
        if not auth & set(env):
            self.token = secrets.token_hex(16)
            own["RTP_WEB_TOKENS"] = f"read+ops:{self.token}"
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in auth},
            **own,
            **env,
            "RTP_WEB_PORT": str(self.port),
            "RTP_SESSION_TIMEOUT_S": env.get("RTP_SESSION_TIMEOUT_S", "6"),
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream", "worker", "-l", "info"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def auth(self, token: str | None = None) -> dict[str, str]:
        """The Authorization header for ``token`` (default: the worker's own), if any."""
        token = token or self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def get(
        self, path: str, timeout: float = 10.0, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """GET ``path`` with the worker's token (or exactly ``headers``): (status, JSON)."""
        # 10 s, not 2: on a loaded 2-core machine a burst keeps both this test's loop (it
        # produces unpaced) and the worker's busy for seconds; a slow answer is not a failure.
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"http://127.0.0.1:{self.port}{path}",
                timeout=aiohttp.ClientTimeout(total=timeout),
                headers=self.auth() if headers is None else headers,
            ) as resp,
        ):
            return resp.status, await resp.json(content_type=None)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.tail()}")
            try:
                status, _ = await self.get("/health", timeout=2.0)
                if status == 200:
                    return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.3)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.tail()}")

    async def stats(self) -> dict[str, Any]:
        _, body = await self.get("/stats")
        return dict(body)

    def stop(self, timeout: float = 30.0) -> int:
        """Clean shutdown: Faust leaves the group, so the next worker joins at once."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


async def produce(
    brokers: str,
    topic: str,
    messages: Iterable[dict[str, Any] | bytes],
    key: Callable[[dict[str, Any]], bytes | None] | None = None,
) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=2)
    await producer.start()
    sent = 0
    try:
        futures = []
        for message in messages:
            if isinstance(message, bytes):
                futures.append(await producer.send(topic, message))
            else:
                k = key(message) if key else None
                futures.append(await producer.send(topic, orjson.dumps(message), key=k))
            sent += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


@dataclass
class Consumed:
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    partition: int
    offset: int


async def read_topic(
    brokers: str, topic: str, until: Callable[[list[Consumed]], bool], timeout: float = 60.0
) -> list[Consumed]:
    """Read a topic from the beginning (no consumer group) until ``until`` holds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    await consumer.start()
    out: list[Consumed] = []
    try:
        deadline = time.monotonic() + timeout
        tps: list[TopicPartition] = []
        while time.monotonic() < deadline and not tps:
            # A fresh metadata fetch each time: the topic may appear only later.
            metadata = await consumer._client.fetch_all_metadata()
            parts = metadata.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                await asyncio.sleep(0.3)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while time.monotonic() < deadline:
            if until(out):
                return out
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for r in records:
                    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in r.headers or ()}
                    out.append(Consumed(r.key, r.value, headers, r.partition, r.offset))
        raise AssertionError(f"condition not met on {topic} in {timeout}s; read {len(out)}")
    finally:
        await consumer.stop()


def rss_kib(pid: int) -> int:
    """Resident set size of a live process in KiB (``VmRSS`` of /proc/<pid>/status); 0 if gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Feed:
    """A producer in the background: ``events`` at about ``rate`` per second (acks=all), until
    :meth:`finish` says how many to send in all, so a fault can be injected mid-stream however
    long it takes. ``sent`` holds what was confirmed, in order.
    """

    def __init__(
        self,
        brokers: str,
        topic: str,
        events: Iterable[dict[str, Any]],
        rate: float,
        key: Callable[[dict[str, Any]], bytes | None] | None = None,
    ) -> None:
        self.brokers, self.topic, self.rate, self.key = brokers, topic, rate, key
        self._events = iter(events)
        self.sent: list[dict[str, Any]] = []
        self._total: int | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Feed:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.brokers, acks="all", linger_ms=2)
        await producer.start()
        try:
            started, base = time.monotonic(), 0
            while self._total is None or len(self.sent) < self._total:
                want = min(2000, max(1, round(self.rate / 20)))
                if self._total is not None:
                    want = min(want, self._total - len(self.sent))
                chunk = list(itertools.islice(self._events, want))
                if not chunk:
                    return
                futures = []
                for m in chunk:
                    k = self.key(m) if self.key else None
                    futures.append(await producer.send(self.topic, orjson.dumps(m), key=k))
                await asyncio.gather(*futures)
                self.sent += chunk
                ahead = started + (len(self.sent) - base) / self.rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
                if self._total is not None and base == 0:  # finishing: re-base the pace
                    started, base = time.monotonic(), len(self.sent)
        finally:
            await producer.stop()

    async def finish(self, total: int, tail: int = 0, rate: float | None = None) -> int:
        """Send ``max(total, sent so far + tail)`` events in all (at ``rate`` from now) and
        return that number once the broker confirmed them."""
        assert self._task is not None
        if rate is not None:
            self.rate = rate
        self._total = max(total, len(self.sent) + tail)
        await self._task
        return len(self.sent)

    async def cancel(self) -> None:
        """Stop sending now (a test that failed midway); no-op once finished."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
