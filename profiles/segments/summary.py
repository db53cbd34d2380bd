"""What each segment is, for the people who market to it: size, tags, RFM, churn, examples.

>>> vectors = np.array([[0.0, 0.0], [0.2, 0.0], [5.0, 5.0]])
>>> out = summarize([3, 8], np.array([0, 0, 1]), vectors,
...                 [{"user_id": "a"}, {"user_id": "b"}, {"user_id": "c"}],
...                 [[("鞋", 1.0)], [("鞋", 0.5), ("包", 0.7)], [("书", 2.0)]],
...                 [{"recency_days": 1.0, "frequency": 2.0, "monetary": 100.0}] * 3,
...                 churn=["low", "high", "low"])
>>> out[0]["id"], out[0]["size"], out[0]["top_tags"], out[0]["churn"]
(3, 2, [['鞋', 1.5], ['包', 0.7]], {'high': 0.5, 'low': 0.5})
>>> out[1]["representatives"]
['c']
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from profiles.segments.matching import squared_distances

__all__ = ["pca_2d", "plot_segments", "summarize"]

_RFM_KEYS = ("recency_days", "frequency", "monetary")
#: tab20 entries: the ten strong hues first, then their light shades; greys (14, 15) are left
#: out because "other segments" are drawn grey.
_PALETTE_TAB20 = (0, 2, 4, 6, 8, 10, 12, 16, 18, 1, 3, 5, 7, 9, 11, 13, 17, 19)
_OTHER = "#c8c8c8"


def summarize(
    ids: Sequence[int],
    labels: np.ndarray,
    vectors: np.ndarray,
    users: Sequence[Mapping[str, Any]],
    top_tags: Sequence[Sequence[tuple[str, float]]],
    rfm: Sequence[Mapping[str, float]],
    churn: Sequence[str] | None = None,
    *,
    centres: np.ndarray | None = None,
    n_tags: int = 10,
    n_representatives: int = 3,
) -> list[dict[str, Any]]:
    """One dict per non-empty segment, largest first.

    ``ids`` is the segment id of each centre row and ``labels`` the centre row of each user
    (as :meth:`~profiles.segments.kmeans.MiniBatchKMeans.predict` returns; -1 = unassigned,
    skipped). Per user: ``vectors`` (clustering vector), ``users`` (a mapping with
    ``user_id``), ``top_tags`` ([(tag, score)]), ``rfm`` (``recency_days``, ``frequency``,
    ``monetary`` as :func:`~profiles.segments.features.rfm_values` gives) and optionally a
    ``churn`` level. Each segment reports: ``id``, ``size``, ``share`` of assigned users,
    ``top_tags`` (scores summed over members), the mean of each RFM value, ``churn`` (share per
    level, when given) and ``representatives``: the user ids nearest to the segment's centre
    (``centres[row]`` when given, else the members' mean).
    """
    labels = np.asarray(labels)
    X = np.asarray(vectors, dtype=np.float64)
    n = len(labels)
    if not (X.shape[0] == len(users) == len(top_tags) == len(rfm) == n):
        raise ValueError("labels, vectors, users, top_tags and rfm need one entry per user")
    if churn is not None and len(churn) != n:
        raise ValueError("churn needs one entry per user")
    assigned = int((labels >= 0).sum())
    out: list[dict[str, Any]] = []
    for row, seg in enumerate(ids):
        members: list[int] = np.flatnonzero(labels == row).tolist()
        if not members:
            continue
        tags: defaultdict[str, float] = defaultdict(float)
        for i in members:
            for tag, score in top_tags[i]:
                tags[tag] += float(score)
        ranked = sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))[:n_tags]
        centre = X[members].mean(axis=0) if centres is None else np.asarray(centres)[row]
        near = np.argsort(squared_distances(X[members], centre[None, :])[:, 0], kind="stable")
        entry: dict[str, Any] = {
            "id": int(seg),
            "size": len(members),
            "share": round(len(members) / assigned, 6),
            "top_tags": [[tag, round(score, 6)] for tag, score in ranked],
        }
        for key in _RFM_KEYS:
            entry[key] = round(float(np.mean([rfm[i][key] for i in members])), 6)
        if churn is not None:
            mix = Counter(churn[i] for i in members)
            entry["churn"] = {lvl: round(c / len(members), 6) for lvl, c in sorted(mix.items())}
        entry["representatives"] = [
            str(users[members[j]]["user_id"]) for j in near[:n_representatives]
        ]
        out.append(entry)
    out.sort(key=lambda e: (-e["size"], e["id"]))
    return out


def pca_2d(X: np.ndarray, extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Project ``X`` (and ``extra``, in the same basis) on ``X``'s first two principal axes.

    >>> pts, _ = pca_2d(np.array([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [4.0, 0.0, 1.0]]))
    >>> np.abs(pts).round(6).tolist()
    [[2.0, 0.0], [0.0, 0.0], [2.0, 0.0]]
    """
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    basis = np.zeros((X.shape[1], 2))
    basis[:, : min(2, vt.shape[0])] = vt[:2].T
    other = np.zeros((0, 2)) if extra is None else (np.asarray(extra) - mean) @ basis
    return (X - mean) @ basis, other


def plot_segments(
    vectors: np.ndarray,
    segment_ids: Sequence[int],
    centres: np.ndarray,
    centre_ids: Sequence[int],
    path: Path,
    title: str,
    *,
    sample: int = 4000,
    legend_max: int = 16,
    seed: int = 0,
) -> Path:
    """A PNG of users (a random ``sample``) on the first two principal components, coloured by
    segment, with each centre marked and labelled ``S<id> (n)`` (n = users in the segment).

    The projection is fitted on the sampled users. Only the ``legend_max`` largest segments
    get their own colour and label; the rest are drawn grey as "other segments" (their centres
    as small unlabelled crosses).
    """
    # Imported here: the worker never plots, and matplotlib costs ~0.3 s to import.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    X = np.asarray(vectors, dtype=np.float64)
    seg = np.asarray(segment_ids, dtype=np.int64)
    if len(seg) != X.shape[0] or X.shape[0] < 2:
        raise ValueError("need at least two vectors and one segment id per vector")
    sizes = Counter(int(s) for s in seg)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(X.shape[0], size=min(sample, X.shape[0]), replace=False))
    pts, cpts = pca_2d(X[pick], np.asarray(centres, dtype=np.float64))
    shown = [s for s, _ in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:legend_max]]

    fig = Figure(figsize=(10, 7.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    tab20 = colormaps["tab20"]
    colours = [tab20(_PALETTE_TAB20[i % len(_PALETTE_TAB20)]) for i in range(len(shown))]
    others = ~np.isin(seg[pick], shown)
    if others.any():
        ax.scatter(
            pts[others, 0],
            pts[others, 1],
            s=6,
            c=_OTHER,
            alpha=0.4,
            linewidths=0,
            label="other segments",
        )
    for colour, s in zip(colours, shown, strict=True):
        mask = seg[pick] == s
        ax.scatter(
            pts[mask, 0],
            pts[mask, 1],
            s=8,
            color=colour,
            alpha=0.6,
            linewidths=0,
            label=f"S{s} ({sizes[s]:,})",
        )
    colour_of: dict[int, Any] = dict(zip(shown, colours, strict=True))
    for (cx, cy), cid in zip(cpts, centre_ids, strict=True):
        if int(cid) not in colour_of:
            ax.scatter([cx], [cy], s=50, marker="x", color="#555555", linewidths=1.0, zorder=3)
            continue
        ax.scatter(
            [cx],
            [cy],
            s=170,
            marker="X",
            color=colour_of[int(cid)],
            edgecolors="black",
            linewidths=1.2,
            zorder=3,
        )
        ax.annotate(
            f"S{cid} ({sizes.get(int(cid), 0):,})",
            (cx, cy),
            xytext=(7, 7),
            textcoords="offset points",
            fontsize=9,
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.8, "lw": 0},
            zorder=4,
        )
    ax.set_xlabel("PC1")
    ax.set_ylabel("PC2")
    ax.set_title(f"{title}\n{len(pick):,} of {X.shape[0]:,} users, {len(sizes)} segments")
    ax.grid(True, alpha=0.25)
    ax.legend(
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=9,
        markerscale=2.5,
        frameon=False,
        title="segment (users)",
    )
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path
