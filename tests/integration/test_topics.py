"""``python -m stream topics create|check`` and the worker's own declarations, on the broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.integration.harness import Names, Worker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def env_for(names: Names, brokers: str) -> dict[str, str]:
    return {
        **os.environ,
        **names.env(),
        "RTP_BROKER": f"kafka://{brokers}",
        "RTP_SEGMENT_TOPIC": f"segments-{names.tag}",
        "RTP_CHURN_TOPIC": f"churn-{names.tag}",
        "RTP_VALUE_TOPIC": f"value-{names.tag}",
        "RTP_SENTIMENT_TOPIC": f"sentiment-{names.tag}",
        "RTP_RISK_TOPIC": f"risk-{names.tag}",
        "RTP_AUDIENCE_TOPIC": f"audiences-{names.tag}",
        "RTP_MERGED_TOPIC": f"merged-{names.tag}",
        "RTP_INPUT_PARTITIONS": "3",
        "RTP_TOPIC_RETENTION_HOURS": "48",
    }


async def topics(action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "stream", "topics", action],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def configs(brokers: str, name: str) -> tuple[int, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([name])
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        entries = response.resources[0][4]
        return len(described["partitions"]), {e[0]: e[1] for e in entries}
    finally:
        await admin.close()


async def test_create_makes_every_topic_then_check_passes(brokers: str) -> None:
    names = Names()
    env = env_for(names, brokers)
    before = await topics("check", env)
    assert before.returncode == 1, before.stdout + before.stderr
    assert before.stdout.count("DRIFT: missing") == 12, before.stdout

    made = await topics("create", env)
    assert made.returncode == 0, made.stdout + made.stderr
    assert "12 topics, 12 created, 0 with drift" in made.stdout, made.stdout

    again = await topics("check", env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "12 topics, 0 created, 0 with drift" in again.stdout, again.stdout

    assert await configs(brokers, names.profiles) == (
        4,
        {"cleanup.policy": "compact", "min.insync.replicas": "1"},
    )
    partitions, cfg = await configs(brokers, names.input)
    assert partitions == 3
    assert cfg["cleanup.policy"] == "delete" and cfg["retention.ms"] == str(48 * 3_600_000)


async def test_check_reports_drift_of_a_topic_made_otherwise(brokers: str) -> None:
    names = Names()
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:  # the profile topic as broker auto-creation would have left it: 2 partitions, delete
        await admin.create_topics([NewTopic(names.profiles, 2, 1)])
    finally:
        await admin.close()
    made = await topics("create", env_for(names, brokers))
    assert made.returncode == 1, made.stdout + made.stderr
    line = next(ln for ln in made.stdout.splitlines() if ln.startswith(names.profiles))
    assert "partitions 2, want 4" in line and "cleanup.policy=" in line, line
    assert "11 created, 1 with drift" in made.stdout, made.stdout


async def test_the_worker_declares_its_outputs_with_the_same_layout(
    brokers: str, names: Names, worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **worker_env,
        **{k: v for k, v in env_for(names, brokers).items() if k.startswith("RTP_")},
    }
    proc = Worker(env, tmp_path / "worker.log").start()
    try:
        await proc.wait_ready(timeout=120)
        assert (await configs(brokers, names.profiles))[1]["cleanup.policy"] == "compact"
        assert (await configs(brokers, names.dlq))[1]["cleanup.policy"] == "delete"
        assert (await configs(brokers, names.audiences))[1]["cleanup.policy"] == "compact"
        assert (await configs(brokers, names.merged))[1]["cleanup.policy"] == "delete"
    finally:
        proc.stop()
    # What the worker made, the command finds in order. The input topic is the producers':
    # the worker's subscription made the broker auto-create it with the broker's defaults,
    # which is why `topics create` runs before the workers (compose) and reports it here.
    checked = await topics("check", env_for(names, brokers))
    lines = {ln.split()[1]: ln for ln in checked.stdout.splitlines()[1:-1]}
    assert all(lines[role].endswith(" ok") for role in lines if role != "input"), checked.stdout
    assert "DRIFT" in lines["input"] and checked.returncode == 1, checked.stdout
