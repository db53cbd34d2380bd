"""RFM scores, hysteresis and the tier rule table."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from profiles.value.rfm import TIER_NAMES, TIERS, RfmCuts, banded_score, score, tier_of

README = Path(__file__).resolve().parents[4] / "README.md"
CUTS = RfmCuts(
    recency=(7.0, 30.0, 90.0, 180.0),
    frequency=(1.0, 1.0, 2.0, 4.0),
    monetary=(20.0, 50.0, 100.0, 250.0),
)


def test_every_score_triple_has_a_tier_and_every_tier_is_reachable() -> None:
    cells = list(itertools.product(range(1, 6), repeat=3))
    found = {cell: tier_of(cell) for cell in cells}  # raises if a triple has no rule
    assert set(found.values()) == set(TIER_NAMES)
    assert len(TIER_NAMES) == 8


@pytest.mark.parametrize(
    ("scores", "tier"),
    [
        ((5, 5, 5), "champions"),
        ((4, 4, 4), "champions"),
        ((3, 5, 5), "loyal"),
        ((5, 3, 1), "loyal"),
        ((5, 1, 5), "new"),
        ((4, 2, 2), "promising"),
        ((2, 5, 5), "cannot_lose"),
        ((1, 4, 4), "cannot_lose"),
        ((2, 4, 2), "at_risk"),
        ((1, 3, 1), "at_risk"),
        ((3, 1, 3), "promising"),
        ((2, 1, 3), "hibernating"),
        ((2, 2, 5), "hibernating"),
        ((1, 1, 1), "lost"),
        ((1, 2, 5), "lost"),
    ],
)
def test_the_rule_table(scores: tuple[int, int, int], tier: str) -> None:
    assert tier_of(scores) == tier


def test_the_readme_shows_the_rule_table() -> None:
    """The README's "Customer value" table is the table the code uses, row for row."""
    text = README.read_text()
    section = text.split("## Customer value", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (\d)-(\d) \| (\d)-(\d) \| (\d)-(\d) \|", section, re.M)
    table = [
        (t, (int(a), int(b)), (int(c), int(d)), (int(e), int(f))) for t, a, b, c, d, e, f in rows
    ]
    assert table == [(r.tier, r.r, r.f, r.m) for r in TIERS]


def test_scores_follow_the_cuts() -> None:
    assert CUTS.scores(recency_days=3, orders=6, spend=400) == (5, 5, 5)
    assert CUTS.scores(recency_days=200, orders=1, spend=10) == (1, 1, 1)
    assert CUTS.scores(recency_days=30, orders=2, spend=50) == (3, 3, 2)  # at a cut: below
    assert [score(v, CUTS.frequency) for v in (1, 2, 3, 5)] == [1, 3, 4, 5]


def test_hysteresis_keeps_a_border_value_at_its_score() -> None:
    cuts = (10.0, 20.0, 30.0, 40.0)
    # Up: the value must pass the cut by 10 %.
    assert banded_score(21.0, cuts, 2, 0.1) == 2
    assert banded_score(22.5, cuts, 2, 0.1) == 3
    # Down: it must fall 10 % below the cut.
    assert banded_score(19.0, cuts, 3, 0.1) == 3
    assert banded_score(17.5, cuts, 3, 0.1) == 2
    # A value oscillating around a cut never flaps.
    seen = set()
    prev = None
    for v in [19.5, 20.5, 19.2, 20.9, 19.9, 21.5]:
        prev = banded_score(v, cuts, prev, 0.1)
        seen.add(prev)
    assert seen == {2}
    # Far moves jump several scores at once.
    assert banded_score(45.0, cuts, 1, 0.1) == 5
    assert banded_score(5.0, cuts, 5, 0.1) == 1
    # No margin: plain scores.
    assert all(banded_score(v, cuts, 3, 0.0) == score(v, cuts) for v in (5, 15, 25, 35, 45))


def test_recency_hysteresis_runs_the_other_way() -> None:
    # Recency cut at 30 days (R 4 below it, R 3 above it): 31 days keeps R 4 with a margin.
    assert CUTS.scores(31, 2, 50)[0] == 3
    assert CUTS.scores(31, 2, 50, previous=(4, 3, 2), margin=0.1)[0] == 4
    assert CUTS.scores(34, 2, 50, previous=(4, 3, 2), margin=0.1)[0] == 3
    assert CUTS.scores(28, 2, 50, previous=(3, 3, 2), margin=0.1)[0] == 3
    assert CUTS.scores(26, 2, 50, previous=(3, 3, 2), margin=0.1)[0] == 4


def test_cuts_are_the_population_quantiles_and_round_trip() -> None:
    cuts = RfmCuts.estimate(list(range(1, 101)), [1] * 60 + [2] * 20 + [5] * 20, range(100))
    # Tie-aware: a tied block takes the score of its lowest rank, each score holds a fifth.
    assert cuts.recency == pytest.approx((21.0, 41.0, 61.0, 81.0))
    assert cuts.frequency == pytest.approx((1.0, 1.0, 1.0, 2.0))
    assert [cuts.scores(r, 1, 0)[0] for r in (1, 20, 21, 80, 81, 100)] == [5, 5, 4, 2, 1, 1]
    assert [cuts.scores(1, f, 0)[1] for f in (1, 2, 5)] == [1, 4, 5]
    assert RfmCuts.from_dict(cuts.to_dict()) == cuts
    with pytest.raises(ValueError, match="non-decreasing"):
        RfmCuts((3.0, 2.0, 1.0, 0.0), (1.0,) * 4, (1.0,) * 4)
