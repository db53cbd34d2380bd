"""Kafka SASL/TLS and Redis TLS end to end, and secrets that never show.

Redis is Debian's redis-server with TLS only (``--port 0 --tls-port``), a password, and client
certificates required (``tls-auth-clients yes``). Kafka is the embedded Tansu broker behind
:class:`~tests.integration.kafka_gate.KafkaGate`, which does the SASL (PLAIN, SCRAM-SHA-256,
SCRAM-SHA-512) and TLS that Tansu 0.6.0 cannot do itself (the module docstring there says
why). Every client is built by the project's own code from ``RTP_*`` settings: the worker
(Faust's ``broker_credentials``), the tools (``produce``, ``lag``, ``dlq``, ``dlq --replay``),
the store and the vector tier.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import orjson
import pytest
import redis
from aiokafka.errors import KafkaConnectionError
from redis.backoff import NoBackoff
from redis.retry import Retry

from profiles.redis import keys
from profiles.redis.client import RedisTLS, sync_client
from stream.cli.dlq import dlq_counts, replay_dead
from stream.cli.lag import group_lag
from stream.devtools.produce import Plan, send_events
from stream.devtools.services import free_port
from stream.settings import Settings
from tests.certs import Certs, make_certs
from tests.integration.harness import Names, Worker
from tests.integration.kafka_gate import KafkaGate, server_context
from tests.integration.oracle import eventually

pytestmark = pytest.mark.integration

START = 1_767_225_600_000  # 2026-01-01, event time of the test events
# Distinct per run, so finding one in a log can only mean it leaked.
KAFKA_PASSWORD = f"kafka-pw-{uuid.uuid4().hex}"
REDIS_PASSWORD = f"redis-pw-{uuid.uuid4().hex}"
KAFKA_USER = "rtp-worker"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@dataclass(frozen=True)
class TlsRedis:
    port: int
    certs: Certs

    def url(self, db: int = 0, password: str = REDIS_PASSWORD) -> str:
        return f"rediss://:{password}@127.0.0.1:{self.port}/{db}"

    @property
    def tls(self) -> RedisTLS:
        return RedisTLS(str(self.certs.ca), str(self.certs.client_cert), str(self.certs.client_key))

    def env(self, db: int) -> dict[str, str]:
        return {
            "RTP_REDIS_URL": self.url(db),
            "RTP_REDIS_CA_FILE": str(self.certs.ca),
            "RTP_REDIS_CERT_FILE": str(self.certs.client_cert),
            "RTP_REDIS_KEY_FILE": str(self.certs.client_key),
        }


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[TlsRedis]:
    """redis-server speaking TLS only, wanting a password and a client certificate."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    state = tmp_path_factory.mktemp("tls-redis")
    port = free_port()
    argv = [
        binary,
        "--bind", "127.0.0.1",
        "--port", "0",  # no plain-text port at all
        "--tls-port", str(port),
        "--tls-cert-file", str(certs.server_cert),
        "--tls-key-file", str(certs.server_key),
        "--tls-ca-cert-file", str(certs.ca),
        "--tls-auth-clients", "yes",
        "--requirepass", REDIS_PASSWORD,
        "--dir", str(state),
        "--save", "",
        "--appendonly", "no",
        "--logfile", "",
    ]  # fmt: skip
    log = state / "redis.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    server = TlsRedis(port, certs)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, f"redis-server exited:\n{log.read_text()}"
            client = sync_client(server.url(), server.tls, retry=Retry(NoBackoff(), 0))
            try:
                if client.ping():
                    break
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, f"no TLS Redis:\n{log.read_text()}"
                time.sleep(0.1)
            finally:
                client.close()
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_redis_tls_needs_the_ca_the_client_certificate_and_the_password(
    tls_redis: TlsRedis, tmp_path: Path
) -> None:
    once = Retry(NoBackoff(), 0)
    other_ca = make_certs(tmp_path / "other", ca_name="not-the-redis-ca")
    refused = {
        "plain text": ("redis://" + tls_redis.url().removeprefix("rediss://"), tls_redis.tls),
        "another CA": (tls_redis.url(), replace(tls_redis.tls, ca_file=str(other_ca.ca))),
        "no client certificate": (tls_redis.url(), RedisTLS(str(tls_redis.certs.ca))),
    }
    for what, (url, tls) in refused.items():
        client = sync_client(url, tls, retry=once, socket_timeout=5)
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
            pytest.fail(f"{what}: connected")
        client.close()
    wrong = sync_client(tls_redis.url(password="not-it"), tls_redis.tls, retry=once)
    with pytest.raises(redis.exceptions.AuthenticationError):
        wrong.ping()
    wrong.close()
    right = sync_client(tls_redis.url(), tls_redis.tls, retry=once)
    assert right.ping()
    right.close()


