"""Segment summaries and the PCA plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from profiles.segments.kmeans import MiniBatchKMeans
from profiles.segments.summary import pca_2d, plot_segments, summarize
from tests.unit.profiles.segments.helpers import fit, planted


def test_summary_per_segment() -> None:
    vectors = np.array([[0.0, 0.0], [1.0, 0.0], [0.4, 0.0], [9.0, 9.0], [50.0, 50.0]])
    labels = np.array([0, 0, 0, 1, -1])
    users = [{"user_id": f"u{i}"} for i in range(5)]
    tags = [[("a", 1.0)], [("a", 2.0), ("b", 5.0)], [], [("c", 1.0)], [("z", 9.0)]]
    rfm = [
        {"recency_days": r, "frequency": f, "monetary": m}
        for r, f, m in [(1, 1, 10), (3, 2, 20), (5, 3, 60), (7, 0, 0), (99, 99, 99)]
    ]
    churn = ["low", "high", "low", "high", "high"]
    out = summarize([42, 7], labels, vectors, users, tags, rfm, churn)
    assert [s["id"] for s in out] == [42, 7]
    big, small = out
    assert big["size"] == 3 and big["share"] == 0.75
    assert big["top_tags"] == [["b", 5.0], ["a", 3.0]]
    assert (big["recency_days"], big["frequency"], big["monetary"]) == (3.0, 2.0, 30.0)
    assert big["churn"] == {"high": pytest.approx(1 / 3), "low": pytest.approx(2 / 3)}
    # nearest to the members' mean (0.467, 0) first
    assert big["representatives"] == ["u2", "u0", "u1"]
    assert small["representatives"] == ["u3"] and "churn" in small
    # with the model's centres instead of the members' means, and no churn
    out = summarize([42, 7], labels, vectors, users, tags, rfm, centres=np.array([[1, 0], [9, 9]]))
    assert out[0]["representatives"] == ["u1", "u2", "u0"] and "churn" not in out[0]
    with pytest.raises(ValueError):
        summarize([42, 7], labels, vectors, users[:2], tags, rfm)


def test_pca_keeps_the_main_directions() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 10)) * np.array([10.0, 5.0] + [0.1] * 8)
    pts, centre = pca_2d(X, np.zeros((1, 10)))
    assert pts.shape == (500, 2) and centre.shape == (1, 2)
    assert pts[:, 0].var() > pts[:, 1].var() > 10 * X[:, 2:].var(axis=0).max()
    # the zero vector sits near the (centred) mean
    assert np.abs(centre).max() < 2.0


def test_plot_segments_writes_a_png(tmp_path: Path) -> None:
    X, _ = planted(2000, 6, 40, spread=1.0, noise=0.6, seed=2)
    km = MiniBatchKMeans(6, 40)
    model = fit(km, X, epochs=2)
    labels, _ = km.predict(model, X)
    segs = np.asarray(model.ids)[labels].tolist()
    path = plot_segments(
        X, segs, model.centres, model.ids, tmp_path / "segments.png", "Planted segments"
    )
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
    # More segments than legend entries: the rest are drawn as "other segments".
    many = plot_segments(X, segs, model.centres, model.ids, tmp_path / "few.png", "t", legend_max=2)
    assert many.stat().st_size > 10_000
