"""Redis implementation of :class:`profiles.pipeline.store.ProfileStore`.

Every write is a Lua script that checks the version the change was computed
from and writes the new state in one atomic step, so the offset fences inside
the profile are always stored with the state they protect. A batch is one
pipeline: one network round trip for any number of users. One script call per
user keeps every call inside one hash slot, so the same code runs on Redis
Cluster (the cluster client splits the pipeline per node and runs the parts at once).

With ``wait_replicas`` > 0 each commit pipeline ends with ``WAIT`` on every master, on
the connection that carried the writes, so a commit counts as done only once that many
replicas hold it: Redis replication is asynchronous, and a master killed before its replica
caught up would otherwise take acknowledged writes with it when the replica is promoted.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from profiles.core.privacy import KeyedHash, stored_receipt
from profiles.core.profile import Profile
from profiles.pipeline.builtin import CODECS
from profiles.pipeline.feature import (
    Fields,
    ScoreRemove,
    ScoreSet,
    SetAdd,
    SetRemove,
    decode_all,
    stored_fields,
)
from profiles.pipeline.store import Commit, CommitResult
from profiles.redis import keys
from profiles.redis.catalog import POPULARITY_SCRIPT, queue_writes
from profiles.redis.client import RedisOutage, RedisTLS, async_client
from profiles.redis.slots import tag_for_slot
from profiles.redis.together import TOGETHER_SCRIPT, queue_pairs

# KEYS: profile, erasure marker. ARGV: base version, new version, then field/value pairs.
_WRITE_PROFILE = """
local cur = redis.call('HGET', KEYS[1], 'v')
if not cur then cur = redis.call('HGET', KEYS[2], 'v') or '0' end
if cur ~= ARGV[1] then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'v', ARGV[2])
return 1
"""

# KEYS: profile, erasure marker, other keys of the user. ARGV: base, new, fences.
# The marker keeps only the version and the fences: no user id, no receipt.
_ERASE_USER = """
local cur = redis.call('HGET', KEYS[1], 'v')
if not cur then cur = redis.call('HGET', KEYS[2], 'v') or '0' end
if cur ~= ARGV[1] then return -1 end
local deleted = 0
for i = 3, #KEYS do deleted = deleted + redis.call('DEL', KEYS[i]) end
deleted = deleted + redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'v', ARGV[2], 'f', ARGV[3])
return deleted
"""

# KEYS: item. ARGV: ts, event id, item JSON. Later event time wins; ties by event id.
_UPSERT_ITEM = """
local cur = redis.call('HMGET', KEYS[1], 'ts', 'eid', 'seen')
if cur[1] and cur[3] ~= '1' then
  local ts, new = tonumber(cur[1]), tonumber(ARGV[1])
  if new < ts or (new == ts and ARGV[2] < cur[2]) then return 0 end
