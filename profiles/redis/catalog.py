"""The Redis side of recommendations: catalog change log, item reads, shared popularity.

Writes happen inside the profile store's commit pipeline (:func:`queue_writes`), so they cost
no extra round trip; reads serve each worker's in-memory index (:class:`RedisCatalog`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from profiles.pipeline.feature import CountsAdd
from profiles.recommend.popularity import PartitionCounts
from profiles.redis import keys

#: Catalog change-log length kept (approximate trim): a worker further behind bootstraps again.
LOG_MAXLEN = 1_000_000
_META = "@"  # meta fields start with "@"; counts are "p:<product>" or "s<segment>:<product>"

# KEYS: the partition's popularity hash. ARGV: half-life ms (0: no decay, plain sums, the
# anchor set once and never rebased), then (source, offset, ts, field, weight) per
# contribution. Mirrors profiles.recommend.popularity.FencedCounts.add.
POPULARITY_SCRIPT = """
local h = tonumber(ARGV[1])
local key = KEYS[1]
local anchor = tonumber(redis.call('HGET', key, '@a') or '')
local latest = tonumber(redis.call('HGET', key, '@t') or '')
local before, after = {}, {}
local counted = 0
for i = 2, #ARGV, 5 do
  local src, off, ts = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if before[src] == nil then
    before[src] = tonumber(redis.call('HGET', key, '@f:' .. src) or '-1')
  end
  if off > before[src] then
    if anchor == nil then
      anchor = ts
    elseif h > 0 and (ts - anchor) / h > 400 then
      local shrink = 2 ^ (-(ts - anchor) / h)
      local all = redis.call('HGETALL', key)
      for j = 1, #all, 2 do
        if string.sub(all[j], 1, 1) ~= '@' then
          redis.call('HSET', key, all[j], string.format('%.17g', tonumber(all[j + 1]) * shrink))
        end
      end
      anchor = ts
    end
    if latest == nil or ts > latest then latest = ts end
    local w = tonumber(ARGV[i + 4])
    if h > 0 then
      local e = (ts - anchor) / h
      if e < -1074 then e = -1074 end
      w = w * 2 ^ e
    end
    local add = string.format('%.17g', w)
    redis.call('HINCRBYFLOAT', key, ARGV[i + 3], add)
    if after[src] == nil or off > after[src] then after[src] = off end
    counted = counted + 1
  end
end
for src, off in pairs(after) do redis.call('HSET', key, '@f:' .. src, string.format('%d', off)) end
if anchor ~= nil then
  redis.call('HSET', key, '@a', string.format('%d', anchor), '@t', string.format('%d', latest))
end
return counted
"""
POPULARITY_SHA = hashlib.sha1(POPULARITY_SCRIPT.encode()).hexdigest()


def queue_writes(
    pipe: Any,
    items: Sequence[Mapping[str, Any]],
    counts: Sequence[CountsAdd],
) -> None:
    """Add the catalog log entries and popularity counts of one commit to ``pipe``.

    Both are idempotent: a repeated log entry only makes indexes re-read an item, and the
    popularity script skips contributions at or below its fences.
    """
    for item in items:
        pid = item["product_id"]
        pipe.sadd(keys.CATALOG_IDS, pid)
        pipe.xadd(keys.CATALOG_LOG, {"p": pid}, maxlen=LOG_MAXLEN, approximate=True)
    for add in sorted(counts, key=lambda c: c.partition):
        if not add.entries:
            continue
        argv: list[Any] = [add.half_life_ms]
        for source, offset, ts, name, weight in add.entries:
            argv += [source, offset, ts, name, repr(float(weight))]
        pipe.evalsha(POPULARITY_SHA, 1, keys.counter(add.counter, add.partition), *argv)


class RedisCatalog:
    """Reads for an in-memory item index: all items, their changes, the shared popularity."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def log_end(self) -> str:
        """Id of the newest change-log entry ("0-0" when empty): tail from here after a load."""
        last = await self.client.xrevrange(keys.CATALOG_LOG, count=1) or []
        newest = last[0][0] if last else None
        return "0-0" if newest is None else _text(newest)

    async def all_ids(self, chunk: int = 5000) -> list[str]:
        ids: list[str] = []
        cursor = 0
        while True:
            cursor, found = await self.client.sscan(keys.CATALOG_IDS, cursor, count=chunk)
            ids.extend(_text(x) for x in found)
            if cursor == 0:
                return sorted(set(ids))

    async def items(self, product_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored catalog entries of ``product_ids`` (missing ones left out), one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        for pid in product_ids:
            pipe.hget(keys.item(pid), "d")
        blobs = await pipe.execute()
        return {
            pid: dict(orjson.loads(blob))
            for pid, blob in zip(product_ids, blobs, strict=True)
            if blob is not None
        }

    async def changes(self, after: str, count: int = 10_000) -> tuple[list[str], str, bool]:
        """Product ids changed after log id ``after``: (ids, new position, gap).

        ``gap`` is true when entries after ``after`` were trimmed away before we read them:
        the caller must reload the whole catalog.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.xrange(keys.CATALOG_LOG, min=f"({after}", max="+", count=count)
        pipe.xrange(keys.CATALOG_LOG, min="-", max="+", count=1)
        entries, first = await pipe.execute()
        gap = bool(first) and after != "0-0" and _id(_text(first[0][0])) > _id(after)
        if not entries:
            return [], after, gap
        ids = list(dict.fromkeys(_text(fields[b"p"]) for _, fields in entries))
        return ids, _text(entries[-1][0]), gap

    async def popularity(self, partitions: int) -> list[PartitionCounts]:
        pipe = self.client.pipeline(transaction=False)
        for partition in range(partitions):
            pipe.hgetall(keys.popularity(partition))
        return [_counts(reply) for reply in await pipe.execute()]


def _counts(reply: Mapping[bytes, bytes]) -> PartitionCounts:
    out = PartitionCounts()
    for raw_field, raw_value in reply.items():
        name = _text(raw_field)
        if not name.startswith(_META):
            out.counts[name] = float(raw_value)
        elif name == "@a":
            out.anchor = int(raw_value)
        elif name == "@t":
            out.latest = int(raw_value)
    return out


def _id(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
