"""The Grafana dashboard and its provisioning: valid, wired together, and naming only real metrics.

Grafana shows an empty panel, not an error, for a metric that does not exist, so a renamed
metric would silently blank the dashboard; these checks catch that before anyone looks at it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from stream.worker.metrics import NAMES, Metrics

ROOT = Path(__file__).resolve().parents[3]
OPS = ROOT / "ops"
DASHBOARD = OPS / "grafana" / "dashboards" / "profiles.json"
DATASOURCES = OPS / "grafana" / "provisioning" / "datasources"
PROVIDERS = OPS / "grafana" / "provisioning" / "dashboards"
PROMETHEUS = OPS / "prometheus" / "prometheus.yml"
COMPOSE = ROOT / "docker-compose.yml"

# Not preceded by an identifier character: `xrtp_foo` is no metric of ours.
METRIC = re.compile(r"(?<![A-Za-z0-9_:])rtp_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets and template variable queries."""
    found = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        found.append(query["query"] if isinstance(query, dict) else str(query or ""))
    return found


def exported_series() -> dict[str, str]:
    """Series name -> type, for every family in NAMES, as prometheus_client exports them.

    The types come from the worker's own registry rather than from naming conventions, so
    e.g. a counter's ``_count`` or a gauge's ``_bucket`` is rejected.
    """
    types = {family.name: family.type for family in Metrics().registry.collect()}
    series: dict[str, str] = {}
    for name in NAMES:
        # prometheus_client names a counter family without its _total suffix.
        kind = types.get(name) or types[name.removesuffix("_total")]
        if kind == "histogram":
            series.update({name + suffix: kind for suffix in HISTOGRAM_SUFFIXES})
        else:
            series[name] = kind
    return series


def family(series: str) -> str:
    """The NAMES entry a series belongs to (``rtp_x_seconds_bucket`` -> ``rtp_x_seconds``)."""
    for suffix in HISTOGRAM_SUFFIXES:
        if series.endswith(suffix) and series.removesuffix(suffix) in NAMES:
            return series.removesuffix(suffix)
    return series


def provisioned_datasource() -> dict[str, Any]:
    sources = [s for f in sorted(DATASOURCES.glob("*.yml")) for s in load_yaml(f)["datasources"]]
    prometheus = [s for s in sources if s["type"] == "prometheus"]
    assert len(prometheus) == 1, f"want exactly one Prometheus datasource, got {prometheus}"
    source: dict[str, Any] = prometheus[0]
    return source


def grafana_mounts() -> dict[PurePosixPath, Path]:
    """Grafana's bind mounts in docker-compose.yml: container path -> path in this repo."""
    service = load_yaml(COMPOSE)["services"]["grafana"]
    mounts: dict[PurePosixPath, Path] = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("."):  # named volumes hold Grafana's own state, not our files
            mounts[PurePosixPath(target)] = (ROOT / source).resolve()
    return mounts


def in_repo(container_path: str) -> Path:
    """Where a path inside the Grafana container comes from in this repo."""
    path = PurePosixPath(container_path)
    for target, source in grafana_mounts().items():
        if path == target or target in path.parents:
            return source.joinpath(*path.relative_to(target).parts)
    raise AssertionError(f"{container_path} is not mounted from the repo into Grafana")


def test_dashboard_is_a_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41  # Grafana 10 / 11
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"{panel['title']!r} is wider than the grid"


def test_every_panel_has_a_title_and_the_provisioned_datasource(
    dashboard: dict[str, Any],
) -> None:
    uid = provisioned_datasource()["uid"]
    for panel in panels(dashboard):
        assert panel.get("title"), f"panel {panel['id']} has no title"
        if panel["type"] == "row":
            continue  # a row only groups panels; it queries nothing
        assert panel.get("datasource") == {"type": "prometheus", "uid": uid}, panel["title"]
        targets = panel.get("targets", [])
        assert targets, f"{panel['title']!r} has no query"
        for target in targets:
            assert target.get("datasource", panel["datasource"])["uid"] == uid, panel["title"]
            assert target["expr"].strip(), panel["title"]
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), f"{panel['title']!r} repeats a refId"
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == uid, var["name"]


def test_queries_name_only_metrics_the_worker_exports(dashboard: dict[str, Any]) -> None:
    exported = exported_series()
    named = {m for expr in expressions(dashboard) for m in METRIC.findall(expr)}
    unknown = sorted(named - exported.keys())
    assert not unknown, f"not exported by stream/worker/metrics.py: {unknown}"
    # The other direction: a metric in NAMES that no panel shows is a blind spot.
    unused = sorted(set(NAMES) - {family(m) for m in named})
    assert not unused, f"metrics in stream.worker.metrics.NAMES without a panel: {unused}"


