"""The audiences' timer: pick up new definitions, and re-decide users whose membership may
change with time alone (recency rules, churn levels the churn sweep moves).

Like the churn sweep (``profiles/churn/sweeper.py``): the due index names, per owner
partition, when each user's memberships may next change; the sweep reads only the users due,
as of its time (wall clock, or the event-time watermark with ``RTP_CHURN_CLOCK=event``).
A new definitions version puts every user of the owned partitions on the due index once, so
each is re-evaluated by the following sweeps (and by their next event anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol

from profiles.audiences.definitions import AudienceBook, Definitions
from profiles.audiences.membership import AudienceChange, decide
from profiles.core.profile import Profile
from profiles.pipeline.feature import IndexOp
from profiles.pipeline.updater import SLICE_S

log = logging.getLogger(__name__)


class AudienceStore(Protocol):
    async def version(self) -> int: ...
    async def load(self) -> Definitions: ...
    async def due(self, partition: int, until_ms: int, limit: int = 1000) -> list[str]: ...
    async def forget_due(self, partition: int, user_ids: Sequence[str]) -> None: ...
    async def requeue(
        self, owned: Sequence[int], partitions: int, version: int, chunk: int = 5000
    ) -> int: ...
    async def save_swept(self, updates: Sequence[tuple[Profile, list[IndexOp]]]) -> set[str]: ...


class ProfileLoader(Protocol):
    async def load(
        self, user_ids: Collection[str], item_ids: Collection[str]
    ) -> tuple[dict[str, Profile], dict[str, dict[str, Any]]]: ...


class AudienceSweeper:
    def __init__(
        self,
        book: AudienceBook,
        store: AudienceStore,
        profiles: ProfileLoader,
        cached: Callable[[str], Profile | None],
        partitions: int,
        lock: asyncio.Lock | None = None,
    ) -> None:
        self.book = book
        self.lock = lock or asyncio.Lock()  # shared with the worker's batch writes
        self.store = store
        self.profiles = profiles
        self.cached = cached
        self.partitions = partitions
        self._requeued: tuple[int, frozenset[int]] | None = None  # (version, partitions)
        self._unusable = 0  # a stored version that failed to load (logged once)

    async def refresh(self, owned: Collection[int]) -> bool:
        """Load a new definitions version if one was applied; requeue the owned users once
        per version (and for partitions newly owned). True when the version changed."""
        stored = await self.store.version()
        changed = stored != self.book.version and stored != self._unusable
        if changed:
            try:
                self.book.current = await self.store.load()
            except ValueError as exc:  # RuleError, bad JSON: written by hand, not by `apply`
                log.error(
                    "audience definitions version %d unusable, keeping %d: %s",
                    stored,
                    self.book.version,
                    exc,
                )
                self._unusable = stored
                return False
            log.info(
                "audience definitions version %d: %d audiences",
                self.book.version,
                len(self.book.current.audiences),
            )
        parts = frozenset(owned)
        if self.book.version and self._requeued != (self.book.version, parts):
            # The store's marks skip partitions done for this version already (by anyone).
            await self.store.requeue(sorted(parts), self.partitions, self.book.version)
            self._requeued = (self.book.version, parts)
        return changed

    async def sweep(
        self,
        owned: Collection[int],
        as_of: int,
        announce: Callable[[list[AudienceChange]], Awaitable[None]],
    ) -> list[AudienceChange]:
        """Re-decide the owned users that are due; ``announce`` each partition's changes,
        then store the states. Announce first: a failed send stores nothing and the users stay
        due. A state not stored after all (the user changed meanwhile) was announced anyway;
        the user's next decision starts from the stored state, with the same event ids."""
        await self.refresh(owned)
        changes: list[AudienceChange] = []
        for partition in sorted(owned):
            async with self.lock:
                changes += await self._partition(partition, as_of, announce)
        return changes

    async def _partition(
        self,
        partition: int,
        as_of: int,
        announce: Callable[[list[AudienceChange]], Awaitable[None]],
    ) -> list[AudienceChange]:
        users = await self.store.due(partition, as_of)
        if not users:
            return []
        loaded, _ = await self.profiles.load(users, ())
        gone = [p.user_id for p in loaded.values() if p.last_ts is None]
        if gone:  # erased meanwhile
            await self.store.forget_due(partition, gone)
        updates: list[tuple[Profile, list[IndexOp]]] = []
        found: list[AudienceChange] = []
        slice_ends = time.perf_counter() + SLICE_S
        for profile in loaded.values():
            if profile.last_ts is None:
                continue
            if time.perf_counter() > slice_ends:  # let the loop breathe (web, heartbeats)
                await asyncio.sleep(0)
                slice_ends = time.perf_counter() + SLICE_S
            made, ops = decide(self.book, profile, as_of, self.partitions)
            updates.append((profile, ops))
            found += made
        await announce(found)
        skipped = await self.store.save_swept(updates)
        for profile, _ in updates:
            cached = self.cached(profile.user_id)
            stored = profile.user_id not in skipped
            if stored and cached is not None and cached.version == profile.version:
                cached.parts["audiences"] = profile.parts["audiences"]
        return found
