"""docker-compose.yml parses (no Docker engine needed) and defines the production-like stack."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shutil.which("docker-compose")


def test_compose_file_is_valid_and_defines_the_stack() -> None:
    assert COMPOSE is not None, "docker-compose is missing: `make setup` installs it"
    compose_file = str(ROOT / "docker-compose.yml")
    check = subprocess.run(
        [COMPOSE, "-f", compose_file, "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    listed = subprocess.run(
        [COMPOSE, "-f", compose_file, "config", "--services"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    services = set(listed.stdout.split())
    assert {"kafka", "redis", "worker"} <= services