def test_counters_and_histograms_are_queried_as_rates(dashboard: dict[str, Any]) -> None:
    """A raw counter only ever grows and resets on restart; plotting it is always a mistake."""
    exported = exported_series()
    for expr in expressions(dashboard):
        for metric in METRIC.findall(expr):
            if exported[metric] in ("counter", "histogram"):
                assert re.search(rf"\b(rate|increase)\(\s*{metric}\b", expr), (metric, expr)
        for match in re.finditer(r"histogram_quantile\(", expr):
            inner = expr[match.end() :]
            assert re.search(r"sum by \((le|le, [a-z_, ]+)\)", inner), expr
            assert "_bucket" in inner, expr


def test_queries_follow_the_worker_picker(dashboard: dict[str, Any]) -> None:
    """Every selector of ours filters by the $instance variable, so picking a worker works."""
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert "instance" in names
    for expr in expressions(dashboard):
        for selector in re.finditer(r"(?<![A-Za-z0-9_:])rtp_[a-z_]+(\{[^}]*\})?", expr):
            assert selector.group(1) and 'instance=~"$instance"' in selector.group(1), expr


def test_job_labels_are_scraped_by_prometheus(dashboard: dict[str, Any]) -> None:
    jobs = {job["job_name"] for job in load_yaml(PROMETHEUS)["scrape_configs"]}
    named = {m for expr in expressions(dashboard) for m in re.findall(r'job="([^"]+)"', expr)}
    assert named and named <= jobs, f"dashboard jobs {named}, Prometheus jobs {jobs}"


def test_datasource_provisioning_points_at_the_compose_prometheus() -> None:
    source = provisioned_datasource()
    url = urlparse(source["url"])
    services = load_yaml(COMPOSE)["services"]
    assert url.hostname in services and "prometheus" in services[url.hostname]["image"]
    assert url.port == 9090  # Prometheus's own port inside the compose network


def test_dashboard_provisioning_finds_the_dashboard_file() -> None:
    providers = [p for f in sorted(PROVIDERS.glob("*.yml")) for p in load_yaml(f)["providers"]]
    assert providers, "no dashboard provider"
    for provider in providers:
        assert provider["type"] == "file"
        folder = in_repo(provider["options"]["path"])
        assert folder.is_dir(), folder
        assert DASHBOARD.resolve() in {p.resolve() for p in folder.glob("*.json")}
    # The provisioning files themselves reach Grafana where it reads them.
    assert in_repo("/etc/grafana/provisioning/datasources") == DATASOURCES.resolve()
    assert in_repo("/etc/grafana/provisioning/dashboards") == PROVIDERS.resolve()
    home = load_yaml(COMPOSE)["services"]["grafana"]["environment"].get(
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    )
    if home:
        assert in_repo(home).resolve() == DASHBOARD.resolve()


ALERTS = OPS / "prometheus" / "alerts.yml"
#: Failures that must page someone: each of these metrics has an alert rule.
ALERTED = (
    "rtp_ready",
    "rtp_crashes_total",
    "rtp_skipped_records_total",
    "rtp_outage_active",
    "rtp_fence_epochs_total",
)


def test_alert_rules_are_loaded_by_prometheus_and_name_only_real_metrics() -> None:
    config = load_yaml(PROMETHEUS)
    assert "/etc/prometheus/alerts.yml" in config["rule_files"]
    mounts = {
        v.split(":")[1]: (ROOT / v.split(":")[0]).resolve()
        for v in load_yaml(COMPOSE)["services"]["prometheus"]["volumes"]
        if v.startswith(".")
    }
    assert mounts["/etc/prometheus/alerts.yml"] == ALERTS.resolve()
    rules = [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"]]
    assert len({r["alert"] for r in rules}) == len(rules), "alert names must be unique"
    exported = exported_series()
    named: set[str] = set()
    for rule in rules:
        assert rule["annotations"]["summary"] and rule["labels"]["severity"], rule["alert"]
        metrics = set(METRIC.findall(rule["expr"]))
        assert metrics <= exported.keys(), (rule["alert"], metrics - exported.keys())
        for metric in metrics:
            if exported[metric] == "counter":
                assert re.search(rf"\b(rate|increase)\(\s*{metric}\b", rule["expr"]), rule
        named |= metrics
    missing = sorted(set(ALERTED) - named)
    assert not missing, f"failure metrics without an alert rule: {missing}"


def test_compose_kafka_keeps_its_topics_on_a_volume() -> None:
    """Without one, a restarted container loses every topic and offsets start again."""
    compose = load_yaml(COMPOSE)
    kafka = compose["services"]["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    named = {v.split(":")[0]: v.split(":")[1] for v in kafka["volumes"]}
    assert log_dirs in named.values()
    assert all(source in compose["volumes"] for source in named)
