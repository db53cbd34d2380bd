"""The value model of the customer population: Gamma-Gamma spend and RFM cut points.

Fitted by the churn refit from the same customer sample as the BG/NBD
(:meth:`profiles.churn.sweeper.ChurnSweeper.fit`), so the two models describe one population.

Spend is read from the profile, which keeps totals, not single orders: a customer's mean order
value ``m`` is total spend / orders, over *all* their orders (the published Gamma-Gamma averages
the repeat orders only, leaving the first out; the profile cannot tell it apart). Amounts in
several currencies are added as they are: a shop prices in one currency.

>>> from profiles.core.profile import Profile
>>> p = Profile("u", orders=3, spend_cents={"USD": 6000}, first_purchase_ts=0,
...             last_purchase_ts=10 * DAY_MS, last_ts=12 * DAY_MS)
>>> measures(p, 40 * DAY_MS)
(30.0, 3, 60.0)
>>> fit_value([p], 40 * DAY_MS).cuts is None  # too few customers
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from profiles.churn.features import DAY_MS
from profiles.core.profile import Profile
from profiles.value import gammagamma
from profiles.value.gammagamma import GammaGammaParams
from profiles.value.rfm import RfmCuts

__all__ = ["DAY_MS", "ValueFit", "fit_value", "measures", "spend_of"]


def spend_of(profile: Profile) -> float:
    """Total spend in currency units (every currency added, see the module's note)."""
    return sum(profile.spend_cents.values()) / 100


def measures(profile: Profile, as_of_ms: int) -> tuple[float, int, float] | None:
    """``(days since the last purchase, orders, spend)`` as of ``as_of_ms``; None: no purchase."""
    if profile.orders < 1 or profile.last_purchase_ts is None:
        return None
    recency = max(as_of_ms - profile.last_purchase_ts, 0) / DAY_MS
    return recency, profile.orders, spend_of(profile)


@dataclass(frozen=True)
class ValueFit:
    """One refit's result: either part may be missing while too few customers exist."""

    gg: GammaGammaParams | None
    cuts: RfmCuts | None
    as_of: int
    customers: int
    repeat_buyers: int

    def version(self) -> str:
        """``gg-…`` and ``rfm-…``: names that change when the fit moved (4 digits)."""
        gg = gammagamma.model_version(self.gg) if self.gg is not None else "gg-none"
        if self.cuts is None:
            return f"{gg}+rfm-none"
        text = ",".join(f"{v:.4g}" for vals in self.cuts.to_dict().values() for v in vals)
        return f"{gg}+rfm-{hashlib.sha256(text.encode()).hexdigest()[:8]}"

    def to_dict(self) -> dict[str, Any]:
        gg = self.gg
        return {
            "gg": None if gg is None else {"p": gg.p, "q": gg.q, "v": gg.v},
            "rfm": None if self.cuts is None else self.cuts.to_dict(),
            "as_of": self.as_of,
            "customers": self.customers,
            "repeat_buyers": self.repeat_buyers,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ValueFit:
        gg = state.get("gg")
        rfm = state.get("rfm")
        return cls(
            None if gg is None else GammaGammaParams(gg["p"], gg["q"], gg["v"]),
            None if rfm is None else RfmCuts.from_dict(rfm),
            int(state.get("as_of", 0)),
            int(state.get("customers", 0)),
            int(state.get("repeat_buyers", 0)),
        )


def fit_value(
    profiles: Iterable[Profile],
    as_of_ms: int,
    *,
    init: GammaGammaParams | None = None,
    min_customers: int = 20,
    min_repeat_buyers: int = 20,
) -> ValueFit:
    """RFM quantiles of the customers who had bought by ``as_of_ms``, and the Gamma-Gamma fit
    of those with two orders or more (``x`` = orders, ``m`` = spend / orders)."""
    rows = [
        found
        for p in profiles
        if p.first_purchase_ts is None or p.first_purchase_ts <= as_of_ms
        if (found := measures(p, as_of_ms)) is not None
    ]
    cuts = None
    if len(rows) >= max(min_customers, 1):
        recency, orders, spend = zip(*rows, strict=True)
        cuts = RfmCuts.estimate(recency, orders, spend)
    repeat = [(n, s / n) for _, n, s in rows if n >= 2 and s > 0]
    gg = None
    if len(repeat) >= max(min_repeat_buyers, 1):
        x = np.array([n for n, _ in repeat], dtype=np.float64)
        m = np.array([v for _, v in repeat], dtype=np.float64)
        try:
            gg = gammagamma.fit(x, m, init=init)
        except ValueError:  # degenerate data (e.g. every order of the same value): no fit
            gg = None
    return ValueFit(gg, cuts, as_of_ms, len(rows), len(repeat))
