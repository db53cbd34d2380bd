"""The value feature's sweep: tiers that change with time alone.

A customer who stops buying loses R score as days pass, so a champion becomes "at risk" or
"hibernating" without an event of their own. The due index (``profiles/value/feature.py``)
names, per owner partition, when each customer's R score may next fall; the sweep re-scores
them then, announces tier changes and stores the new states. A new fit (new RFM cuts) can
move any customer, so its first sweep re-checks every customer once. Pure logic over two
narrow ports: the value store (``profiles/redis/value.py``) and profile loads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol

from profiles.core.profile import Profile
from profiles.value.scorer import ValueChange, ValueScorer


class ValueSweepStore(Protocol):
    async def due(self, partition: int, until_ms: int, limit: int = 1000) -> list[str]: ...
    async def forget_due(self, partition: int, user_ids: Sequence[str]) -> None: ...
    async def save_values(self, updates: Sequence[tuple[Profile, int]]) -> set[str]: ...
    async def requeue_customers(self, partitions: Sequence[int], chunk: int = 5000) -> None: ...


class ProfileLoader(Protocol):
    async def load(
        self, user_ids: Collection[str], item_ids: Collection[str]
    ) -> tuple[dict[str, Profile], dict[str, dict[str, Any]]]: ...


class ValueSweeper:
    """Sweeps for one worker; ``cached`` is its profile cache (kept in step)."""

    def __init__(
        self,
        scorer: ValueScorer,
        store: ValueSweepStore,
        profiles: ProfileLoader,
        cached: Callable[[str], Profile | None],
    ) -> None:
        self.scorer = scorer
        self.store = store
        self.profiles = profiles
        self.cached = cached
        self.swept = 0
        self._requeued: str | None = None  # the fit version that last requeued everyone

    async def sweep(
        self,
        owned: Collection[int],
        as_of: int,
        announce: Callable[[list[ValueChange]], Awaitable[None]],
    ) -> list[ValueChange]:
        """Re-score the owned customers whose tier may have changed by ``as_of``; ``announce``
        each partition's changes, then store the new states, and return the changes.

        Announce first, as the churn sweep does: a failed send stores nothing, and the next
        sweep finds the same users due. A state not stored after all (the profile moved on
        meanwhile, and its own write re-scored it) was announced anyway: ``value_changed``
        events are at least once."""
        fit = self.scorer.fit
        if fit is None or fit.cuts is None:
            return []
        version = self.scorer.version()
        if version != self._requeued:
            await self.store.requeue_customers(sorted(owned))
            self._requeued = version
        changes: list[ValueChange] = []
        for partition in sorted(owned):
            users = await self.store.due(partition, as_of)
            if not users:
                continue
            loaded, _ = await self.profiles.load(users, ())
            gone = [u for u in users if u not in loaded or loaded[u].last_ts is None]
            if gone:  # erased meanwhile: the index must not name them for ever
                await self.store.forget_due(partition, gone)
            updates: list[tuple[Profile, int]] = []
            found: list[ValueChange] = []
            for profile in loaded.values():
                if profile.last_ts is None:
                    continue
                change = self.scorer.update(profile, max(as_of, profile.last_ts))
                updates.append((profile, partition))
                if change is not None:  # also a first tier (a customer from before the fit)
                    found.append(change)
            await announce(found)
            await self.store.save_values(updates)
            for profile, _ in updates:
                cached = self.cached(profile.user_id)
                if cached is not None and cached.version == profile.version:
                    cached.parts["value"] = profile.parts.get("value")
            changes += found
        self.swept += len(changes)
        return changes
