"""``python -m stream dev``: the one command for the local broker (Tansu) and Redis.

Ports come from the worker's own settings (the port of ``RTP_BROKER`` and of
``RTP_REDIS_URL``), so the services and the worker always agree; the state directory is
``RTP_DEV_DIR`` (or ``--state-dir``). The demo starts the same services the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlparse

from stream.devtools.cluster import LocalRedisCluster
from stream.devtools.services import BROKER, LocalServices, ServiceError
from stream.settings import Settings

ACTIONS = "up | down | status | kill NAME | start NAME"


def local_services(
    settings: Settings, state_dir: str | None = None, redis_args: Sequence[str] = ()
) -> LocalServices:
    """Embedded broker and Redis on the ports named by ``RTP_BROKER``/``RTP_REDIS_URL``."""
    broker_port = int(settings.kafka.broker_hosts[0].rsplit(":", 1)[1])
    redis_port = urlparse(settings.redis.url.get_secret_value()).port or 6379
    directory = Path(state_dir or settings.dev.dir)
    return LocalServices(
        directory, broker_port=broker_port, redis_port=redis_port, redis_args=redis_args
    )


def local_cluster(
    settings: Settings, state_dir: str | None = None, redis_args: Sequence[str] = ()
) -> LocalRedisCluster:
    """The dev Redis Cluster: under ``<state dir>/redis-cluster``, on the port of a
    ``redis+cluster://`` RTP_REDIS_URL and the five after it (7000-7005 otherwise)."""
    url = settings.redis.url.get_secret_value()
    base = (urlparse(url).port or 7000) if url.startswith("redis+cluster://") else 7000
    directory = Path(state_dir or settings.dev.dir) / "redis-cluster"
    return LocalRedisCluster(directory, base_port=base, node_timeout_ms=5000, redis_args=redis_args)


def start_cluster(
    services: LocalServices, cluster: LocalRedisCluster, timeout: float = 60.0
) -> bool:
    """The broker and the cluster; a new broker empties the cluster (as :func:`start_local`
    does the single Redis). Returns whether the cluster was emptied."""
    broker_was_running = bool(services.status()[BROKER]["running"])
    services.start(BROKER, timeout=timeout)
    cluster.up(timeout=timeout)
    if broker_was_running:
        return False
    cluster.flush()
    return True


def start_local(services: LocalServices, redis_url: str, timeout: float = 20.0) -> bool:
    """Start the embedded services; if the broker is new, clear the Redis it pairs with.

    Tansu keeps topics in memory, so a new broker restarts every offset at 0, while Redis
    (AOF) still holds profiles fenced at the old offsets: new events would look applied.
    Returns whether Redis was cleared.
    """
    from profiles.redis.client import sync_client

    broker_was_running = bool(services.status()["broker"]["running"])
    services.up(timeout=timeout)
    if broker_was_running:
        return False
    client = sync_client(redis_url)  # the local Redis: plain, no TLS
    try:
        stale = next(iter(client.scan_iter(match="rtp:*", count=100)), None) is not None
        if stale:
            client.flushdb()
        return stale
    finally:
        client.close()


def format_status(report: dict[str, dict[str, object]]) -> str:
    headers = ("service", "running", "ready", "pid", "port", "log")
    rows = [headers]
    for name, info in report.items():
        rows.append(
            (
                name,
                "yes" if info["running"] else "no",
                "yes" if info["ready"] else "no",
                "-" if info["pid"] is None else str(info["pid"]),
                str(info["port"]),
                str(info["log"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def run_dev(
    settings: Settings,
    action: str,
    name: str | None = None,
    *,
    state_dir: str | None = None,
    redis_args: Sequence[str] = (),
    timeout: float | None = None,
    redis_cluster: bool = False,
    say: Callable[[str], None] = print,
) -> int:
    """Run one dev action; returns the exit status (3: ``status`` found a service not ready)."""
    services = local_services(settings, state_dir, redis_args)
    cluster = local_cluster(settings, state_dir, redis_args)
    try:
        if action == "up" and redis_cluster:
            started = time.monotonic()
            if start_cluster(services, cluster, 60.0 if timeout is None else timeout):
                say("new in-memory broker: emptied the Redis Cluster")
            say(f"ready in {time.monotonic() - started:.2f}s")
            say(f"  broker  {services.broker_url}")
            say(f"  redis   {cluster.url}  (3 masters, 3 replicas: {cluster.roles()})")
            say(f"  set RTP_REDIS_URL={cluster.url} for the worker and the commands")
        elif action == "up":
            started = time.monotonic()
            url = settings.redis.url.get_secret_value()
            if start_local(services, url, 20.0 if timeout is None else timeout):
                say("new in-memory broker: cleared the previous session's Redis state")
            say(f"ready in {time.monotonic() - started:.2f}s")
            say(f"  broker  {services.broker_url}")
            say(f"  redis   {services.redis_url}")
        elif action == "down":
            services.down(timeout=10.0 if timeout is None else timeout)
            if cluster.state_dir.exists():
                cluster.down(timeout=10.0 if timeout is None else timeout)
            say("stopped")
        elif action in ("kill", "start") and name:
            say(kill_or_start(services, action, name, 20.0 if timeout is None else timeout))
        elif action == "status":
            report = services.status()
            say(format_status(report))
            if cluster.state_dir.exists() and cluster.running():
                problem = cluster.problem()
                say(f"redis cluster {cluster.url}: {problem or 'ok'}; roles {cluster.roles()}")
                return 0 if report[BROKER]["ready"] and problem is None else 3
            return 0 if all(info["ready"] for info in report.values()) else 3
        else:
            say(f"error: unknown action {action!r}: use {ACTIONS}")
            return 2
    except ServiceError as exc:
        say(f"error: {exc}")
        return 1
    return 0


def kill_or_start(services: LocalServices, action: str, name: str, timeout: float = 20.0) -> str:
    """Do ``action`` to service ``name`` and say what happened (also when nothing had to)."""
    before = services.status().get(name, {})
    if action == "kill":
        services.kill(name)
    else:
        services.start(name, timeout=timeout)
    after = services.status().get(name, {})
    port = after.get("port") or before.get("port")
    if action == "kill":
        if not before.get("running"):
            return f"{name} was not running"
        return f"killed {name} (pid {before.get('pid')}, SIGKILL; port {port} now closed)"
    if before.get("running"):
        return f"{name} was already running (pid {after.get('pid')}, port {port})"
    return f"started {name} (pid {after.get('pid')}, port {port}, ready)"
