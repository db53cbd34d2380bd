"""`python -m stream dev up` keeps Redis and the in-memory broker consistent."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from stream.devtools.dev import start_local
from stream.devtools.services import LocalServices, free_port

pytestmark = pytest.mark.integration


def test_a_new_broker_clears_the_stale_profiles_of_the_last_session(tmp_path: Path) -> None:
    services = LocalServices(tmp_path, broker_port=free_port(), redis_port=free_port())
    try:
        assert start_local(services, services.redis_url) is False  # nothing stale yet
        client = redis.Redis.from_url(services.redis_url)
        client.set("rtp:p:{u}", "fenced at offsets of the old broker")
        client.set("other:key", "not ours")
        assert start_local(services, services.redis_url) is False  # same broker: kept
        assert client.exists("rtp:p:{u}")
        services.kill("broker")
        assert start_local(services, services.redis_url) is True  # new broker, offsets reset
        assert not client.exists("rtp:p:{u}")
        client.close()
    finally:
        services.down()
