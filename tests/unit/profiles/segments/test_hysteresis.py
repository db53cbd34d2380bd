"""Hysteresis: users leave their segment only for a clearly closer one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.segments.hysteresis import choose, choose_many

PROPS = settings(max_examples=100, deadline=None)

rows = st.integers(1, 8).flatmap(
    lambda k: st.lists(st.floats(0.0, 100.0), min_size=k, max_size=k).map(np.array)
)
margins = st.floats(0.0, 0.9)


@PROPS
@given(rows, st.integers(0, 7), margins)
def test_switch_only_when_clearly_closer(d: np.ndarray, cur_row: int, margin: float) -> None:
    ids = [100 + j for j in range(len(d))]
    current = ids[cur_row % len(d)]
    got = choose(current, d, ids, margin)
    best = ids[int(np.argmin(d))]
    assert got in (current, best)
    mine = d[cur_row % len(d)]
    if got != current:
        assert d.min() < (1 - margin) * mine
    elif best != current:
        assert not d.min() < (1 - margin) * mine


@PROPS
@given(rows, margins)
def test_new_or_vanished_segment_takes_the_nearest(d: np.ndarray, margin: float) -> None:
    ids = list(range(len(d)))
    nearest = int(np.argmin(d))
    assert choose(None, d, ids, margin) == nearest
    assert choose(-5, d, ids, margin) == nearest


@PROPS
@given(st.integers(1, 6), st.integers(1, 20), st.integers(0, 2**32 - 1), margins)
def test_choose_many_matches_choose(k: int, n: int, seed: int, margin: float) -> None:
    rng = np.random.default_rng(seed)
    d = rng.random((n, k)) * 10
    ids = rng.choice(100, size=k, replace=False).tolist()
    current = [
        None if r < 0.2 else (ids[int(r * 10) % k] if r < 0.9 else 999) for r in rng.random(n)
    ]
    expected = [choose(c, d[i], ids, margin) for i, c in enumerate(current)]
    assert choose_many(current, d, ids, margin) == expected


def test_hysteresis_stops_flapping_at_a_border() -> None:
    rng = np.random.default_rng(0)
    ids = [1, 2]
    flips = {}
    for margin in (0.0, 0.1):
        seg, changes = None, 0
        for _ in range(500):
            # a user on the border: both squared distances jitter around 10
            d = 10.0 + rng.normal(0.0, 0.2, 2)
            new = choose(seg, d, ids, margin)
            changes += seg is not None and new != seg
            seg = new
        flips[margin] = changes
    assert flips[0.0] > 100
    assert flips[0.1] == 0


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        choose(None, np.array([1.0, 2.0]), [1])
    with pytest.raises(ValueError):
        choose(None, np.array([]), [])
    with pytest.raises(ValueError):
        choose_many([None], np.ones((2, 2)), [1, 2])
