"""Deterministic assignment of users to arms: a hash of the experiment salt and the user id,
mapped to [0, 1) and cut by the arms' cumulative shares. Pure: every worker, the API and the
report agree without sharing state, and a user keeps their arm across restarts.

>>> arms = parse_arms("treatment:0.9,holdout:0.1")
>>> arms
(('treatment', 0.9), ('holdout', 0.1))
>>> assign("exp1", "u1", arms) == assign("exp1", "u1", arms)
True
>>> parse_arms("a:0.5,b:0.4")
Traceback (most recent call last):
...
ValueError: experiment arm shares must sum to 1, got 0.9 in 'a:0.5,b:0.4'
"""

from __future__ import annotations

import hashlib
import math
import re

Arms = tuple[tuple[str, float], ...]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def parse_arms(text: str) -> Arms:
    """``"name:share,..."`` as ``((name, share), ...)``, checked: names unique and plain,
    shares positive and summing to 1."""
    arms: list[tuple[str, float]] = []
    for part in (p.strip() for p in text.split(",")):
        name, colon, share = part.partition(":")
        name = name.strip()
        if not colon or not _NAME.match(name):
            raise ValueError(f"experiment arm {part!r} is not 'name:share' (name [a-z0-9_])")
        try:
            value = float(share)
        except ValueError:
            raise ValueError(f"experiment arm {name!r} has no numeric share: {share!r}") from None
        if not (0.0 < value <= 1.0) or math.isnan(value):
            raise ValueError(f"experiment arm {name!r} share must be in (0, 1], got {value}")
        if any(name == n for n, _ in arms):
            raise ValueError(f"experiment arm {name!r} is named twice")
        arms.append((name, value))
    total = sum(s for _, s in arms)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"experiment arm shares must sum to 1, got {round(total, 6)} in {text!r}")
    return tuple(arms)


def unit(salt: str, user_id: str) -> float:
    """A uniform number in [0, 1) from the salt and user id (blake2b, 64 bits).

    >>> 0.0 <= unit("s", "u") < 1.0
    True
    """
    digest = hashlib.blake2b(f"{salt}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign(salt: str, user_id: str, arms: Arms) -> str:
    """The arm of ``user_id``: the first whose cumulative share exceeds its unit number."""
    u = unit(salt, user_id)
    at = 0.0
    for name, share in arms:
        at += share
        if u < at:
            return name
    return arms[-1][0]  # rounding of the cumulative sum
