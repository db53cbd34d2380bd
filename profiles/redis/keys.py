"""Redis key layout. All of one user's keys are in the Redis Cluster hash slot of ``{<user>}``.

``<user>`` is the user id as the worker sees it: its pseudonym with ``RTP_PSEUDONYMIZE=true``.

| key | type | holds |
| --- | --- | --- |
| ``rtp:p:{<user>}`` | hash | ``v`` version, ``d`` stats+tags+fences, ``e`` vectors, ``s`` segment |
| | | ``c`` churn, ``r`` / ``rv`` the last recommendation list and its vector |
| | | ``cv`` customer value, ``sn`` review sentiment |
| ``rtp:x:{<t>}:<h>`` | hash | erasure marker: ``v`` version, ``f`` offset fences; ``<h>`` is |
| | | the user's keyed hash, ``<t>`` a short tag in the profile's slot |
| ``rtp:i:<product>`` | hash | catalog item: ``ts``, ``eid`` (event id), ``d`` item JSON |
| ``rtp:erasures`` | stream | erasure receipts (who, when, which request; the user as ``<h>``) |
| ``rtp:secret`` | string | the marker secret when ``RTP_PSEUDONYM_KEY`` is not set |
| ``rtp:seg:{seg}:model`` | hash | the shared segmentation model (one hash tag: one slot) |
| ``rtp:seg:{seg}:standardizer`` | string | its feature standardizer |
| ``rtp:seg:members:<id>`` | set | user ids currently in segment ``<id>`` |
| ``rtp:churn:due:<partition>`` | sorted set | users by the time their churn level may change |
| ``rtp:churn:customers:<partition>`` | set | users with a purchase (the BG/NBD population) |
| ``rtp:churn:params`` | string | the fitted population parameters (JSON) |
| ``rtp:catalog:ids`` | set | every product id ever upserted (an index bootstraps from it) |
| ``rtp:catalog:log`` | stream | product ids in upsert order (indexes tail it; MAXLEN ~1M) |
| ``rtp:pop:{<partition>}`` | hash | item popularity counted by that owner partition's users |
| ``rtp:sent:{<partition>}`` | hash | review sentiment per product (``s:``/``n:``/``x:<product>``) |
| ``rtp:tg:{<item>}`` (``:b``, ``:v``) | hash (sorted sets) | pair-count meta (anchor, fences); |
| | | the item's bought / viewed neighbours (``profiles/redis/together.py``) |
| ``rtp:tgm:{<partition>}`` | hash | item marginals and sessions counted by that owner partition |
| ``rtp:in:<topic>:<partition>`` | hash | input mark: ``e`` fence epoch, ``h`` highest offset |
| | | routed, ``fp`` fingerprint of that message (``profiles/redis/marks.py``) |
| ``rtp:aud:defs`` | hash | audience definitions: ``v`` version, ``d`` JSON, ``sha``, ``at`` |
| ``rtp:aud:{<name>}:members`` | set | users in the audience; ``...:snap:<id>`` export copies, |
| | | ``...:dp`` privacy budget spent per report (one hash tag: one slot) |
| ``rtp:aud:due:<partition>`` | sorted set | users by when a membership may change with time |
| ``rtp:aud:users:<partition>`` | set | users the audiences decided for (a new version requeues) |
"""

from __future__ import annotations

from profiles.core import indexes
from profiles.redis.slots import slot_of, tag_for_slot

PREFIX = "rtp:"


def profile(user_id: str) -> str:
    return f"{PREFIX}p:{{{user_id}}}"


def erased(user_id: str, user_hash: str) -> str:
    """The user's erasure marker: in the slot of :func:`profile` (so one script may touch
    both, on Redis Cluster too) but named by ``user_hash``, the keyed hash of the id, so no
    key of an erased user names the user (``profiles/redis/slots.py``,
    ``profiles/core/privacy.py``)."""
    return f"{PREFIX}x:{{{tag_for_slot(slot_of(profile(user_id)))}}}:{user_hash}"


