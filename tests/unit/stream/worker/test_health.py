"""Failures are visible: outages logged once, crashes and outages in /health, give up in time."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from profiles.redis.client import RedisOutage
from stream.settings import Settings
from stream.worker.health import Health, report
from stream.worker.outages import OutageTracker
from stream.worker.retry import KafkaOutage
from stream.worker.runtime import Runtime


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def tracker(clock: Clock) -> tuple[OutageTracker, CollectorRegistry]:
    r = CollectorRegistry()
    began = Counter("rtp_outages_total", "", ["dependency"], registry=r)
    active = Gauge("rtp_outage_active", "", ["dependency"], registry=r)
    return OutageTracker(began, active, clock), r


def test_an_outage_is_logged_once_when_it_begins_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 3-second Redis outage printed 16-21 tracebacks from timers; now two lines."""
    clock = Clock()
    outages, registry = tracker(clock)
    caplog.set_level(logging.DEBUG, logger="stream.worker.outages")
    for tick in range(20):  # every timer and agent failing, again and again
        clock.now += 0.15
        for what in ("churn sweep", "segment merge", "catalog poll", "update batch"):
            outages.failed(what, RedisOutage(f"ConnectionError: refused ({tick})"))
    assert value(registry, "rtp_outage_active", dependency="redis") == 1
    assert set(outages.active()) == {"redis"}
    outages.ok("measure lag")  # did not fail in this outage: says nothing about Redis
    assert set(outages.active()) == {"redis"}
    clock.now += 0.1
    outages.ok("catalog poll")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(":")[0] for r in warnings] == [
        "redis outage began",
        "redis outage over after 3.0 s (80 failed attempts; catalog poll succeeded again)",
    ]
    assert all(r.exc_info is None for r in caplog.records), "no tracebacks for an outage"
    assert value(registry, "rtp_outages_total", dependency="redis") == 1
    assert value(registry, "rtp_outage_active", dependency="redis") == 0
    assert outages.active() == {}
    # Right after the end, a stale pooled connection fails once: the same outage, not logged.
    clock.now += 0.5
    outages.failed("input marks", RedisOutage("ConnectionError: Connection closed by server."))
    outages.ok("input marks")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2
    assert value(registry, "rtp_outages_total", dependency="redis") == 1
    clock.now += 60  # long after: a new outage
    # The next outage counts again; outages of two dependencies are separate.
    outages.failed("routing sends", KafkaOutage("KafkaConnectionError: down"))
    outages.failed("update batch", RedisOutage("ConnectionError: refused"))
    assert set(outages.active()) == {"kafka", "redis"}
    outages.ok("routing sends")
    assert set(outages.active()) == {"redis"}
    assert value(registry, "rtp_outages_total", dependency="redis") == 2


