"""The Redis side of frequently-bought-together: fenced pair counts and their reads.

Keys (``profiles/redis/keys.py``): per item ``rtp:tg:{<item>}`` (hash: ``@a`` anchor, ``@t``
latest, ``@f:<source>`` fences) with its neighbour sets ``rtp:tg:{<item>}:b`` and ``:v``
(sorted sets, anchored counts); per owner partition ``rtp:tgm:{<partition>}`` (hash: marginals
``b:<item>``, ``v:<item>``, transactions ``b``, ``v``, and the same meta fields). One script
call touches one item's three keys, all in the slot of ``{<item>}``, or one partition's hash,
so it runs on Redis Cluster too. Writes ride in the profile store's commit pipeline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from profiles.pipeline.feature import PairsAdd
from profiles.redis import keys
from profiles.together.counts import Pair, PairCounts, decay_to, score_pairs

# KEYS: the counter's hash, then optionally its sets "b" and "v". ARGV: half-life ms, cap, then
# per source: its name, n, and n entries "<offset> <ts> <weight> <field>" (one argument each:
# packing five per contribution cost the worker more than the script). With 3 keys a field
# "b:<y>" / "v:<y>" adds to member y of that set; otherwise fields are hash fields. Mirrors
# profiles.together.counts.FencedPairs.add.
TOGETHER_SCRIPT = """
local h, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local key = KEYS[1]
local sets = #KEYS == 3
local anchor = tonumber(redis.call('HGET', key, '@a') or '')
local latest = tonumber(redis.call('HGET', key, '@t') or '')
local touched = {}
local counted = 0
local i = 3
while i <= #ARGV do
  local src, n = ARGV[i], tonumber(ARGV[i + 1])
  local fence = tonumber(redis.call('HGET', key, '@f:' .. src) or '-1')
  local high = nil
  for j = i + 2, i + 1 + n do
    local o, t, w, name = string.match(ARGV[j], '^(%S+) (%S+) (%S+) (.*)$')
    local off, ts = tonumber(o), tonumber(t)
    if off > fence then
      if anchor == nil then
        anchor = ts
      elseif (ts - anchor) / h > 400 then
        local shrink = 2 ^ (-(ts - anchor) / h)
        local all = redis.call('HGETALL', key)
        for k = 1, #all, 2 do
          if string.sub(all[k], 1, 1) ~= '@' then
            redis.call('HSET', key, all[k], string.format('%.17g', tonumber(all[k + 1]) * shrink))
          end
        end
        if sets then
          for s = 2, 3 do
            local members = redis.call('ZRANGE', KEYS[s], 0, -1, 'WITHSCORES')
            for k = 1, #members, 2 do
              redis.call('ZADD', KEYS[s],
                string.format('%.17g', tonumber(members[k + 1]) * shrink), members[k])
            end
          end
        end
        anchor = ts
      end
      if latest == nil or ts > latest then latest = ts end
      local e = (ts - anchor) / h
      if e < -1074 then e = -1074 end
      local add = string.format('%.17g', tonumber(w) * 2 ^ e)
      local kind, member = string.match(name, '^([bv]):(.*)$')
      if sets and kind then
        local target = KEYS[kind == 'b' and 2 or 3]
        redis.call('ZINCRBY', target, add, member)
        touched[target] = true
      else
        redis.call('HINCRBYFLOAT', key, name, add)
      end
      if high == nil or off > high then high = off end
      counted = counted + 1
    end
  end
  if high ~= nil then redis.call('HSET', key, '@f:' .. src, string.format('%d', high)) end
  i = i + 2 + n
end
for target in pairs(touched) do
  local n = redis.call('ZCARD', target)
  if n > cap then redis.call('ZREMRANGEBYRANK', target, 0, n - cap - 1) end
end
if anchor ~= nil then
  redis.call('HSET', key, '@a', string.format('%d', anchor), '@t', string.format('%d', latest))
end
return counted
"""
TOGETHER_SHA = hashlib.sha1(TOGETHER_SCRIPT.encode()).hexdigest()


def queue_pairs(pipe: Any, pairs: Sequence[PairsAdd]) -> None:
    """Add one commit's pair counts to ``pipe``: one script call per item and per partition."""
    for add in pairs:
        if not add.entries:
            continue
        by_source: dict[str, list[str]] = {}
        for source, offset, ts, name, weight in add.entries:
            by_source.setdefault(source, []).append(f"{offset} {ts} {float(weight)!r} {name}")
        argv: list[Any] = [add.half_life_ms, add.cap]
        for source, packed in by_source.items():
            argv += [source, len(packed), *packed]
        if add.item is None:
            pipe.evalsha(TOGETHER_SHA, 1, keys.together_marginals(add.partition), *argv)
        else:
            pipe.evalsha(TOGETHER_SHA, 3, *keys.together(add.item), *argv)


