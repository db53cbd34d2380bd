"""Each worker's in-memory copy of the catalog, kept in step with Redis.

Catalog events are applied by whichever worker owns them, but every worker recommends over
the whole catalog, so the index is a mirror: loaded from ``rtp:catalog:ids`` at start, then
tailed from the ``rtp:catalog:log`` stream (ids only; the item itself is re-read, so a
repeated or reordered log entry can never install a stale item). Popularity, everyone's and
each segment's, is re-read from the per-partition hashes every few polls. Item vectors go
through the embedding cache: the worker that applied the catalog event already encoded the
title, so a mirror normally finds the vector in Redis and encodes nothing.

Mutations and searches take :attr:`lock`, so a search running in a thread never sees an item
half-written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from profiles.embedding.embedder import Embedder
from profiles.embedding.text import item_text
from profiles.recommend.index import Item, ItemIndex
from profiles.recommend.popularity import merge_partitions, split_fields
from profiles.redis.catalog import RedisCatalog
from profiles.tags.event_tags import TextTagger, item_tags

log = logging.getLogger(__name__)

#: Items read and encoded per step while loading (bounded memory, visible progress).
LOAD_CHUNK = 5000


def to_item(entry: dict[str, Any], vector: Any, tagger: TextTagger) -> Item:
    """A stored catalog entry as the index holds it (tags: the item's title and category)."""
    title, category = str(entry["title"]), tuple(entry["category"])
    return Item(
        product_id=str(entry["product_id"]),
        vector=vector,
        tags=frozenset(tag for tag, _ in item_tags(tagger, title, category)),
        category=category,
        price=float(entry.get("price", 0.0)),
        discontinued=bool(entry.get("discontinued", False)),
    )


class ItemMirror:
    """An :class:`ItemIndex` following the catalog and popularity stored in Redis."""

    def __init__(
        self,
        index: ItemIndex,
        catalog: RedisCatalog,
        embedder: Embedder,
        tagger: TextTagger,
        partitions: int,
        popularity_every: int = 10,
    ) -> None:
        self.index = index
        self.catalog = catalog
        self.embedder = embedder
        self.tagger = tagger
        self.partitions = partitions
        self.popularity_every = popularity_every
        self.lock = asyncio.Lock()
        self.position = "0-0"
        self.polls = 0
        self.loaded = False
        self.updates = 0  # items upserted or removed since start

    async def load(self) -> int:
        """Read the whole catalog (at start, or after falling behind the trimmed log)."""
        started = time.perf_counter()
        position = await self.catalog.log_end()
        ids = await self.catalog.all_ids()
        for start in range(0, len(ids), LOAD_CHUNK):
            await self._apply(ids[start : start + LOAD_CHUNK])
            if len(ids) > LOAD_CHUNK:
                log.info(
                    "item index: %d / %d items loaded", min(start + LOAD_CHUNK, len(ids)), len(ids)
                )
        self.position = position
        await self.refresh_popularity()
        self.loaded = True
        log.info(
            "item index: %d items loaded in %.1f s", len(self.index), time.perf_counter() - started
        )
        return len(ids)

    async def poll(self) -> int:
        """Apply catalog changes since the last poll; re-read popularity every few polls."""
        self.polls += 1
        changed = 0
        while True:
            ids, position, gap = await self.catalog.changes(self.position)
            if gap:
                log.warning("item index fell behind the catalog log; reloading the catalog")
                await self.load()
                return len(self.index)
            if not ids:
                break
            await self._apply(ids)
            self.position = position
            changed += len(ids)
        if self.polls % self.popularity_every == 0:
            await self.refresh_popularity()
        return changed

    async def refresh_popularity(self) -> None:
        parts = await self.catalog.popularity(self.partitions)
        counts, anchor, latest = merge_partitions(parts, self.index.popularity_half_life_ms)
        everyone, segments = split_fields(counts)
        async with self.lock:
            self.index.load_popularity(everyone, anchor, latest)
            self.index.load_segment_popularity(segments)

    async def _apply(self, product_ids: Sequence[str]) -> None:
        entries = await self.catalog.items(product_ids)
        live = {pid: e for pid, e in entries.items() if not e.get("discontinued")}
        texts = {pid: item_text(e["title"], e["category"]) for pid, e in live.items()}
        vectors = await self.embedder.vectors(list(texts.values()))
        async with self.lock:
            for pid, entry in entries.items():
                if pid in live:
                    self.index.upsert(to_item(entry, vectors[texts[pid]], self.tagger))
                else:
                    self.index.remove(pid)
                self.updates += 1