def test_a_crash_makes_health_not_ready_until_it_recovers_and_gives_up_after_the_limit() -> None:
    clock = Clock()
    outages, _ = tracker(clock)
    r = CollectorRegistry()
    crashes = Counter("rtp_crashes_total", "", ["component"], registry=r)
    health = Health(crashes, outages, exit_after_s=30.0, clock=clock)
    assert health.problems() == [] and health.give_up() is None
    health.crash("ingest", RuntimeError("ProducerSendError"))
    health.crash("ingest", RuntimeError("again"))  # still the same crash
    assert value(r, "rtp_crashes_total", component="ingest") == 1
    clock.now += 10
    assert health.problems() == ["ingest crashed 10 s ago: RuntimeError: ProducerSendError"]
    assert health.give_up() is None
    health.alive("ingest")  # it ran a batch again
    assert health.problems() == []
    health.crash("fetcher", UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"))
    clock.now += 30
    why = health.give_up()
    assert why is not None and why.startswith("fetcher crashed 30 s ago")
    never = Health(crashes, outages, exit_after_s=0.0, clock=clock)
    never.crash("update", ValueError("x"))
    clock.now += 10_000
    assert never.give_up() is None


def test_health_report_says_what_is_wrong() -> None:
    runtime = Runtime(Settings.from_env({}))
    ready, body = runtime.health_report()
    assert not ready and body["problems"][0].startswith("starting")
    runtime._ready.set()
    runtime.metrics.assigned.set(4)
    ready, body = runtime.health_report()
    assert not ready and body["problems"] == ["starting: output topics not declared yet"]
    runtime.outputs_declared = True
    ready, body = runtime.health_report()
    assert ready and "problems" not in body
    assert runtime.metrics.registry.get_sample_value("rtp_ready") == 1
    runtime.health.crash("update", KeyError("boom"))
    runtime.failed("update batch", RedisOutage("ConnectionError: refused"))
    ready, body = runtime.health_report()
    assert not ready
    assert body["problems"][0].startswith("update crashed 0 s ago: KeyError")
    assert body["problems"][1].startswith("redis outage for")
    assert runtime.metrics.registry.get_sample_value("rtp_ready") == 0
    assert (
        runtime.metrics.registry.get_sample_value("rtp_retries_total", {"error": "RedisOutage"})
        == 1
    )


def test_report_is_ready_only_when_started_declared_and_assigned() -> None:
    clock = Clock()
    outages, r = tracker(clock)
    health = Health(Counter("rtp_crashes_total", "", ["component"], registry=r), outages, 0.0)
    gauge = Gauge("rtp_ready", "", registry=r)
    ready, body = report(health, started=True, outputs_declared=True, assigned=0, gauge=gauge)
    assert not ready and body["problems"] == ["no partitions assigned (yet)"]
    assert body["assigned"] == 0 and value(r, "rtp_ready") == 0
    ready, body = report(health, started=True, outputs_declared=True, assigned=2, gauge=gauge)
    assert ready and body == {"alive": True, "ready": True, "assigned": 2}
    assert value(r, "rtp_ready") == 1
    ready, body = report(health, started=False, outputs_declared=True, assigned=2, gauge=gauge)
    assert not ready and body["problems"][0].startswith("starting: Redis not answered")


async def test_a_crashing_faust_agent_is_recorded_by_the_worker(tmp_path: Path) -> None:
    """The wiring: Faust's on_error of both agents reaches Health (and Faust's own handler)."""
    from stream.worker.app import create_app

    env = {"RTP_DATA_DIR": str(tmp_path / "faust"), "RTP_INGEST_CONSUMER": "faust"}
    app, runtime = create_app(Settings.from_env(env))
    for name in ("ingest", "update"):
        agent = app.agents[name]
        await agent._on_error(agent, RuntimeError(f"{name} boom"))  # type: ignore[attr-defined]
    assert sorted(runtime.health.crashed) == ["ingest", "update"]
    assert (
        runtime.metrics.registry.get_sample_value("rtp_crashes_total", {"component": "ingest"}) == 1
    )
    ready, body = runtime.health_report()
    assert not ready and "ingest crashed 0 s ago: RuntimeError: ingest boom" in body["problems"]


async def test_a_crashing_batch_consumer_is_recorded_by_the_worker(tmp_path: Path) -> None:
    """With the batch ingest consumer (the default) there is no Faust ingest agent; a bug in
    its loop is a crash of "ingest" all the same, and ends the loop like a crashed agent."""
    from stream.worker.app import create_app
    from stream.worker.consumer import BatchInput

    settings = Settings.from_env({"RTP_DATA_DIR": str(tmp_path / "faust")})
    app, runtime = create_app(settings)
    assert sorted(app.agents) == ["update"]

    async def ready() -> None:
        return None

    async def broken(within_ms: int) -> dict[Any, list[Any]]:
        raise RuntimeError("ingest boom")

    batch = BatchInput(settings, runtime, None, None, None, ready)  # type: ignore[arg-type]
    batch._poll = broken  # type: ignore[method-assign]
    await asyncio.wait_for(batch.consume(), 10)
    assert list(runtime.health.crashed) == ["ingest"]
    ready_now, body = runtime.health_report()
    assert not ready_now and any("RuntimeError: ingest boom" in p for p in body["problems"])
