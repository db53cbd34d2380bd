"""Small fixtures shared by the recommendation tests: unit vectors and items."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from profiles.recommend.index import Item, ItemIndex

DIM = 8


def unit(values: np.ndarray | Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return (v / np.linalg.norm(v)).astype(np.float32)


def axis(i: int, dim: int = DIM) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


def near(i: int, j: int, eps: float, dim: int = DIM) -> np.ndarray:
    """Mostly axis ``i``, tilted by ``eps`` towards axis ``j``."""
    return unit(axis(i, dim) + eps * axis(j, dim))


def item(
    pid: str,
    vector: np.ndarray,
    tags: Iterable[str] = (),
    category: Sequence[str] = ("Shop",),
    discontinued: bool = False,
) -> Item:
    return Item(pid, vector, frozenset(tags), tuple(category), 10.0, discontinued)


def index_of(items: Iterable[Item], dim: int = DIM, capacity: int = 4) -> ItemIndex:
    idx = ItemIndex(dim, capacity=capacity)
    for it in items:
        idx.upsert(it)
    return idx
