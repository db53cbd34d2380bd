"""The churn feature's timers: the sweep (levels that change with time alone) and the refit.

Churn is the absence of events, so the batch path alone never raises a silent user's risk:
the due index (``profiles/churn/feature.py``) names, per owner partition, when each user's
level may next change, and the sweep re-scores them then. The refit estimates the BG/NBD
population from a deterministic sample of customers, one worker per interval, and fits its
companions (the customer-value model) from the same sample. Pure logic
over two narrow ports: the churn store (``profiles/redis/churn.py``) and profile loads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol

from profiles.churn import outcomes
from profiles.churn.bgnbd import BGNBDParams
from profiles.churn.calibration import Calibrator, fit_calibrator
from profiles.churn.features import Behaviour
from profiles.churn.population import fit_population
from profiles.churn.tracker import ChurnChange, ChurnTracker
from profiles.core.profile import Profile

log = logging.getLogger(__name__)


class ChurnStore(Protocol):
    async def due(self, partition: int, until_ms: int, limit: int = 1000) -> list[str]: ...
    async def forget_due(self, partition: int, user_ids: Sequence[str]) -> None: ...
    async def save_churn(self, updates: Sequence[tuple[Profile, int]]) -> set[str]: ...
    async def sample_customers(self, partitions: int, per_partition: int) -> list[str]: ...
    async def requeue_customers(self, partitions: Sequence[int], chunk: int = 5000) -> None: ...
    async def load_model(self) -> tuple[BGNBDParams, Calibrator | None] | None: ...
    async def save_model(
        self,
        params: BGNBDParams,
        as_of: int,
        customers: int,
        calibrator: Calibrator | None = None,
    ) -> None: ...
    async def load_pairs(self, user_ids: Sequence[str]) -> dict[str, list[Any]]: ...
    async def save_pairs(self, updates: Sequence[tuple[Profile, list[Any]]]) -> None: ...
    async def fit_lock(self, ttl_s: int) -> bool: ...


class Companion(Protocol):
    """Another population model fitted from the refit's customer sample (customer value)."""

    async def refresh(self) -> None: ...
    async def refit(self, profiles: Sequence[Profile], as_of: int) -> object: ...


class ProfileLoader(Protocol):
    async def load(
        self, user_ids: Collection[str], item_ids: Collection[str]
    ) -> tuple[dict[str, Profile], dict[str, dict[str, Any]]]: ...


