"""``python -m stream audiences``: apply definitions, list, export members, noisy counts.

Reads and writes Redis directly: no running worker is needed (workers pick up applied
definitions at their next audience sweep, within ``RTP_AUDIENCE_SWEEP_S``).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import numpy as np
import orjson

from profiles.audiences.definitions import definitions_from_bytes
from profiles.audiences.export import dp_count, known, summary
from profiles.redis.audiences import RedisAudienceStore
from profiles.redis.client import async_client
from stream.settings import Settings

FORMATS = ("csv", "jsonl")


def open_store(settings: Settings) -> RedisAudienceStore:
    url = settings.redis.url.get_secret_value()
    return RedisAudienceStore(async_client(url, settings.redis.tls, decode_responses=False))


async def apply(settings: Settings, path: Path) -> str:
    """Check the file whole, then store it as the next version (same content: same version)."""
    defs = definitions_from_bytes(path.read_bytes())  # RuleError says what and where
    store = open_store(settings)
    try:
        version, created = await store.apply(defs)
    finally:
        await store.client.aclose()
    names = ", ".join(a.name for a in defs.audiences) or "none"
    state = "applied as" if created else "unchanged: still"
    return f"{len(defs.audiences)} audiences ({names}) {state} version {version}"


async def listing(settings: Settings) -> bytes:
    store = open_store(settings)
    try:
        return orjson.dumps(await summary(store), option=orjson.OPT_INDENT_2)
    finally:
        await store.client.aclose()


async def members(settings: Settings, name: str, page: int) -> AsyncIterator[str]:
    """Every member of one snapshot of ``name``, page after page, each once (``SSCAN`` may
    return an element twice while Redis rehashes the set)."""
    store = open_store(settings)
    seen: set[str] = set()
    try:
        await known(store, name)
        snap, _ = await store.snapshot(name, settings.audiences.snapshot_ttl_s)
        cursor = 0
        while True:
            cursor, found = await store.page(name, snap, cursor, page)
            for member in found:
                if member not in seen:
                    seen.add(member)
                    yield member
            if cursor == 0:
                break
    finally:
        await store.client.aclose()


async def export(settings: Settings, name: str, fmt: str, out: IO[str], page: int) -> int:
    """Write the members as CSV (header ``user_id``) or JSON lines; returns how many."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use {' or '.join(FORMATS)}")
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(["user_id"])
    n = 0
    async for member in members(settings, name, page):
        if writer is not None:
            writer.writerow([member])
        else:
            out.write(orjson.dumps({"user_id": member, "audience": name}).decode() + "\n")
        n += 1
    return n


async def count(
    settings: Settings, name: str, epsilon: float | None, report: str, seed: int | None
) -> bytes:
    """The exact size, or with ``epsilon`` a Laplace-noised one paid from the budget."""
    store = open_store(settings)
    try:
        if epsilon is None:
            await known(store, name)
            size = (await store.counts([name]))[name]
            return orjson.dumps({"audience": name, "count": size, "exact": True})
        rng = np.random.default_rng(seed)
        noisy = await dp_count(store, name, epsilon, report, settings.audiences.dp_budget, rng)
        return orjson.dumps(noisy)
    finally:
        await store.client.aclose()


def text_out(path: str | None) -> IO[str]:
    return sys.stdout if path in (None, "-") else open(path, "w", encoding="utf-8")
