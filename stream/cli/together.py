"""``python -m stream rules CATEGORY``: association rules of a category's items from the pair
counts in Redis (support, confidence, lift), and the API's bought-together view."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from profiles.redis.catalog import RedisCatalog
from profiles.redis.together import RedisTogether
from profiles.together.counts import Pair
from profiles.together.rules import Rule

KINDS = {"bought": "b", "viewed": "v"}


def in_category(item: Mapping[str, Any], category: str) -> bool:
    """Whether ``category`` names a level of the item's category path (case-insensitive);
    ``*`` takes every item.

    >>> in_category({"category": ["Electronics", "Phones"]}, "phones")
    True
    >>> in_category({"category": ["Home"]}, "Phones"), in_category({}, "*")
    (False, True)
    """
    if category == "*":
        return True
    wanted = category.casefold()
    return any(str(level).casefold() == wanted for level in item.get("category") or ())


async def category_rules(
    reader: RedisTogether,
    catalog: RedisCatalog,
    category: str,
    kind: str = "b",
    k: int = 10,
    min_count: float = 2.0,
) -> list[Rule]:
    """Rules ``a -> b`` for every catalog item ``a`` of ``category``, best lift first."""
    ids = await catalog.all_ids()
    items = await catalog.items(ids)
    chosen = [pid for pid in ids if pid in items and in_category(items[pid], category)]
    found = await reader.pairs(chosen, kind, k, min_count)
    rules = [
        Rule(p.item, p.other, p.count, p.support, p.confidence, p.lift)
        for pairs in found.values()
        for p in pairs
    ]
    rules.sort(key=lambda r: (-r.lift, -r.count, r.item, r.other))
    return rules


def pair_view(item: str, kind: str, pairs: list[Pair]) -> dict[str, Any]:
    """The public JSON of ``GET /items/{id}/bought-together``."""
    return {
        "product_id": item,
        "kind": kind,
        "items": [
            {
                "product_id": p.other,
                "rank": rank,
                "count": round(p.count, 4),
                "support": round(p.support, 6),
                "confidence": round(p.confidence, 6),
                "lift": round(p.lift, 4),
            }
            for rank, p in enumerate(pairs, start=1)
        ],
    }