class ChurnSweeper:
    """Sweeps and refits for one worker; ``cached`` is its profile cache (kept in step)."""

    def __init__(
        self,
        tracker: ChurnTracker,
        store: ChurnStore,
        profiles: ProfileLoader,
        cached: Callable[[str], Profile | None],
        partitions: int,
        companions: Sequence[Companion] = (),
    ) -> None:
        self.tracker = tracker
        self.companions = tuple(companions)
        self.store = store
        self.profiles = profiles
        self.cached = cached
        self.partitions = partitions
        self.swept = 0
        self._requeued: str | None = None  # the model version that last requeued everyone

    async def sweep(
        self,
        owned: Collection[int],
        as_of: int,
        announce: Callable[[list[ChurnChange]], Awaitable[None]],
    ) -> list[ChurnChange]:
        """Re-score the owned users whose level may have changed; ``announce`` the changes of
        each partition, then store the new levels, and return the changes.

        Announce first: if the send fails, nothing is stored and the next sweep finds the same
        users due again (a stored level whose event was never sent would be lost for good).
        A level that is not stored after all (the user changed meanwhile) was announced anyway;
        ``churn_risk`` events are at least once."""
        await self.refresh_model()
        version = self.tracker.version()
        if self.tracker.params is not None and version != self._requeued:
            # A new fit can change any customer's level, also of those the due index dropped
            # (already "high", or scored before the first fit): re-check them all once.
            await self.store.requeue_customers(sorted(owned))
            self._requeued = version
        changes: list[ChurnChange] = []
        for partition in sorted(owned):
            users = await self.store.due(partition, as_of)
            if not users:
                continue
            loaded, _ = await self.profiles.load(users, ())
            # Erased meanwhile (or a sweep raced an erasure and re-indexed them): drop them, or
            # the index would name an erased user for ever.
            gone = [p.user_id for p in loaded.values() if p.last_ts is None]
            if gone:
                await self.store.forget_due(partition, gone)
            updates: list[tuple[Profile, int]] = []
            found: list[ChurnChange] = []
            for profile in loaded.values():
                if profile.last_ts is None:
                    continue
                change = self.tracker.update(profile, as_of)
                updates.append((profile, partition))
                if change is not None:
                    found.append(change)
            await announce(found)
            await self.store.save_churn(updates)  # a user changed meanwhile keeps its level
            for profile, _ in updates:
                cached = self.cached(profile.user_id)
                if cached is not None and cached.version == profile.version:
                    cached.churn = profile.churn
            changes += found  # announced, stored or not
        self.swept += len(changes)
        return changes

    def _calibrate(
        self,
        loaded: dict[str, Profile],
        stored: dict[str, list[Any]],
        as_of: int,
        params: BGNBDParams,
    ) -> tuple[dict[str, list[Any]], Calibrator | None]:
        """Label matured snapshots, take new ones, fit the calibrator (runs in a thread)."""
        horizon = self.tracker.config.horizon_days
        pairs = {
            uid: outcomes.record(stored.get(uid, []), Behaviour.read(p), as_of, params, horizon)
            for uid, p in loaded.items()
            if p.last_ts is not None
        }
        rows, labels, ids = outcomes.training_rows(pairs.items())
        return pairs, fit_calibrator(rows, labels, ids) if rows else None

    async def refresh_model(self) -> None:
        """The model another worker's refit stored, if any."""
        model = await self.store.load_model()
        if model is not None:
            self.tracker.params, self.tracker.calibrator = model
        for companion in self.companions:
            await companion.refresh()

    async def fit(
        self, as_of: int | None, ttl_s: int, *, force: bool = False
    ) -> BGNBDParams | None:
        """Refit the population (one worker per ``ttl_s``, under the store's lock).

        ``as_of`` None: as of the latest event among the sampled customers (a replayed log's
        "now"). ``force`` fits even if another fit holds the lock (``python -m stream churn
        fit``); the lock is still taken, so the workers' timers skip this interval."""
        if not await self.store.fit_lock(ttl_s) and not force:
            return None
        # A deterministic sample (the customers with the smallest hashes), large enough that
        # refits on the same data agree within 2% (EVALUATION.md).
        per_partition = max(1000, 50_000 // max(self.partitions, 1))
        users = await self.store.sample_customers(self.partitions, per_partition)
        loaded, _ = await self.profiles.load(users, ())
        if as_of is None:
            as_of = max((p.last_ts or 0 for p in loaded.values()), default=0)
        params = await asyncio.to_thread(
            fit_population, list(loaded.values()), as_of, 50, init=self.tracker.params
        )
        if params is not None:
            stored = await self.store.load_pairs(sorted(loaded))
            pairs, calibrator = await asyncio.to_thread(
                self._calibrate, loaded, stored, as_of, params
            )
            # Most refits neither label nor take a snapshot: write only what changed.
            changed = [(loaded[u], e) for u, e in pairs.items() if e != stored.get(u)]
            await self.store.save_pairs(changed)
            calibrator = calibrator or self.tracker.calibrator  # too few pairs: keep the last
            await self.store.save_model(params, as_of, len(loaded), calibrator)
            self.tracker.params, self.tracker.calibrator = params, calibrator
            log.info(
                "churn model refit on %d customers: %s; calibrator %s",
                len(loaded),
                params,
                "none yet" if calibrator is None else calibrator,
            )
        for companion in self.companions:  # the same sample, under the same lock
            await companion.refit(list(loaded.values()), as_of)
        return params
