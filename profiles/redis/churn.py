"""The churn feature's Redis: the due and customer indexes, swept states, the fitted model.

The batch path writes the indexes through the profile store's commit (index operations of
``profiles/churn/feature.py``); the sweep and the refit (``profiles/churn/sweeper.py``) read
and write here. Every call touches one key, so the same code runs on Redis Cluster.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from profiles.churn.bgnbd import BGNBDParams
from profiles.churn.calibration import Calibrator
from profiles.core.profile import Profile
from profiles.redis import due, keys

# KEYS: profile. ARGV: version the churn state was computed from, churn JSON.
_WRITE_CHURN = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'c', ARGV[2])
return 1
"""
_WRITE_CHURN_SHA = hashlib.sha1(_WRITE_CHURN.encode()).hexdigest()

# KEYS: profile. ARGV: version the snapshots were taken at, snapshots JSON. An erased (or
# changed) profile is left alone: the snapshots are never written into a deleted hash.
_WRITE_PAIRS = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'cp', ARGV[2])
return 1
"""
_WRITE_PAIRS_SHA = hashlib.sha1(_WRITE_PAIRS.encode()).hexdigest()
#: The profile hash field of the calibrator's snapshots (profiles/churn/outcomes.py): in the
#: user's own hash, so an erasure deletes it with the profile. No feature codec claims it.
PAIRS_FIELD = "cp"


class RedisChurnStore:
    """Churn state beside the profiles (``rtp:churn:*``)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def load_scripts(self) -> None:
        await self.client.script_load(_WRITE_CHURN)
        await self.client.script_load(_WRITE_PAIRS)

    async def load_pairs(self, user_ids: Sequence[str]) -> dict[str, list[Any]]:
        """Each user's calibration snapshots (unreadable ones read as none)."""
        pipe = self.client.pipeline(transaction=False)
        for uid in user_ids:
            pipe.hget(keys.profile(uid), PAIRS_FIELD)
        out: dict[str, list[Any]] = {}
        for uid, raw in zip(user_ids, await pipe.execute(), strict=True):
            try:
                value = [] if raw is None else orjson.loads(raw)
            except orjson.JSONDecodeError:
                value = []
            out[uid] = value if isinstance(value, list) else []
        return out

    async def save_pairs(self, updates: Sequence[tuple[Profile, list[Any]]]) -> None:
        """Store snapshots of the profiles' versions they were taken at (others are skipped)."""
        if not updates:
            return
        pipe = self.client.pipeline(transaction=False)
        for profile, entries in updates:
            pipe.evalsha(
                _WRITE_PAIRS_SHA,
                1,
                keys.profile(profile.user_id),
                profile.version,
                orjson.dumps(entries),
            )
        replies = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, NoScriptError) for r in replies):
            await self.load_scripts()
            await self.save_pairs(updates)

    async def due(self, partition: int, until_ms: int, limit: int = 1000) -> list[str]:
        """Users of ``partition`` whose churn level may have changed by ``until_ms``."""
        return await due.due(self.client, keys.churn_due(partition), until_ms, limit)

    async def forget_due(self, partition: int, user_ids: Sequence[str]) -> None:
        """Drop users (erased ones) from the churn due index of ``partition``."""
        await self.client.zrem(keys.churn_due(partition), *user_ids)

    async def save_churn(self, updates: Sequence[tuple[Profile, int]]) -> set[str]:
        """Store swept churn states (if the profile did not change meanwhile) and their next
        checks, in one pipeline; returns the users skipped because their version moved."""
        pipe = self.client.pipeline(transaction=False)
        for profile, _ in updates:
            pipe.evalsha(
                _WRITE_CHURN_SHA,
                1,
                keys.profile(profile.user_id),
                profile.version,
                orjson.dumps(profile.churn),
            )
        for profile, partition in updates:
            next_ms = (profile.churn or {}).get("next_check_ms")
            if next_ms is None:
                pipe.zrem(keys.churn_due(partition), profile.user_id)
            else:
                pipe.zadd(keys.churn_due(partition), {profile.user_id: next_ms})
        replies = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, NoScriptError) for r in replies):
            await self.load_scripts()
            return await self.save_churn(updates)
        return {p.user_id for (p, _), r in zip(updates, replies, strict=False) if r == 0}

    async def sample_customers(self, partitions: int, per_partition: int) -> list[str]:
        """Up to ``per_partition`` customers of each partition, chosen by a hash of their id:
        the same customers at every fit (so refits on the same data agree), all of them in
        partitions with fewer."""
        chosen: list[str] = []
        for partition in range(partitions):
            members = [
                u.decode() async for u in self.client.sscan_iter(keys.churn_customers(partition))
            ]
            if len(members) > per_partition:
                members = heapq.nsmallest(per_partition, members, key=_sample_hash)
            chosen += members
        return sorted(set(chosen))

    async def requeue_customers(self, partitions: Sequence[int], chunk: int = 5000) -> None:
        """Put every customer of ``partitions`` on the churn due index now (after a new fit).

        ``ZADD ... LT`` only lowers: users already due keep their time, and no cross-key
        command is needed (the two keys may live on different cluster slots).
        """
        for partition in partitions:
            await due.queue_all(
                self.client, keys.churn_customers(partition), keys.churn_due(partition), chunk
            )

    async def load_model(self) -> tuple[BGNBDParams, Calibrator | None] | None:
        """The population model the last refit stored, if any."""
        raw = await self.client.get(keys.CHURN_PARAMS)
        if raw is None:
            return None
        state = orjson.loads(raw)
        params = BGNBDParams(state["r"], state["alpha"], state["a"], state["b"], state["variant"])
        try:  # a calibrator of an older feature set is dropped until the next fit
            cal = (
                None
                if state.get("calibrator") is None
                else Calibrator.from_dict(state["calibrator"])
            )
        except (KeyError, TypeError, ValueError):
            cal = None
        return params, cal

    async def save_model(
        self,
        params: BGNBDParams,
        as_of: int,
        customers: int,
        calibrator: Calibrator | None = None,
    ) -> None:
        state: dict[str, Any] = {
            "calibrator": None if calibrator is None else calibrator.to_dict(),
            "r": params.r,
            "alpha": params.alpha,
            "a": params.a,
            "b": params.b,
            "variant": params.variant,
            "as_of": as_of,
            "customers": customers,
        }
        await self.client.set(keys.CHURN_PARAMS, orjson.dumps(state))

    async def fit_lock(self, ttl_s: int) -> bool:
        """True for the one worker that refits in this interval."""
        return bool(await self.client.set(keys.CHURN_FIT_LOCK, b"1", nx=True, ex=ttl_s))


def _sample_hash(user_id: str) -> bytes:
    return hashlib.blake2b(user_id.encode(), digest_size=8).digest()