def legacy_erased(user_id: str) -> str:
    """Where markers were kept before they were named by a keyed hash; erasure deletes it."""
    return f"{PREFIX}x:{{{user_id}}}"


def user_keys(user_id: str) -> list[str]:
    """Every key that may hold the user's personal data (erasure deletes them all in one
    script, so all are in the profile's slot: a legacy marker is not when the id starts
    with ``}``, as ``{}`` is no hash tag; a cluster never held such a marker)."""
    found = [profile(user_id)]
    legacy = legacy_erased(user_id)
    if slot_of(legacy) == slot_of(found[0]):
        found.append(legacy)
    return found


def item(product_id: str) -> str:
    return f"{PREFIX}i:{product_id}"


ERASURE_RECEIPTS = f"{PREFIX}erasures"
SECRET = f"{PREFIX}secret"


def index(name: str) -> str:
    """The key of a feature's index (``profiles/core/indexes.py`` names them)."""
    return f"{PREFIX}{name}"


def segment_members(segment: int) -> str:
    return index(indexes.segment_members(segment))


def churn_due(partition: int) -> str:
    return index(indexes.churn_due(partition))


def churn_customers(partition: int) -> str:
    return index(indexes.churn_customers(partition))


def value_due(partition: int) -> str:
    return index(indexes.value_due(partition))


CHURN_PARAMS = f"{PREFIX}churn:params"
CHURN_FIT_LOCK = f"{PREFIX}churn:fit-lock"
#: The customer-value fits (Gamma-Gamma and RFM cuts), stored by the churn refit beside its own.
VALUE_PARAMS = f"{PREFIX}value:params"


CATALOG_IDS = f"{PREFIX}catalog:ids"
CATALOG_LOG = f"{PREFIX}catalog:log"


def popularity(partition: int) -> str:
    return counter("pop", partition)


def counter(name: str, partition: int) -> str:
    """A shared decayed counter of an owner partition (``pop``: item popularity).

    >>> counter("pop", 3), counter("sent", 0)
    ('rtp:pop:{3}', 'rtp:sent:{0}')
    """
    return f"{PREFIX}{name}:{{{partition}}}"


def together(product_id: str) -> tuple[str, str, str]:
    """An item's pair-count hash and its bought / viewed neighbour sets (one slot).

    An id starting with ``}`` would make ``{}`` the hash tag (none: each key its own slot), so
    such ids get a tag of the id's own slot, in a key space of their own (``tgx``).

    >>> from profiles.redis.slots import slot_of
    >>> len({slot_of(k) for k in together("}odd")}), together("tea")[1]
    (1, 'rtp:tg:{tea}:b')
    """
    base = f"{PREFIX}tg:{{{product_id}}}"
    if product_id.startswith("}"):
        base = f"{PREFIX}tgx:{{{tag_for_slot(slot_of(product_id))}}}:{product_id}"
    return base, f"{base}:b", f"{base}:v"


def together_marginals(partition: int) -> str:
    return f"{PREFIX}tgm:{{{partition}}}"


def input_mark(topic: str, partition: int) -> str:
    return f"{PREFIX}in:{topic}:{partition}"


#: Audience definitions (hash: ``v`` version, ``d`` JSON, ``sha`` digest, ``at`` applied ms).
AUDIENCE_DEFS = f"{PREFIX}aud:defs"


def audience_members(name: str) -> str:
    return index(indexes.audience_members(name))


def audience_due(partition: int) -> str:
    return index(indexes.audience_due(partition))


def audience_users(partition: int) -> str:
    return index(indexes.audience_users(partition))


def audience_requeued(partition: int) -> str:
    """The definitions version whose re-evaluation of the partition's users was queued."""
    return f"{PREFIX}aud:requeued:{partition}"


def audience_snapshot(name: str, snapshot: str) -> str:
    """A frozen copy of the audience's members for one export (expires)."""
    return f"{PREFIX}aud:{{{name}}}:snap:{snapshot}"


def audience_budget(name: str) -> str:
    """Privacy budget spent on the audience's noisy counts, per report (hash)."""
    return f"{PREFIX}aud:{{{name}}}:dp"
