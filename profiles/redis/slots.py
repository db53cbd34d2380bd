"""Redis Cluster hash slots: the slot of a key, and a short hash tag for every slot.

Redis Cluster puts a key in slot ``CRC16-XMODEM(tag) mod 16384``, where ``tag`` is the text
between the first ``{`` and the next ``}`` (the whole key when there is no non-empty tag). A
Lua script may only touch keys of one slot. The erasure marker of a user must therefore be in
the slot of the user's profile key ``rtp:p:{<user>}`` without naming the user: it is named
``rtp:x:{<t>}:<keyed hash>``, where ``<t>`` is the shortest string whose slot is the profile's
(:func:`tag_for_slot`).

The table of tags is built on first use (~0.1 s, enumerating strings of :data:`ALPHABET` by
length, then in alphabet order) and is the same in every process and every version: changing
:data:`ALPHABET` or the order would rename every erasure marker, so stored markers would no
longer be found. ``tests/unit/test_privacy.py`` pins the table.
"""

from __future__ import annotations

import itertools
import string
from binascii import crc_hqx
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

#: Characters of the tags: never ``{`` or ``}``, so the tag is exactly the string.
ALPHABET = string.digits + string.ascii_lowercase + string.ascii_uppercase
SLOTS = REDIS_CLUSTER_HASH_SLOTS


def slot_of(key: str) -> int:
    """The cluster slot of ``key`` (Redis' rules, hash tags included; UTF-8 as redis-py sends)."""
    return key_slot(key.encode())


def tag_for_slot(slot: int) -> str:
    """The shortest string (first in :data:`ALPHABET` order) whose CRC16 falls in ``slot``."""
    return _tags()[slot]


@cache
def _tags() -> tuple[str, ...]:
    found: list[str | None] = [None] * SLOTS
    missing = SLOTS
    for length in itertools.count(1):
        for chars in itertools.product(ALPHABET, repeat=length):
            tag = "".join(chars)
            # crc_hqx(., 0) is CRC16-XMODEM, the CRC Redis Cluster uses.
            slot = crc_hqx(tag.encode(), 0) % SLOTS
            if found[slot] is None:
                found[slot] = tag
                missing -= 1
                if missing == 0:
                    return tuple(t for t in found if t is not None)
    raise AssertionError("unreachable")  # pragma: no cover