end
redis.call('HSET', KEYS[1], 'ts', ARGV[1], 'eid', ARGV[2], 'd', ARGV[3], 'seen', '0')
return 1
"""

# KEYS: item. ARGV: ts, event id, item JSON. An item only *seen* in a tracking event (title and
# category, no catalog entry): kept until the first `product` event, which always replaces it.
_INSERT_SEEN = """
if redis.call('HGET', KEYS[1], 'ts') then return 0 end
redis.call('HSET', KEYS[1], 'ts', ARGV[1], 'eid', ARGV[2], 'd', ARGV[3], 'seen', '1')
return 1
"""


class _Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class RedisStore:
    """Profiles and catalog items in Redis; one pipeline per load and per commit.

    ``secret`` names erasure markers and receipts (``RTP_PSEUDONYM_KEY``); without it the
    store uses the deployment's random secret in Redis (``rtp:secret``), created once by the
    first worker and read by every other one, so all workers name markers alike.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        secret: str | None = None,
        codecs: Sequence[Fields] = CODECS,
        wait_replicas: int = 0,
        wait_ms: int = 1000,
    ) -> None:
        self.client = client
        self.wait_replicas = wait_replicas
        self.wait_ms = wait_ms
        self._codecs = tuple(codecs)
        self._fields = ("v", "d", *stored_fields(self._codecs))  # the order loads read them
        self._secret = secret or None
        self._marker_hash: KeyedHash | None = None
        sources = (_WRITE_PROFILE, _ERASE_USER, _UPSERT_ITEM, _INSERT_SEEN)
        self._scripts = [_Script(s) for s in sources]
        self._write, self._erase, self._upsert, self._seen = self._scripts
        self.round_trips = 0

    @classmethod
    def from_url(
        cls,
        url: str,
        secret: str | None = None,
        tls: RedisTLS | None = None,
        *,
        wait_replicas: int = 0,
        wait_ms: int = 1000,
    ) -> RedisStore:
        client = async_client(url, tls, decode_responses=False)
        return cls(client, secret, wait_replicas=wait_replicas, wait_ms=wait_ms)

    async def load_scripts(self) -> None:
        for script in self._scripts:
            await self.client.script_load(script.source)
        await self.client.script_load(POPULARITY_SCRIPT)
        await self.client.script_load(TOGETHER_SCRIPT)
        # At start-up rather than in the first batch: the secret, and the slot tags (~0.1 s).
        await self.marker_hash()
        tag_for_slot(0)

    async def marker_hash(self) -> KeyedHash:
        """The keyed hash that names erasure markers and receipts (read once, then kept)."""
        if self._marker_hash is None:
            secret: str | bytes | None = self._secret
            if secret is None:
                # Two workers starting at once: SET NX lets one win, and both read the winner.
                await self.client.set(keys.SECRET, secrets.token_hex(32), nx=True)
                secret = await self.client.get(keys.SECRET)
                if not secret:
                    raise RuntimeError(f"Redis lost {keys.SECRET} right after setting it")
            self._marker_hash = KeyedHash(secret, "erasure-marker")
        return self._marker_hash

    async def marker_key(self, user_id: str) -> str:
        """The Redis key of the user's erasure marker."""
        return keys.erased(user_id, (await self.marker_hash())(user_id))

    async def load(
        self, user_ids: Collection[str], item_ids: Collection[str]
    ) -> tuple[dict[str, Profile], dict[str, dict[str, Any]]]:
        users, products = list(user_ids), list(item_ids)
        marker = await self.marker_hash()
        pipe = self.client.pipeline(transaction=False)
        for uid in users:
            pipe.hmget(keys.profile(uid), *self._fields)
            pipe.hmget(keys.erased(uid, marker(uid)), "v", "f")
        for pid in products:
            pipe.hget(keys.item(pid), "d")
        replies = await pipe.execute()
        self.round_trips += 1
        profiles = {
            uid: self._profile_from(uid, replies[2 * i], replies[2 * i + 1])
            for i, uid in enumerate(users)
        }
        items = {
            pid: orjson.loads(blob)
            for pid, blob in zip(products, replies[2 * len(users) :], strict=True)
            if blob is not None
        }
        return profiles, items

    async def commit(self, commit: Commit) -> CommitResult:
        calls: list[tuple[_Script, list[str], list[Any], str]] = []
        marker = await self.marker_hash()
        # Erasures first: a user erased and active again in one batch is written after.
        for e in commit.erasures:
            user_keys = [keys.profile(e.user_id), keys.erased(e.user_id, marker(e.user_id))]
            user_keys += [k for k in keys.user_keys(e.user_id) if k not in user_keys]
            argv: list[Any] = [e.expected_version, e.new_version, orjson.dumps(e.fences)]
            calls.append((self._erase, user_keys, argv, e.user_id))
        for p in commit.profiles:
            argv = [p.version - 1, p.version, "d", p.to_bytes()]
            for name, value in commit.fields.get(p.user_id, {}).items():
                argv += [name, value]
            user_keys = [keys.profile(p.user_id), keys.erased(p.user_id, marker(p.user_id))]
            calls.append((self._write, user_keys, argv, p.user_id))
        for item in commit.items:
            argv = [item["ts"], item["event_id"], orjson.dumps(item)]
            calls.append((self._upsert, [keys.item(item["product_id"])], argv, ""))
        for item in commit.seen_items:
            argv = [item["ts"], item["event_id"], orjson.dumps(item)]
            calls.append((self._seen, [keys.item(item["product_id"])], argv, ""))
        receipts = [
            stored_receipt(e.receipt, e.user_id, marker(e.user_id)) for e in commit.erasures
        ]
        replies = await self._run(calls, receipts, commit)
        result = CommitResult()
        for (script, _, _, uid), reply in zip(calls, replies, strict=False):
            if script is self._write and reply == 0:
                result.conflicts.add(uid)
            elif script is self._erase:
                if reply == -1:
                    result.conflicts.add(uid)
                else:
                    result.erased_keys[uid] = int(reply)
        return result

    async def _run(
        self,
        calls: Sequence[tuple[_Script, list[str], list[Any], str]],
        receipts: Sequence[dict[str, Any]],
        commit: Commit | None = None,
    ) -> list[Any]:
        """One pipeline; reload scripts and retry once if Redis lost them (restart)."""
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            for script, script_keys, argv, _ in calls:
                pipe.evalsha(script.sha, len(script_keys), *script_keys, *argv)
            for receipt in receipts:
                pipe.xadd(keys.ERASURE_RECEIPTS, {"r": orjson.dumps(receipt)}, maxlen=100_000)
            _indexes(pipe, commit)
            if commit is not None:
                queue_writes(pipe, [*commit.items, *commit.seen_items], commit.counts)
                queue_pairs(pipe, commit.pairs)
            waits = self._queue_waits(pipe)
            replies = await pipe.execute(raise_on_error=False)
            self.round_trips += 1
            if not any(isinstance(r, NoScriptError) for r in replies):
                break
            if attempt == 2:
                raise RuntimeError("Redis keeps losing the profile scripts")
            # Scripts are idempotent under the version check: replaying the pipeline
            # turns the writes that did land into conflicts, which the caller reloads.
            await self.load_scripts()
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        if waits and min(int(r) for r in replies[-waits:]) < self.wait_replicas:
            # Applied on the master, maybe not on a replica: retried (the scripts' version
            # checks make the replay harmless) until a replica holds it.
            raise RedisOutage(
                f"a commit was not acknowledged by {self.wait_replicas} replica(s) within "
                f"{self.wait_ms} ms (RTP_REDIS_WAIT_REPLICAS)"
            )
        return list(replies[: len(calls)])

    def _queue_waits(self, pipe: Any) -> int:
        """``WAIT`` after the writes, on each master's connection; how many were queued."""
        if self.wait_replicas <= 0:
            return 0
        if isinstance(self.client, aioredis.RedisCluster):
            primaries = self.client.get_primaries()
            for node in primaries:
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_ms, target_nodes=node)
            return len(primaries)
        pipe.execute_command("WAIT", self.wait_replicas, self.wait_ms)
        return 1

    async def get(self, user_id: str) -> Profile | None:
        reply = await self.client.hmget(keys.profile(user_id), *self._fields)
        return self._profile_from(user_id, reply, [None, None]) if reply[1] is not None else None

    def _profile_from(self, user_id: str, current: list[Any], erased: list[Any]) -> Profile:
        version, blob, *stored = current
        if blob is not None:
            profile = Profile.from_bytes(user_id, int(version), blob)
            decode_all(self._codecs, profile, stored)
            return profile
        erased_version, fences = erased
        if erased_version is not None:
            return Profile(user_id, version=int(erased_version), fences=orjson.loads(fences))
        return Profile(user_id)

    async def get_item(self, product_id: str) -> dict[str, Any] | None:
        blob = await self.client.hget(keys.item(product_id), "d")
        return None if blob is None else dict(orjson.loads(blob))

    async def close(self) -> None:
        await self.client.aclose()


def _indexes(pipe: Any, commit: Commit | None) -> None:
    """Index updates that follow the profiles; all idempotent, so a replay is harmless."""
    for op in commit.ops if commit is not None else ():
        match op:
            case SetAdd(index, member):
                pipe.sadd(keys.index(index), member)
            case SetRemove(index, member):
                pipe.srem(keys.index(index), member)
            case ScoreSet(index, member, score):
                pipe.zadd(keys.index(index), {member: score})
            case ScoreRemove(index, member):
                pipe.zrem(keys.index(index), member)
