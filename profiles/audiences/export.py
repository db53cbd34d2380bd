"""Reading audiences out: sizes, paged member listings of a snapshot, noisy counts.

Shared by the HTTP API and the command line, over the audience store's port. A listing reads
a *snapshot*: one atomic copy of the member set made when the export starts
(``RedisAudienceStore.snapshot``), so every page comes from the same instant; members that
enter or leave meanwhile show up in the next export. Opted-out users are never members, so
they are never listed or counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from profiles.audiences.definitions import Definitions
from profiles.audiences.noise import noisy_count


class ExportStore(Protocol):
    async def load(self) -> Definitions: ...
    async def counts(self, names: Sequence[str]) -> dict[str, int]: ...
    async def snapshot(self, name: str, ttl_s: int) -> tuple[str, int]: ...
    async def page(
        self, name: str, snap: str, cursor: int, count: int
    ) -> tuple[int, list[str]]: ...
    async def spend(
        self, name: str, report: str, epsilon: float, budget: float
    ) -> tuple[bool, float]: ...


class UnknownAudience(LookupError):
    pass


class BudgetSpent(RuntimeError):
    """The report's privacy budget for the audience cannot pay for another count."""


async def summary(store: ExportStore) -> dict[str, Any]:
    """Every defined audience with its exact size (for use inside the company)."""
    defs = await store.load()
    names = [a.name for a in defs.audiences]
    sizes = await store.counts(names)
    return {
        "version": defs.version,
        "audiences": [
            {"name": a.name, "description": a.description, "size": sizes[a.name]}
            for a in defs.audiences
        ],
    }


async def known(store: ExportStore, name: str) -> Definitions:
    defs = await store.load()
    if name not in {a.name for a in defs.audiences}:
        raise UnknownAudience(f"no audience {name!r} in definitions version {defs.version}")
    return defs


async def dp_count(
    store: ExportStore,
    name: str,
    epsilon: float,
    report: str,
    budget: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """The audience's size with Laplace noise, paid from the report's budget first (a count
    refused for lack of budget reveals nothing)."""
    await known(store, name)
    ok, spent = await store.spend(name, report, epsilon, budget)
    if not ok:
        raise BudgetSpent(
            f"report {report!r} spent {spent:g} of its epsilon budget {budget:g} on {name!r}; "
            f"a count at epsilon {epsilon:g} would exceed it"
        )
    size = (await store.counts([name]))[name]
    return {
        "audience": name,
        "report": report,
        **noisy_count(size, epsilon, rng),
        "spent": round(spent, 9),
        "budget": budget,
    }
