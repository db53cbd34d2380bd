"""A local Redis Cluster of ``redis-server`` processes on loopback: masters and replicas.

``python -m stream dev up --redis-cluster`` and the cluster tests start one: by default three
masters with one replica each, on ports ``base`` .. ``base + 5`` (each node also listens on
its port + 10000, the cluster bus). The slots are split evenly over the masters, the nodes
meet, each replica follows its master, and :meth:`LocalRedisCluster.up` returns once every
node says ``cluster_state:ok`` and every replica's link is up. Each node keeps an AOF with
``appendfsync always`` like the single dev Redis; ``node_timeout_ms`` is how long a silent
master is waited for before its replica is promoted.

>>> c = LocalRedisCluster(Path("/tmp/rc"), base_port=7100)
>>> c.url, c.ports
('redis+cluster://127.0.0.1:7100', [7100, 7101, 7102, 7103, 7104, 7105])
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import redis

from stream.devtools.services import (
    REDIS,
    REDIS_CLUSTER_HIGHEST_PORT,
    LocalServices,
    ServiceError,
    free_port,
    port_is_free,
)

SLOTS = 16384


class LocalRedisCluster:
    """``masters`` masters with ``replicas`` replicas each, under ``state_dir/node-<port>``."""

    def __init__(
        self,
        state_dir: Path,
        base_port: int = 7000,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 2000,
        redis_args: Sequence[str] = (),
        redis_bin: str | None = None,
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ServiceError("a Redis Cluster needs at least one master")
        count = masters * (1 + replicas)
        if base_port < 1024 or base_port + count - 1 > REDIS_CLUSTER_HIGHEST_PORT:
            raise ServiceError(
                f"cluster ports {base_port}..{base_port + count - 1} must lie in "
                f"1024..{REDIS_CLUSTER_HIGHEST_PORT} (each node also uses its port + 10000)"
            )
        self.state_dir = Path(state_dir)
        self.masters = masters
        self.replicas = replicas
        self.ports = [base_port + i for i in range(count)]
        args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(node_timeout_ms),
            *redis_args,
        ]
        self.nodes = {
            port: LocalServices(
                self.state_dir / f"node-{port}",
                redis_port=port,
                redis_args=args,
                redis_bin=redis_bin,
            )
            for port in self.ports
        }

    @property
    def url(self) -> str:
        """The worker's ``RTP_REDIS_URL`` for this cluster (the first node; the client finds
        the others)."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def up(self, timeout: float = 60.0) -> None:
        """Start every node; form the cluster if it is new; wait until it serves every slot."""
        deadline = time.monotonic() + timeout
        for node in self.nodes.values():
            node.start(REDIS, timeout=max(1.0, deadline - time.monotonic()))
        if not self._formed():
            self._form(deadline)
        self.wait_ok(max(1.0, deadline - time.monotonic()))

    def down(self, timeout: float = 10.0) -> None:
        for node in self.nodes.values():
            node.down(timeout=timeout)

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a crash would."""
        self.nodes[port].kill(REDIS)

    def start(self, port: int, timeout: float = 20.0) -> None:
        """Restart one node (it rejoins with its ``nodes.conf``, as a replica if it was
        failed over meanwhile)."""
        self.nodes[port].start(REDIS, timeout=timeout)

    def running(self) -> list[int]:
        return [p for p, n in self.nodes.items() if n.status()[REDIS]["running"]]

    def roles(self) -> dict[int, str]:
        """``master`` or ``slave`` per running node, as the node itself says."""
        out: dict[int, str] = {}
        for port in self.running():
            with _client(port) as c:
                out[port] = str(c.info("replication")["role"])
        return out

    def flush(self) -> None:
        """Empty every master (a replica follows)."""
        for port, role in self.roles().items():
            if role == "master":
                with _client(port) as c:
                    c.flushall()

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every running node says ``cluster_state:ok`` and sees a master for each
        slot range, and every running replica's link to its master is up."""
        deadline = time.monotonic() + timeout
        while True:
            problem = self.problem()
            if problem is None:
                return
            if time.monotonic() >= deadline:
                raise ServiceError(f"Redis Cluster not ready after {timeout:g}s: {problem}")
            time.sleep(0.1)

    def problem(self) -> str | None:
        """Why the cluster is not serving every slot with linked replicas; None when it is."""
        for port in self.running():
            try:
                with _client(port) as c:
                    state = _cluster_state(c)
                    if state != "ok":
                        return f"node {port}: cluster_state {state}"
                    replication = c.info("replication")
                    if replication["role"] == "slave" and (
                        replication.get("master_link_status") != "up"
                    ):
                        return f"replica {port}: link to its master is not up"
            except redis.RedisError as exc:
                return f"node {port}: {exc}"
        return None

    def _formed(self) -> bool:
        """Formed before (the nodes restarted with their ``nodes.conf``)."""
        with _client(self.ports[0]) as c:
            return _known(c) == len(self.ports)

    def _form(self, deadline: float) -> None:
        masters, replicas = self.ports[: self.masters], self.ports[self.masters :]
        edges = [round(i * SLOTS / self.masters) for i in range(self.masters + 1)]
        for i, port in enumerate(masters):
            with _client(port) as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", edges[i], edges[i + 1] - 1)
        for port in self.ports[1:]:
            with _client(port) as c:
                c.execute_command("CLUSTER", "MEET", "127.0.0.1", self.ports[0])
        while not all(_known(_client(p)) == len(self.ports) for p in self.ports):
            if time.monotonic() >= deadline:
                raise ServiceError("Redis Cluster: the nodes did not all meet in time")
            time.sleep(0.1)
        for i, port in enumerate(replicas):
            with _client(masters[i % self.masters]) as c:
                master_id = _text(c.execute_command("CLUSTER", "MYID"))
            with _client(port) as c:
                c.execute_command("CLUSTER", "REPLICATE", master_id)


def free_base_port(count: int = 6, attempts: int = 100) -> int:
    """A port ``p`` with ``p .. p + count - 1`` and their bus ports (+ 10000) all free."""
    for _ in range(attempts):
        base = free_port(highest=REDIS_CLUSTER_HIGHEST_PORT - count)
        ports = [base + i for i in range(count)]
        if all(port_is_free(p) and port_is_free(p + 10000) for p in ports):
            return base
    raise ServiceError(f"no {count} consecutive free ports for a Redis Cluster")


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=5.0)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _known(c: redis.Redis) -> int:
    """How many nodes (itself included) ``c``'s node knows."""
    text = _text(c.execute_command("CLUSTER", "NODES"))  # type: ignore[no-untyped-call]
    return len([line for line in text.splitlines() if line.strip()])


def _cluster_state(c: redis.Redis) -> str | None:
    raw = c.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
    if isinstance(raw, dict):
        return str(raw.get("cluster_state"))
    for line in _text(raw).splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return None
