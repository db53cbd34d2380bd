"""Which partition owns a user: the routing rule, shared by the stream and the stores."""

from __future__ import annotations

import zlib


def owner(key: str, partitions: int) -> int:
    """Owner partition of a user (or product); stable across processes and restarts.

    >>> owner("u1", 4) == owner("u1", 4)
    True
    """
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions
