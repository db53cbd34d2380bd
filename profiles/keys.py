"""Redis key layout. All of one user's keys share the Redis Cluster hash slot ``{user_id}``.

| key | type | holds |
| --- | --- | --- |
| ``rtp:p:{<user>}`` | hash | ``v`` profile version, ``d`` profile JSON (stats, tags, fences) |
| ``rtp:x:{<user>}`` | hash | erasure marker: ``v`` version, ``f`` offset fences, ``r`` receipt |
| ``rtp:i:<product>`` | hash | catalog item: ``ts``, ``eid`` (event id), ``d`` item JSON |
| ``rtp:erasures`` | stream | erasure receipts (who, when, what was deleted) |
"""

from __future__ import annotations

PREFIX = "rtp:"


def profile(user_id: str) -> str:
    return f"{PREFIX}p:{{{user_id}}}"


def erased(user_id: str) -> str:
    return f"{PREFIX}x:{{{user_id}}}"


def user_keys(user_id: str) -> list[str]:
    """Every key that may hold the user's personal data (erasure deletes them all)."""
    return [profile(user_id)]


def item(product_id: str) -> str:
    return f"{PREFIX}i:{product_id}"


ERASURE_RECEIPTS = f"{PREFIX}erasures"
