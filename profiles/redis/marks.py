"""Input marks: per input partition, the fence epoch and the last offset routed.

Profiles fence on input offsets (``<topic>:<partition>`` -> highest offset applied). When an
input topic is deleted and created again (a broker without persistent storage restarted, an
operator re-creating it), offsets start again at 0 and every new event would sit below the old
fences: skipped as ``fenced``, silently, for ever. The mark of each input partition remembers
the highest offset routed (``h``) and a fingerprint of the message at that offset (``fp``), so
the ingest stage can tell a redelivery of the same log (after a crash, a rebalance, an offset
reset for a replay) from a new log, and in the latter case start a new *fence epoch* (``e``):
records of epoch ``n > 0`` are fenced under ``<topic>#<n>:<partition>`` (``#`` cannot occur in
a Kafka topic name), which no profile has seen yet (:mod:`stream.worker.epochs`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from profiles.redis import keys

# KEYS: mark. ARGV: epoch, offset, fingerprint. Raise the mark within the same epoch only (a
# worker still routing the old epoch cannot move the new one); returns the mark's epoch.
_ADVANCE = """
local e = redis.call('HGET', KEYS[1], 'e') or '0'
if e ~= ARGV[1] then return tonumber(e) end
local h = tonumber(redis.call('HGET', KEYS[1], 'h') or '-1')
if tonumber(ARGV[2]) > h then
  redis.call('HSET', KEYS[1], 'e', ARGV[1], 'h', ARGV[2], 'fp', ARGV[3])
end
return tonumber(e)
"""

# KEYS: mark. ARGV: the epoch the caller saw. Compare-and-set: one new epoch per new log even
# if two workers notice it; returns the epoch now in force.
_NEW_EPOCH = """
local e = tonumber(redis.call('HGET', KEYS[1], 'e') or '0')
if e ~= tonumber(ARGV[1]) then return e end
redis.call('HSET', KEYS[1], 'e', e + 1, 'h', -1, 'fp', '')
return e + 1
"""


@dataclass(frozen=True)
class Mark:
    epoch: int = 0
    high: int = -1  # highest offset routed in this epoch (-1: none yet)
    fingerprint: str = ""


def fingerprint(key: bytes | None, value: bytes | None) -> str:
    """What identifies a message at an offset: its key and value (not the timestamp: the very
    same events produced again into a re-created topic are the same events)."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(b"k" if key is None else b"K" + len(key).to_bytes(4, "big") + key)
    digest.update(b"v" if value is None else b"V" + value)
    return digest.hexdigest()


class MarkStore:
    """The marks in Redis: one hash per input partition. The scripts are loaded once and called
    by hash (the worker's ACL user may not send EVAL), loaded again after a Redis restart."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._advance = hashlib.sha1(_ADVANCE.encode()).hexdigest()
        self._new_epoch = hashlib.sha1(_NEW_EPOCH.encode()).hexdigest()

    async def load_scripts(self) -> None:
        for source in (_ADVANCE, _NEW_EPOCH):
            await self.client.script_load(source)

    async def get(self, topic: str, partition: int) -> Mark:
        raw = await self.client.hgetall(keys.input_mark(topic, partition))
        if not raw:
            return Mark()
        fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}
        fp = fields.get("fp", b"")
        return Mark(
            int(fields.get("e", 0)),
            int(fields.get("h", -1)),
            fp.decode() if isinstance(fp, bytes) else str(fp),
        )

    async def advance(self, marks: Mapping[tuple[str, int], tuple[int, int, str]]) -> None:
        """(topic, partition) -> (epoch, offset, fingerprint), in one round trip."""
        if not marks:
            return
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            for (topic, partition), (epoch, offset, fp) in marks.items():
                key = keys.input_mark(topic, partition)
                pipe.evalsha(self._advance, 1, key, epoch, offset, fp)
            try:
                await pipe.execute()
                return
            except NoScriptError:  # Redis restarted without its scripts; raising is idempotent
                if attempt == 2:
                    raise
                await self.load_scripts()

    async def new_epoch(self, topic: str, partition: int, seen: int) -> int:
        key = keys.input_mark(topic, partition)
        try:
            result = await self.client.evalsha(self._new_epoch, 1, key, seen)
        except NoScriptError:  # the script did not run: safe to load and call again
            await self.load_scripts()
            result = await self.client.evalsha(self._new_epoch, 1, key, seen)
        return int(result)
