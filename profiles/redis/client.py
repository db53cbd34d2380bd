"""The one place Redis clients are built, so TLS options apply to every connection.

The URL carries the address, database, user and password (``redis://user:password@host/db``)
and turns TLS on (``rediss://``); :class:`RedisTLS` adds what a URL cannot hold well: the CA
that signed the server's certificate and, where the server asks for one, the client's own
certificate and key (mutual TLS). Without a CA file the system's trust store is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis


@dataclass(frozen=True)
class RedisTLS:
    """CA and client certificate files for ``rediss://`` URLs; empty = not given."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def options(self, url: str) -> dict[str, Any]:
        """redis-py keyword arguments; none for a plain ``redis://`` URL."""
        if not url.startswith("rediss://"):
            return {}
        out: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
        if self.ca_file:
            out["ssl_ca_certs"] = self.ca_file
        if self.cert_file:
            out["ssl_certfile"] = self.cert_file
            out["ssl_keyfile"] = self.key_file or None
        return out


def sync_client(url: str, tls: RedisTLS | None = None, **kwargs: Any) -> redis.Redis:
    """A blocking client (vector tier, tools)."""
    return redis.Redis.from_url(url, **(tls or RedisTLS()).options(url), **kwargs)


def async_client(url: str, tls: RedisTLS | None = None, **kwargs: Any) -> aioredis.Redis:
    """An asyncio client (the store, on the worker's event loop)."""
    return aioredis.Redis.from_url(url, **(tls or RedisTLS()).options(url), **kwargs)
