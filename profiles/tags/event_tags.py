"""Which text of an event becomes interest tags, and how much each part counts.

Tracking events often carry the product's title and category; when they do
not, the catalog entry (from ``product`` events) fills in.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from profiles.core.catalog import described
from schemas.kinds import product_lines

Tag = tuple[str, float]


class TextTagger(Protocol):
    def __hash__(self) -> int: ...  # item tags are cached per tagger

    def text(self, text: str) -> tuple[Tag, ...]: ...

    def category(self, path: Sequence[str]) -> tuple[Tag, ...]: ...


#: Share of an item's interest carried by its title vs. its category path.
TITLE_SHARE = 0.6
CATEGORY_SHARE = 0.4


def event_tags(
    event: dict[str, Any], tagger: TextTagger, items: Mapping[str, dict[str, Any]]
) -> list[Tag]:
    """Tags of one event with weights summing to 1 (empty when it has no text).

    >>> class Words:
    ...     def text(self, t): return tuple((w, 1 / len(t.split())) for w in t.split())
    ...     def category(self, p): return ((p[-1], 1.0),) if p else ()
    >>> event_tags({"type": "search", "query": "red shoes"}, Words(), {})
    [('red', 0.5), ('shoes', 0.5)]
    """
    kind = event["type"]
    parts: list[tuple[Sequence[Tag], float]] = []
    if kind == "search":
        parts.append((tagger.text(event["query"]), 1.0))
    elif kind == "purchase":
        total = sum(int(item["quantity"]) for item in event["items"]) or 1
        for item in event["items"]:
            parts.extend(_item_parts(item, tagger, items, int(item["quantity"]) / total))
    elif kind == "review":
        parts.append((tagger.text(event["text"]), 0.5))
        parts.extend(_item_parts(event, tagger, items, 0.5))
    else:
        parts.extend(_item_parts(event, tagger, items, 1.0))
    return merge(parts)


def _item_parts(
    fields: Mapping[str, Any],
    tagger: TextTagger,
    items: Mapping[str, dict[str, Any]],
    share: float,
) -> list[tuple[Sequence[Tag], float]]:
    known = described(items, fields.get("product_id", ""))
    title = fields.get("title") or known.get("title") or ""
    category = fields.get("category") or known.get("category") or ()
    return [(item_tags(tagger, title, tuple(category)), share)]


@functools.lru_cache(maxsize=100_000)
def item_tags(tagger: TextTagger, title: str, category: tuple[str, ...]) -> tuple[Tag, ...]:
    """An item's merged title and category tags: computed once per item, not per click."""
    return tuple(
        merge([(tagger.text(title), TITLE_SHARE), (tagger.category(category), CATEGORY_SHARE)])
    )


def merge(parts: Sequence[tuple[Sequence[Tag], float]]) -> list[Tag]:
    """Weighted union of tag lists, renormalised over the parts that had tags."""
    scores: dict[str, float] = {}
    mass = 0.0
    for tags, share in parts:
        if not tags:
            continue
        mass += share
        for tag, weight in tags:
            scores[tag] = scores.get(tag, 0.0) + weight * share
    if mass <= 0:
        return []
    return sorted(((t, w / mass) for t, w in scores.items()), key=lambda kv: (-kv[1], kv[0]))


def needs_catalog(event: Mapping[str, Any]) -> list[str]:
    """Product ids whose title or category the event lacks (to look up in the catalog)."""
    lines = product_lines(event)
    if event["type"] == "remove_from_cart":  # its cart evidence is taken back by tags too
        lines = [event]
    return [ln["product_id"] for ln in lines if not (ln.get("title") and ln.get("category"))]
