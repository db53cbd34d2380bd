"""Logical names of the indexes features keep beside the profiles.

Features name an index; the store maps the name to its key (the Redis store adds
``rtp:``, ``profiles/redis/keys.py``), so the pure feature code never spells a Redis key.

>>> segment_members(3), churn_due(0)
('seg:members:3', 'churn:due:0')
"""

from __future__ import annotations


def segment_members(segment: int) -> str:
    """The users currently in ``segment`` (a set)."""
    return f"seg:members:{segment}"


def churn_due(partition: int) -> str:
    """Users of an owner partition by the time their churn level may change (sorted set)."""
    return f"churn:due:{partition}"


def churn_customers(partition: int) -> str:
    """Users of an owner partition with a purchase: the BG/NBD population (a set)."""
    return f"churn:customers:{partition}"


def value_due(partition: int) -> str:
    """Users of an owner partition by the time their value tier may change (sorted set)."""
    return f"value:due:{partition}"


def audience_members(name: str) -> str:
    """The users currently in audience ``name`` (a set; the braces keep its export
    snapshots in its Redis Cluster slot).

    >>> audience_members("vip")
    'aud:{vip}:members'
    """
    return f"aud:{{{name}}}:members"


def audience_users(partition: int) -> str:
    """Every user of an owner partition the audiences decided for: whom a new definitions
    version re-evaluates (a set)."""
    return f"aud:users:{partition}"


def audience_due(partition: int) -> str:
    """Users of an owner partition by the time an audience membership may change with time
    alone (sorted set)."""
    return f"aud:due:{partition}"


#: The indexes kept per owner partition, and their Redis type: growing the owner partitions
#: (``stream partitions grow``) moves each member to the index of its new owner partition.
#: A feature that adds one adds it here.
PER_PARTITION = (
    (churn_customers, "set"),
    (churn_due, "zset"),
    (value_due, "zset"),
    (audience_users, "set"),
    (audience_due, "zset"),
)
