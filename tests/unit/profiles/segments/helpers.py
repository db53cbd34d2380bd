"""Data and fitting loops shared by the segmentation tests."""

from __future__ import annotations

import numpy as np

from profiles.segments.kmeans import MiniBatchKMeans, Model


def planted(
    n: int, k: int, dim: int, *, spread: float = 1.0, noise: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` vectors around ``k`` Gaussian means (coordinates ~ N(0, spread²)) and their group."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, spread, (k, dim))
    groups = rng.integers(k, size=n)
    return means[groups] + rng.normal(0.0, noise, (n, dim)), groups


def fit(
    km: MiniBatchKMeans,
    X: np.ndarray,
    *,
    epochs: int = 3,
    batch: int = 256,
    seed: int = 0,
    model: Model | None = None,
) -> Model:
    """Stream ``X`` in shuffled mini-batches: seed until seeded, then delta + apply."""
    rng = np.random.default_rng(seed)
    m = km.empty() if model is None else model
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch):
            B = X[order[start : start + batch]]
            m = km.apply(m, km.delta(m, B)) if m.seeded else km.seed(m, B)
    return m


def inertia(X: np.ndarray, centres: np.ndarray) -> float:
    d2 = (X**2).sum(1)[:, None] - 2 * X @ centres.T + (centres**2).sum(1)[None, :]
    return float(np.maximum(d2, 0).min(axis=1).sum())
