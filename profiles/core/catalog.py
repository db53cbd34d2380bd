"""Which catalog entries may describe a product for an event that does not describe it itself.

Only ``product`` events do. A *seen* entry (``seen_in``: made from the title a tracking event
carried, so the item index can serve a product before its ``product`` event) never fills in
another event's title or category: which user's event described a product first depends on
processing order across users and partitions, and profiles must not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EMPTY: Mapping[str, Any] = {}


def described(items: Mapping[str, Mapping[str, Any]], product_id: str) -> Mapping[str, Any]:
    """The catalog entry of ``product_id`` if a ``product`` event made it, else nothing.

    >>> items = {"p1": {"title": "Red shoes"}, "p2": {"title": "Blue hat", "seen_in": "click"}}
    >>> described(items, "p1")["title"], dict(described(items, "p2")), dict(described(items, "p3"))
    ('Red shoes', {}, {})
    """
    entry = items.get(product_id)
    if entry is None or "seen_in" in entry:
        return EMPTY
    return entry
