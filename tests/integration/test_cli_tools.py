"""The operator tools on the real broker and Redis: `dlq --replay` sends each dead letter once
however often it runs, broker lists with commas, `segments --plot` before seeding, and
`dev kill/start` saying what they did."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.cli.dlq import dlq_counts, replay_dead
from stream.cli.lag import group_lag
from stream.devtools.dev import kill_or_start
from stream.devtools.produce import Plan, send_events
from stream.devtools.services import LocalServices, free_port
from stream.settings import Settings
from stream.worker import dead_letters
from tests.integration.harness import ROOT, Names, read_topic

pytestmark = pytest.mark.integration


async def _dead_letters(brokers: str, topic: str, reasons: list[str], first: int = 0) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for n, reason in enumerate(reasons, start=first):
            headers = [*dead_letters.headers(reason, "d", "in", 0, n, "ingest"), ("h", b"%d" % n)]
            futures.append(
                await producer.send(
                    topic, b"raw-%d" % n, key=b"k%d" % (n % 7), headers=headers, partition=n % 3
                )
            )
        for future in futures:
            await future
    finally:
        await producer.stop()


async def _input_values(settings: Settings, brokers: str, expected: int) -> Counter[bytes]:
    """Every message on the input topic (the exact count from its end offsets)."""
    rows = await group_lag(settings, [settings.topics.input])
    assert sum(r.end for r in rows) == expected
    got = await read_topic(brokers, settings.topics.input, lambda m: len(m) >= expected)
    return Counter(m.value or b"" for m in got)


async def test_replay_twice_sends_each_dead_letter_once(
    brokers: str, names: Names, worker_env: dict[str, str], tmp_path: Path
) -> None:
    # Three partitions, more than one fetch each: a large DLQ is replayed whole.
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(names.dlq, 3, 1)])
    finally:
        await admin.close()
    reasons = ["invalid_json" if n % 4 == 0 else "oversize_message" for n in range(3000)]
    await _dead_letters(brokers, names.dlq, reasons)
    settings = Settings.from_env(worker_env)
    assert await dlq_counts(settings, timeout=30) == Counter(reasons)

    only = await replay_dead(settings, {"invalid_json"})
    assert (only.sent, only.other_reasons, only.complete) == (750, 2250, True)
    again = await replay_dead(settings, {"invalid_json"})
    assert (again.sent, again.complete) == (0, True)
    everything = await replay_dead(settings)  # the rest, not the 750 again
    assert (everything.sent, everything.already, everything.complete) == (2250, 750, True)
    assert (await replay_dead(settings)).sent == 0
    assert (await replay_dead(settings, {"oversize_message"})).sent == 0

    # New dead letters: only they go.
    await _dead_letters(brokers, names.dlq, ["too_late"] * 5, first=3000)
    newer = await replay_dead(settings)
    assert (newer.sent, newer.complete) == (5, True)
    values = await _input_values(settings, brokers, 3005)
    assert set(values.values()) == {1} and len(values) == 3005

    # The command: a summary, exit 0, and nothing sent again.
    env = {**os.environ, **worker_env, "RTP_BROKER": settings.kafka.broker}
    done = subprocess.run(
        [sys.executable, "-m", "stream", "dlq", "--replay"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "replayed 0 dead letters" in done.stdout
    assert "nothing new: earlier runs replayed every partition up to its end" in done.stdout
    assert "partition 2: offsets 1001..1001 of 1001" in done.stdout
    # --from-start sends everything again, on purpose.
    assert (await replay_dead(settings, from_start=True)).sent == 3005


async def test_the_tools_take_a_comma_separated_broker_list(
    services: LocalServices, names: Names, worker_env: dict[str, str]
) -> None:
    host = services.broker_url.removeprefix("kafka://")
    listed = {**worker_env, "RTP_BROKER": f"kafka://{host},{host}"}
    settings = Settings.from_env(listed)
    assert settings.kafka.broker_hosts == [host, host]
    events = [{"event_id": f"e{i}", "user_id": "u", "ts": 1} for i in range(4)]
    assert await send_events(settings, events, Plan(), quiet=True) == 4
    assert sum(r.end for r in await group_lag(settings, [settings.topics.input])) == 4
    to_dlq = Settings.from_env({**listed, "RTP_INPUT_TOPIC": names.dlq})
    assert await send_events(to_dlq, events[:2], Plan(), quiet=True) == 2
    assert await dlq_counts(settings, timeout=10) == {"unknown": 2}
    assert (await replay_dead(settings)).sent == 2


def test_segments_plot_before_seeding_fails_and_writes_nothing(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "segments.png"
    done = subprocess.run(
        [sys.executable, "-m", "stream", "segments", "--plot", str(target)],
        cwd=ROOT,
        env={**os.environ, **worker_env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 1
    assert f"no plot written to {target}" in done.stderr and "not seeded" not in done.stdout
    assert "wrote" not in done.stdout and not target.exists()


def test_dev_kill_and_start_say_what_they_did(tmp_path: Path) -> None:
    own = LocalServices(tmp_path / "dev", broker_port=free_port(), redis_port=free_port())
    own.up()
    try:
        pid = own.status()["redis"]["pid"]
        assert kill_or_start(own, "kill", "redis").startswith(f"killed redis (pid {pid}")
        assert kill_or_start(own, "kill", "redis") == "redis was not running"
        started = kill_or_start(own, "start", "redis")
        assert started.startswith("started redis (pid ") and "ready" in started
        assert kill_or_start(own, "start", "redis").startswith("redis was already running")
    finally:
        own.down()
