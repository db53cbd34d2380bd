"""What churn scoring reads from a stored profile, and the BG/NBD summary ``(x, t_x, T)`` in days.

Six fields of :class:`profiles.core.profile.Profile` are read: ``first_ts``, ``last_ts`` (any
event), ``first_purchase_ts`` and ``last_purchase_ts`` (epoch ms of event time), ``orders`` and
``spend_cents`` (per currency; summed, for the mean order value the calibrator reads). A plain
mapping with those keys (e.g. the decoded profile JSON) works too.

>>> b = Behaviour.read({"first_ts": 0, "last_ts": 5 * DAY_MS, "orders": 3,
...                     "first_purchase_ts": DAY_MS, "last_purchase_ts": 4 * DAY_MS})
>>> customer_summary(b, 11 * DAY_MS)
(2, 3.0, 10.0)
>>> customer_summary(Behaviour.read({"first_ts": 0, "last_ts": 0, "orders": 0}), DAY_MS) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from profiles.core.profile import Profile

__all__ = ["DAY_MS", "Behaviour", "Stats", "customer_summary"]

DAY_MS = 86_400_000

Stats = Mapping[str, Any] | Profile


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True, slots=True)
class Behaviour:
    """The profile fields churn scoring depends on (epoch ms, event time)."""

    first_ts: int | None
    last_ts: int | None
    orders: int
    first_purchase_ts: int | None
    last_purchase_ts: int | None
    #: Spend over all currencies, in cents (0 when unknown).
    spend_cents: int = 0

    @classmethod
    def read(cls, stats: Stats | Behaviour) -> Behaviour:
        """Take the fields from a :class:`Profile`, a mapping of them, or a ``Behaviour``."""
        if isinstance(stats, Behaviour):
            return stats
        if isinstance(stats, Profile):
            fields = {name: getattr(stats, name) for name in _FIELDS}
        else:
            fields = {name: stats.get(name) for name in _FIELDS}
        return cls(
            first_ts=_opt_int(fields["first_ts"]),
            last_ts=_opt_int(fields["last_ts"]),
            orders=int(fields["orders"] or 0),
            first_purchase_ts=_opt_int(fields["first_purchase_ts"]),
            last_purchase_ts=_opt_int(fields["last_purchase_ts"]),
            spend_cents=_total_cents(fields["spend_cents"]),
        )

    @property
    def order_value(self) -> float:
        """Mean spend per order in currency units (0 without orders), for the calibrator."""
        return self.spend_cents / 100.0 / self.orders if self.orders > 0 else 0.0

    @property
    def purchaser(self) -> bool:
        """At least one purchase with its times known: a member of the BG/NBD population."""
        return (
            self.orders >= 1
            and self.first_purchase_ts is not None
            and self.last_purchase_ts is not None
        )


_FIELDS = (
    "first_ts",
    "last_ts",
    "orders",
    "first_purchase_ts",
    "last_purchase_ts",
    "spend_cents",
)


def _total_cents(value: Any) -> int:
    """Spend per currency summed (currencies are not converted: a mean order value is a scale,
    and most shops sell in one); negative or odd values count as 0."""
    values = value.values() if isinstance(value, Mapping) else (value,)
    return sum(_cents(v) for v in values)


def _cents(value: Any) -> int:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return max(int(value), 0) if ok else 0


def customer_summary(b: Behaviour, as_of_ms: int) -> tuple[int, float, float] | None:
    """``(x, t_x, T)`` in days as of ``as_of_ms``, or None for a user who has not bought.

    ``x = orders - 1`` (repeat purchases; every purchase event is one order, so two orders on
    the same day count twice, unlike the day-aggregated CDNOW data), ``t_x`` = last − first
    purchase, ``T`` = ``as_of`` − first purchase. The profile keeps no purchase history, so an
    ``as_of`` before the last purchase cannot be reconstructed: ``T`` is clamped to ``t_x``.
    """
    first, last = b.first_purchase_ts, b.last_purchase_ts
    if b.orders < 1 or first is None or last is None:
        return None
    t_x = max(last - first, 0) / DAY_MS
    age = (as_of_ms - first) / DAY_MS
    return b.orders - 1, t_x, max(age, t_x)
