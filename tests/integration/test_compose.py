"""docker-compose.yml parses (no Docker engine needed) and defines the production-like stack.

Everything is read from `docker-compose config`, i.e. after Compose merged the worker template
and interpolated the ${...} defaults, so these checks see what a container would get.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shutil.which("docker-compose")
COMPOSE_FILE = ROOT / "docker-compose.yml"
WORKERS = ("worker-1", "worker-2")
# Variables docker-compose.yml interpolates; cleared so a developer's shell cannot change them.
PASSWORD_VARS = ("RTP_REDIS_PASSWORD", "RTP_REDIS_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD")


def compose(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run docker-compose on the repo's file with only ``env`` set, and no `.env` file."""
    assert COMPOSE is not None, "docker-compose is missing: `make setup` installs it"
    # An empty --env-file: a developer's real .env next to the compose file must not leak in.
    empty = tmp_path / "empty.env"
    empty.touch()
    clean = {k: v for k, v in os.environ.items() if k not in PASSWORD_VARS}
    check = subprocess.run(
        [COMPOSE, "-f", str(COMPOSE_FILE), "--env-file", str(empty), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, **(env or {})},
    )
    assert check.returncode == 0, check.stderr
    return check.stdout


def config(tmp_path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(compose(tmp_path, "config", env=env))
    return loaded


def published(service: dict[str, Any]) -> dict[int, int]:
    """Host port -> container port, from either form `docker-compose config` writes."""
    ports: dict[int, int] = {}
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports[int(port["published"])] = int(port["target"])
        else:  # "127.0.0.1:6066:6066/tcp"
            *_, host, container = port.split("/")[0].split(":")
            ports[int(host)] = int(container)
    return ports


def repo_mount(service: dict[str, Any], target: str) -> Path:
    """The repo path bind-mounted at ``target`` (or at a parent of it) in ``service``."""
    for volume in service.get("volumes", []):
        source, mounted = volume.split(":")[:2]
        if target == mounted or target.startswith(mounted.rstrip("/") + "/"):
            return Path(source) / Path(target).relative_to(mounted)
    raise AssertionError(f"nothing mounted at {target}: {service.get('volumes')}")


def test_compose_file_is_valid_and_defines_the_stack(tmp_path: Path) -> None:
    compose(tmp_path, "config", "-q")
    services = set(compose(tmp_path, "config", "--services").split())
    assert {"kafka", "redis", *WORKERS, "prometheus", "grafana", "producer"} <= services


def test_two_workers_share_the_group_and_publish_their_own_ports(tmp_path: Path) -> None:
    services = config(tmp_path)["services"]
    workers = [services[name] for name in WORKERS]
    assert len({w["image"] for w in workers}) == 1
    assert len({w["environment"]["RTP_APP_ID"] for w in workers}) == 1  # one consumer group
    host_ports: set[int] = set()
    for worker in workers:
        env = worker["environment"]
        assert env["RTP_WEB_HOST"] == "0.0.0.0"  # reachable from Prometheus and the host
        assert env["RTP_BROKER"] == "kafka://kafka:9092"
        ports = published(worker)
        assert set(ports.values()) == {int(env["RTP_WEB_PORT"])}
        host_ports |= ports.keys()
    assert host_ports == {6066, 6067}
    assert 3000 in published(services["grafana"])


def test_workers_connect_as_the_acl_user_with_the_configured_password(tmp_path: Path) -> None:
    for env, password in (({}, "change-me"), ({"RTP_REDIS_PASSWORD": "s3cret-pw"}, "s3cret-pw")):
        services = config(tmp_path, env)["services"]
        redis = services["redis"]
        # The password reaches both ends: the ACL renderer in the redis container and the URL.
        assert redis["environment"]["RTP_REDIS_PASSWORD"] == password
        for name in WORKERS:
            url = urlparse(services[name]["environment"]["RTP_REDIS_URL"])
            assert (url.username, url.password, url.hostname) == ("worker", password, "redis")
        # The producer never talks to Redis and gets no credentials at all.
        assert "RTP_REDIS_URL" not in services["producer"].get("environment", {})
    command = " ".join(redis["command"])
    assert "--aclfile" in command and "render-acl.sh" in command
    acl_template = repo_mount(redis, "/etc/rtp-redis/users.acl")
    rules = acl_template.read_text()
    assert "user default off" in rules and "user worker on" in rules
    assert (acl_template.parent / "render-acl.sh").is_file()
    # The health check must authenticate: with the default user off, PING alone gets NOAUTH.
    assert "--user worker" in " ".join(redis["healthcheck"]["test"])


def test_prometheus_scrapes_both_workers(tmp_path: Path) -> None:
    services = config(tmp_path)["services"]
    prometheus = services["prometheus"]
    scrape_file = repo_mount(prometheus, "/etc/prometheus/prometheus.yml")
    assert scrape_file.is_file()
    scrape = yaml.safe_load(scrape_file.read_text())
    targets = {
        target
        for job in scrape["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for group in job["static_configs"]
        for target in group["targets"]
    }
    expected = {f"{name}:{services[name]['environment']['RTP_WEB_PORT']}" for name in WORKERS}
    assert targets == expected
    intervals = {
        job.get("scrape_interval", scrape["global"]["scrape_interval"])
        for job in scrape["scrape_configs"]
    }
    assert intervals == {"5s"}


def test_traffic_profile_adds_the_producer(tmp_path: Path) -> None:
    services = config(tmp_path)["services"]
    # docker-compose 1.29 lists profiled services in `config` too; the profile marks them.
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert {n for n in profiled if services[n]["profiles"] == ["traffic"]} == {"producer"}
    assert "produce" in services["producer"]["command"]
    compose(tmp_path, "--profile", "traffic", "config", "-q")


def test_cluster_profile_runs_workers_on_a_three_by_three_redis_cluster(tmp_path: Path) -> None:
    services = config(tmp_path, {"RTP_REDIS_PASSWORD": "pw-1", "RTP_REDIS_ADMIN_PASSWORD": "pw-2"})[
        "services"
    ]
    cluster = {n for n, s in services.items() if s.get("profiles") == ["cluster"]}
    nodes = {f"redis-node-{i}" for i in range(1, 7)}
    workers = {"worker-cluster-1", "worker-cluster-2"}
    assert cluster == nodes | workers | {"redis-cluster-init", "topics-cluster"}
    for name in nodes:
        command = " ".join(services[name]["command"])
        assert "--cluster-enabled yes" in command and "--aclfile" in command
        assert "--appendfsync always" in command and "--masteruser admin" in command
        assert any(":/data" in v for v in services[name]["volumes"])
    assert len({v for n in nodes for v in services[n]["volumes"] if ":/data" in v}) == 6
    init = " ".join(services["redis-cluster-init"]["command"])
    assert "--cluster create" in init and "--cluster-replicas 1" in init
    assert set(services["redis-cluster-init"]["depends_on"]) == nodes
    ports: set[int] = set()
    for name in workers:
        env = services[name]["environment"]
        url = urlparse(env["RTP_REDIS_URL"])
        assert url.scheme == "redis+cluster" and (url.username, url.password) == ("worker", "pw-1")
        assert str(env["RTP_REDIS_WAIT_REPLICAS"]) == "1"
        # Its own group, routed topic and outputs: it runs beside the single-Redis pair.
        assert env["RTP_APP_ID"] == "profiles-cluster"
        assert env["RTP_ROUTED_TOPIC"] != services["worker-1"]["environment"].get(
            "RTP_ROUTED_TOPIC", "profiles-routed"
        )
        assert set(services[name]["depends_on"]) == {"topics-cluster", "redis-cluster-init"}
        ports |= published(services[name]).keys()
    assert ports == {6068, 6069}
    topics_env = services["topics-cluster"]["environment"]
    assert {k: v for k, v in topics_env.items() if k.endswith("_TOPIC")} == {
        k: v for k, v in services["worker-cluster-1"]["environment"].items() if k.endswith("_TOPIC")
    }
    compose(tmp_path, "--profile", "cluster", "config", "-q")
