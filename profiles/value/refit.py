"""The value model's share of the churn refit: fitted from the same customer sample, stored
beside the churn model, refreshed on every worker with it (see :class:`ChurnSweeper`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from profiles.core.profile import Profile
from profiles.value.population import ValueFit, fit_value
from profiles.value.scorer import ValueScorer

log = logging.getLogger(__name__)


class ValueStore(Protocol):
    async def load_fit(self) -> ValueFit | None: ...
    async def save_fit(self, fit: ValueFit) -> None: ...


class ValuePopulation:
    """A companion model of the churn refit (``refresh`` and ``refit``)."""

    def __init__(self, scorer: ValueScorer, store: ValueStore) -> None:
        self.scorer = scorer
        self.store = store

    async def refresh(self) -> None:
        """The fit another worker's refit stored, if any."""
        fit = await self.store.load_fit()
        if fit is not None:
            self.scorer.fit = fit

    async def refit(self, profiles: Sequence[Profile], as_of: int) -> ValueFit:
        init = self.scorer.fit.gg if self.scorer.fit is not None else None
        fit = await asyncio.to_thread(fit_value, profiles, as_of, init=init)
        await self.store.save_fit(fit)
        self.scorer.fit = fit
        log.info(
            "value model refit on %d customers (%d repeat buyers): %s",
            fit.customers,
            fit.repeat_buyers,
            fit.version(),
        )
        return fit