def _kafka_env(
    gate: KafkaGate, certs: Certs, protocol: str, mechanism: str | None, *, mtls: bool
) -> dict[str, str]:
    env = {"RTP_BROKER": gate.broker_url, "RTP_KAFKA_SECURITY_PROTOCOL": protocol}
    if mechanism is not None:
        env |= {
            "RTP_KAFKA_SASL_MECHANISM": mechanism,
            "RTP_KAFKA_USERNAME": KAFKA_USER,
            "RTP_KAFKA_PASSWORD": KAFKA_PASSWORD,
        }
    if "SSL" in protocol:
        env["RTP_KAFKA_CA_FILE"] = str(certs.ca)
    if mtls:
        env |= {
            "RTP_KAFKA_CERT_FILE": str(certs.client_cert),
            "RTP_KAFKA_KEY_FILE": str(certs.client_key),
        }
    return env


def _gate(
    tmp_path: Path, certs: Certs, protocol: str, mechanism: str | None, mtls: bool
) -> KafkaGate:
    tls = None
    if "SSL" in protocol:
        tls = server_context(certs.server_cert, certs.server_key, certs.ca if mtls else None)
    return KafkaGate(
        tmp_path / "broker", mechanism=mechanism, users={KAFKA_USER: KAFKA_PASSWORD}, server_ssl=tls
    )


@pytest.mark.parametrize(
    ("protocol", "mechanism", "mtls"),
    [
        ("SASL_PLAINTEXT", "PLAIN", False),
        ("SASL_PLAINTEXT", "SCRAM-SHA-256", False),
        ("SASL_SSL", "SCRAM-SHA-512", False),
        ("SSL", None, True),
    ],
)
async def test_the_tools_speak_every_protocol(
    tmp_path: Path, certs: Certs, names: Names, protocol: str, mechanism: str | None, mtls: bool
) -> None:
    """produce, lag, dlq and dlq --replay: every raw aiokafka client of the project."""
    with _gate(tmp_path, certs, protocol, mechanism, mtls) as gate:
        env = {**names.env(), **_kafka_env(gate, certs, protocol, mechanism, mtls=mtls)}
        settings = Settings.from_env(env)
        events = [{"event_id": f"e{i}", "user_id": f"u{i % 3}", "ts": START} for i in range(7)]
        assert await send_events(settings, events, Plan(), quiet=True) == 7
        rows = await group_lag(settings, [settings.topics.input])
        assert sum(r.end for r in rows) == 7
        # Three "dead letters" (no dlq.* headers: reason unknown), counted, then replayed.
        to_dlq = settings.replace("topics", input=settings.topics.dlq)
        assert await send_events(to_dlq, events[:3], Plan(), quiet=True) == 3
        assert await dlq_counts(settings, timeout=10) == {"unknown": 3}
        assert (await replay_dead(settings, timeout=10)).sent == 3
        rows = await group_lag(settings, [settings.topics.input])
        assert sum(r.end for r in rows) == 10
    assert gate.refused == []
    if mechanism is None:
        assert gate.authenticated == []
    else:  # every connection (bootstrap, leaders, coordinator) authenticated
        assert len(gate.authenticated) >= 5 and set(gate.authenticated) == {KAFKA_USER}
    if mtls:
        assert set(gate.client_certs) == {"rtp-test-client"}


