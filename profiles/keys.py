"""Redis key layout. All of one user's keys share the Redis Cluster hash slot ``{user_id}``.

| key | type | holds |
| --- | --- | --- |
| ``rtp:p:{<user>}`` | hash | ``v`` version, ``d`` stats+tags+fences, ``e`` vectors, ``s`` segment |
| ``rtp:x:{<user>}`` | hash | erasure marker: ``v`` version, ``f`` offset fences, ``r`` receipt |
| ``rtp:i:<product>`` | hash | catalog item: ``ts``, ``eid`` (event id), ``d`` item JSON |
| ``rtp:erasures`` | stream | erasure receipts (who, when, what was deleted) |
| ``rtp:seg:model`` / ``rtp:seg:standardizer`` | hash / string | the shared segmentation model |
| ``rtp:seg:members:<id>`` | set | user ids currently in segment ``<id>`` |
| ``rtp:churn:due:<partition>`` | sorted set | users by the time their churn level may change |
| ``rtp:churn:customers:<partition>`` | set | users with a purchase (the BG/NBD population) |
| ``rtp:churn:params`` | string | the fitted population parameters (JSON) |
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


def segment_members(segment: int) -> str:
    return f"{PREFIX}seg:members:{segment}"


def churn_due(partition: int) -> str:
    return f"{PREFIX}churn:due:{partition}"


def churn_customers(partition: int) -> str:
    return f"{PREFIX}churn:customers:{partition}"


CHURN_PARAMS = f"{PREFIX}churn:params"
CHURN_FIT_LOCK = f"{PREFIX}churn:fit-lock"