@dataclass
class Neighbours:
    """One item's stored neighbours of a kind: anchored counts and their anchor."""

    anchor: int | None
    counts: dict[str, float]


class RedisTogether:
    """Reads of the pair counts: marginals of every partition, neighbours of some items."""

    def __init__(self, client: aioredis.Redis, partitions: int, half_life_ms: int) -> None:
        self.client = client
        self.partitions = partitions
        self.half_life_ms = half_life_ms

    async def marginals(self, kind: str) -> tuple[PairCounts, int | None]:
        """Every partition's marginals of ``kind`` merged, decayed as of the latest event time
        any partition counted: (counts, that time; None when nothing was counted)."""
        pipe = self.client.pipeline(transaction=False)
        for partition in range(self.partitions):
            pipe.hgetall(keys.together_marginals(partition))
        parts = [_parse(reply) for reply in await pipe.execute()]
        latest = max((t for _, t, _ in parts if t is not None), default=None)
        total = 0.0
        marginals: dict[str, float] = {}
        prefix = f"{kind}:"
        for anchor, _, fields in parts:
            if anchor is None or latest is None:
                continue
            for name, value in fields.items():
                v = decay_to(value, anchor, latest, self.half_life_ms)
                if name == kind:
                    total += v
                elif name.startswith(prefix):
                    pid = name[len(prefix) :]
                    marginals[pid] = marginals.get(pid, 0.0) + v
        return PairCounts(total, marginals), latest

    async def neighbours(
        self, items: Sequence[str], kind: str, limit: int
    ) -> tuple[dict[str, Neighbours], int | None]:
        """The ``limit`` strongest stored neighbours of each item, and the latest event time
        any partition counted (what to decay them to), in one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        for pid in items:
            meta, bought, viewed = keys.together(pid)
            pipe.hget(meta, "@a")
            pipe.zrevrange(bought if kind == "b" else viewed, 0, limit - 1, withscores=True)
        for partition in range(self.partitions):
            pipe.hget(keys.together_marginals(partition), "@t")
        replies = await pipe.execute()
        out = {}
        for i, pid in enumerate(items):
            anchor, members = replies[2 * i], replies[2 * i + 1]
            counts = {_text(m): float(s) for m, s in members}
            out[pid] = Neighbours(None if anchor is None else int(anchor), counts)
        times = [int(t) for t in replies[2 * len(items) :] if t is not None]
        return out, max(times, default=None)

    async def bought(self, items: Sequence[str], limit: int) -> dict[str, dict[str, float]]:
        """Decayed bought-together counts of ``items`` as of the latest counted event time."""
        found, latest = await self.neighbours(items, "b", limit)
        as_of = latest or 0
        return {pid: decayed(n, as_of, self.half_life_ms) for pid, n in found.items()}

    async def pairs(
        self, items: Sequence[str], kind: str, k: int, min_count: float, limit: int = 200
    ) -> dict[str, list[Pair]]:
        """Each item's top ``k`` pairs by lift (support floor ``min_count``), two pipelines."""
        counts, _ = await self.marginals(kind)
        found, latest = await self.neighbours(items, kind, limit)
        as_of = latest or 0
        return {
            pid: score_pairs(pid, decayed(n, as_of, self.half_life_ms), counts, min_count, k)
            for pid, n in found.items()
        }

    async def bought_marginals(self) -> PairCounts:
        counts, _ = await self.marginals("b")
        return counts


def decayed(found: Neighbours, as_of: int, half_life_ms: int) -> dict[str, float]:
    """Neighbour counts as of ``as_of``."""
    return {m: decay_to(v, found.anchor, as_of, half_life_ms) for m, v in found.counts.items()}


def _parse(reply: Mapping[bytes, bytes]) -> tuple[int | None, int | None, dict[str, float]]:
    anchor = latest = None
    fields: dict[str, float] = {}
    for raw, value in reply.items():
        name = _text(raw)
        if name == "@a":
            anchor = int(value)
        elif name == "@t":
            latest = int(value)
        elif not name.startswith("@"):
            fields[name] = float(value)
    return anchor, latest, fields


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