async def test_refused_credentials_fail_without_echoing_the_password(
    tmp_path: Path, certs: Certs, names: Names, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with _gate(tmp_path, certs, "SASL_SSL", "SCRAM-SHA-512", False) as gate:
        env = {**names.env(), **_kafka_env(gate, certs, "SASL_SSL", "SCRAM-SHA-512", mtls=False)}
        wrong = f"wrong-{KAFKA_PASSWORD}"
        settings = Settings.from_env({**env, "RTP_KAFKA_PASSWORD": wrong})
        with pytest.raises(KafkaConnectionError) as refused:
            await send_events(settings, [{"user_id": "u"}], Plan(), quiet=True)
        # A CA that did not sign the broker's certificate: no connection, no credentials sent.
        other = make_certs(tmp_path / "other", ca_name="not-the-broker-ca")
        untrusting = Settings.from_env({**env, "RTP_KAFKA_CA_FILE": str(other.ca)})
        with pytest.raises(KafkaConnectionError):
            await send_events(untrusting, [{"user_id": "u"}], Plan(), quiet=True)
    assert gate.refused and gate.authenticated == []
    assert wrong not in str(refused.value) and wrong not in caplog.text
    assert KAFKA_PASSWORD not in caplog.text
    assert "certificate verify failed" in caplog.text


async def _raw(worker: Worker, path: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"http://127.0.0.1:{worker.port}{path}",
            timeout=aiohttp.ClientTimeout(total=5),
            headers=worker.auth(),
        ) as resp,
    ):
        return await resp.text()


async def test_a_worker_over_sasl_ssl_and_rediss_never_shows_its_secrets(
    tmp_path: Path, certs: Certs, tls_redis: TlsRedis, names: Names
) -> None:
    """Events in through SCRAM-SHA-512 over mutual TLS, profiles out into Redis over mutual
    TLS with a password; neither password in the log, /stats, /health or /metrics."""
    db = 3
    admin = sync_client(tls_redis.url(db), tls_redis.tls)
    admin.flushdb()
    with _gate(tmp_path, certs, "SASL_SSL", "SCRAM-SHA-512", True) as gate:
        env = {
            **names.env(),
            **_kafka_env(gate, certs, "SASL_SSL", "SCRAM-SHA-512", mtls=True),
            **tls_redis.env(db),
        }
        settings = Settings.from_env(env)
        assert KAFKA_PASSWORD not in repr(settings) and REDIS_PASSWORD not in repr(settings)
        users = [f"sec-u{i}" for i in range(3)]
        events = [
            {
                "event_id": f"sec-{i}",
                "type": "search",
                "schema_version": 1,
                "user_id": users[i % 3],
                "ts": START + i,
                "query": "waterproof trail running shoes",
            }
            for i in range(12)
        ]
        worker = Worker(env, tmp_path / "worker.log").start()
        try:
            await worker.wait_ready(timeout=90)
            assert await send_events(settings, events, Plan(), quiet=True) == 12

            def counts() -> list[object]:
                blobs = [admin.hget(keys.profile(u), "d") for u in users]
                return [orjson.loads(b)["counts"] if isinstance(b, bytes) else b for b in blobs]

            async def all_written() -> bool:
                return counts() == [{"search": 4}] * 3

            try:
                await eventually(all_written, timeout=60)
            except AssertionError:
                pytest.fail(f"no profiles written; worker log:\n{worker.tail()}")
            # The vector tier wrote through TLS too (embeddings are on by default).
            assert any(admin.scan_iter(match=keys.PREFIX + "emb:*", count=100))
            answers = {p: await _raw(worker, p) for p in ("/stats", "/health", "/metrics")}
            assert orjson.loads(answers["/stats"])["applied"] == 12
        finally:
            code = worker.stop()
            admin.close()
    assert code == 0, worker.tail()
    log = worker.log_path.read_text(errors="replace")
    for name, text in {"worker log": log, **answers}.items():
        assert KAFKA_PASSWORD not in text, f"Kafka password in {name}"
        assert REDIS_PASSWORD not in text, f"Redis password in {name}"
    # The worker's own connections authenticated (SCRAM) and presented its certificate.
    assert gate.refused == [] and set(gate.authenticated) == {KAFKA_USER}
    assert "rtp-test-client" in gate.client_certs
    assert f"Authenticated as {KAFKA_USER} via SCRAM-SHA-512" in log  # aiokafka, in the worker
    assert f"runtime ready: redis rediss://***@127.0.0.1:{tls_redis.port}/{db}" in log
