"""Which texts of an event are encoded, and how much each counts in the event's vector.

An item is encoded as one text, its title and category path together, so a
title is encoded once however many events mention it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from profiles.core.catalog import described
from schemas.kinds import is_own_line


def item_text(title: str, category: Sequence[str]) -> str:
    """The text encoded for a catalog item.

    >>> item_text("Espresso Machine", ["Home", "Coffee"])
    'Espresso Machine | Home > Coffee'
    """
    path = " > ".join(category)
    return f"{title} | {path}" if path else title


def event_texts(
    event: Mapping[str, Any], items: Mapping[str, dict[str, Any]]
) -> list[tuple[str, float]]:
    """``(text, share)`` pairs of an event; shares sum to 1 (empty: nothing to encode)."""
    kind = event["type"]
    if kind == "search":
        return [(event["query"], 1.0)]
    if kind == "product":
        return [(item_text(event["title"], event["category"]), 1.0)]
    if kind == "purchase":
        total = sum(int(line["quantity"]) for line in event["items"]) or 1
        parts = [
            (_line_text(line, items), int(line["quantity"]) / total) for line in event["items"]
        ]
    elif kind == "review":
        parts = [(event["text"], 0.5), (_line_text(event, items), 0.5)]
    elif is_own_line(kind):  # click, add_to_cart: the event is its one product line
        parts = [(_line_text(event, items), 1.0)]
    else:
        return []
    kept = [(text, share) for text, share in parts if text.strip()]
    mass = sum(share for _, share in kept)
    return [(text, share / mass) for text, share in kept] if mass > 0 else []


def _line_text(fields: Mapping[str, Any], items: Mapping[str, dict[str, Any]]) -> str:
    known = described(items, fields.get("product_id", ""))
    title = fields.get("title") or known.get("title") or ""
    category = fields.get("category") or known.get("category") or ()
    return item_text(title, category) if title or category else ""


def combine(
    parts: Sequence[tuple[str, float]], vectors: Mapping[str, np.ndarray]
) -> np.ndarray | None:
    """The event's vector: share-weighted mean of its texts' unit vectors, renormalised."""
    total: np.ndarray | None = None
    for text, share in parts:
        vec = vectors.get(text)
        if vec is None:
            continue
        contribution = share * vec.astype(np.float64)
        total = contribution if total is None else total + contribution
    if total is None:
        return None
    norm = float(np.linalg.norm(total))
    return total / norm if norm > 0 else None
