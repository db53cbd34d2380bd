"""The audiences' Redis: versioned definitions, swept states, export snapshots, DP budgets.

The batch path writes member sets and the due index through the profile store's commit
(``profiles/audiences/feature.py``). Every call here touches keys of one slot: an audience's
keys share the hash tag ``{<name>}``, so the script that ``COPY``-s its member set into a
snapshot works on Redis Cluster too.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from profiles.audiences.definitions import Definitions, definitions_from
from profiles.core.profile import Profile
from profiles.pipeline.feature import IndexOp, ScoreRemove, ScoreSet, SetAdd, SetRemove
from profiles.redis import keys

# KEYS: definitions. ARGV: content JSON, digest, now ms. The same content keeps its version.
_APPLY = """
local cur = redis.call('HMGET', KEYS[1], 'v', 'sha')
if cur[2] == ARGV[2] then return {tonumber(cur[1]), 0} end
local v = (tonumber(cur[1]) or 0) + 1
redis.call('HSET', KEYS[1], 'v', v, 'd', ARGV[1], 'sha', ARGV[2], 'at', ARGV[3])
return {v, 1}
"""
# KEYS: profile. ARGV: version the state was computed from, state JSON.
_WRITE_STATE = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'au', ARGV[2])
return 1
"""
# KEYS: budget hash. ARGV: report, epsilon, budget. Spend only what is left.
_SPEND = """
local spent = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if spent + tonumber(ARGV[2]) > tonumber(ARGV[3]) + 1e-12 then return {0, tostring(spent)} end
return {1, redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1], ARGV[2])}
"""
# KEYS: members, snapshot, empty marker. ARGV: ttl s. One atomic step, one slot (no MULTI:
# cluster clients have no transactions).
_SNAPSHOT = """
redis.call('COPY', KEYS[1], KEYS[2])
local size = redis.call('SCARD', KEYS[2])
if size == 0 then
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[1])
else
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return size
"""
_WRITE_STATE_SHA = hashlib.sha1(_WRITE_STATE.encode()).hexdigest()
_SCRIPTS = (_APPLY, _WRITE_STATE, _SPEND, _SNAPSHOT)


class SnapshotGone(LookupError):
    """The snapshot expired (or never existed): start the export again."""


class RedisAudienceStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    # -- definitions ---------------------------------------------------------------------

    async def apply(self, defs: Definitions) -> tuple[int, bool]:
        """Store ``defs`` as the next version; (version, False) when the content is stored
        already."""
        body = orjson.dumps(defs.to_json()).decode()
        now = int(time.time() * 1000)
        version, created = await self._call(_APPLY, [keys.AUDIENCE_DEFS], body, defs.digest, now)
        return int(version), bool(created)

    async def version(self) -> int:
        raw = await self.client.hget(keys.AUDIENCE_DEFS, "v")
        return 0 if raw is None else int(raw)

    async def load(self) -> Definitions:
        """The stored definitions (version 0, none, before the first apply)."""
        version, body = await self.client.hmget(keys.AUDIENCE_DEFS, "v", "d")
        if version is None or body is None:
            return Definitions()
        return definitions_from(orjson.loads(body), int(version))

    # -- the sweep ----------------------------------------------------------------------

    async def due(self, partition: int, until_ms: int, limit: int = 1000) -> list[str]:
        found = await self.client.zrangebyscore(
            keys.audience_due(partition), "-inf", until_ms, start=0, num=limit
        )
        return [u.decode() if isinstance(u, bytes) else str(u) for u in found]

    async def forget_due(self, partition: int, user_ids: Sequence[str]) -> None:
        await self.client.zrem(keys.audience_due(partition), *user_ids)

    async def requeue(
        self, owned: Sequence[int], partitions: int, version: int, chunk: int = 5000
    ) -> int:
        """Put every user of the ``owned`` partitions (their population sets, and the churn
        feature's customers: users stored before audiences existed) on the due index now, once
        per definitions ``version`` and partition: a mark per partition says it was done, so a
        restarted or another worker does not do it again. ``ZADD ... LT`` only lowers: users
        due already keep their time."""
        done = [await self.client.get(keys.audience_requeued(p)) for p in owned]  # own slots
        wanted = [p for p, d in zip(owned, done, strict=True) if d is None or int(d) < version]
        found = 0
        for partition in wanted:
            for source in (keys.audience_users(partition), keys.churn_customers(partition)):
                batch: dict[str, int] = {}
                async for member in self.client.sscan_iter(source, count=chunk):
                    batch[member.decode() if isinstance(member, bytes) else str(member)] = 0
                    if len(batch) >= chunk:
                        await self.client.zadd(keys.audience_due(partition), batch, lt=True)
                        found, batch = found + len(batch), {}
                if batch:
                    await self.client.zadd(keys.audience_due(partition), batch, lt=True)
                    found += len(batch)
            await self.client.set(keys.audience_requeued(partition), version)
        return found

    async def save_swept(self, updates: Sequence[tuple[Profile, list[IndexOp]]]) -> set[str]:
        """Store swept states (where the profile did not change meanwhile), then their index
        operations; returns the users skipped because their version moved."""
        pipe = self.client.pipeline(transaction=False)
        for profile, _ in updates:
            state = orjson.dumps(profile.parts.get("audiences"))
            pipe.evalsha(_WRITE_STATE_SHA, 1, keys.profile(profile.user_id), profile.version, state)
        replies = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, NoScriptError) for r in replies):
            await self.load_scripts()
            return await self.save_swept(updates)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        skipped = {p.user_id for (p, _), r in zip(updates, replies, strict=True) if r == 0}
        pipe = self.client.pipeline(transaction=False)
        for profile, ops in updates:
            if profile.user_id not in skipped:
                queue_ops(pipe, ops)
        await pipe.execute()
        return skipped

    async def load_scripts(self) -> None:
        for script in _SCRIPTS:
            await self.client.script_load(script)

    async def _call(self, script: str, script_keys: list[str], *args: str | int) -> Any:
        """By hash, as every script of the worker (its ACL grants no EVAL)."""
        sha = hashlib.sha1(script.encode()).hexdigest()
        try:
            return await self.client.evalsha(sha, len(script_keys), *script_keys, *args)
        except NoScriptError:
            await self.client.script_load(script)
            return await self.client.evalsha(sha, len(script_keys), *script_keys, *args)

    # -- export -------------------------------------------------------------------------

    async def counts(self, names: Sequence[str]) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.scard(keys.audience_members(name))
        return {n: int(c) for n, c in zip(names, await pipe.execute(), strict=True)}

    async def snapshot(self, name: str, ttl_s: int) -> tuple[str, int]:
        """A frozen copy of the audience's members (one ``COPY``: atomic), kept ``ttl_s``
        seconds; returns its id and size. Pages read the copy, so a listing is the audience
        at one instant however long it takes and whatever changes meanwhile."""
        snap = secrets.token_hex(8)
        key = keys.audience_snapshot(name, snap)
        # COPY of an empty set makes no key: a marker remembers the empty snapshot.
        script_keys = [keys.audience_members(name), key, key + ":empty"]
        size = await self._call(_SNAPSHOT, script_keys, ttl_s)
        return snap, int(size)

    async def page(self, name: str, snap: str, cursor: int, count: int) -> tuple[int, list[str]]:
        """One page of a snapshot: (next cursor, 0 at the end; members)."""
        key = keys.audience_snapshot(name, snap)
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(key)
        pipe.exists(key + ":empty")
        there, empty = await pipe.execute()
        if empty:
            return 0, []
        if not there:
            raise SnapshotGone(f"snapshot {snap!r} of {name!r} expired or never existed")
        nxt, members = await self.client.sscan(key, cursor, count=count)
        return int(nxt), sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def spend(
        self, name: str, report: str, epsilon: float, budget: float
    ) -> tuple[bool, float]:
        """Spend ``epsilon`` of the report's privacy budget for ``name``, if that much is
        left; returns (spent now, total spent)."""
        ok, spent = await self._call(
            _SPEND, [keys.audience_budget(name)], report, repr(epsilon), repr(budget)
        )
        return bool(ok), float(spent)


def queue_ops(pipe: aioredis.client.Pipeline, ops: Sequence[IndexOp]) -> None:
    for op in ops:
        match op:
            case SetAdd(index, member):
                pipe.sadd(keys.index(index), member)
            case SetRemove(index, member):
                pipe.srem(keys.index(index), member)
            case ScoreSet(index, member, score):
                pipe.zadd(keys.index(index), {member: score})
            case ScoreRemove(index, member):
                pipe.zrem(keys.index(index), member)
