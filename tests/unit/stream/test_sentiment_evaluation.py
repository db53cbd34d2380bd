"""The sentiment evaluation's pieces on small inputs (the full run needs downloaded packages)."""

from __future__ import annotations

from profiles.sentiment.scorer import SentimentScorer
from stream.evaluation.sentiment import generated, measure, table, train_head


def test_the_generators_reviews_are_scored_with_the_right_sign() -> None:
    zh, en = generated()
    assert len(zh) == len(en) == 32 and {label for _, label in zh} == {0, 1}
    scorer = SentimentScorer()
    for pairs in (zh, en):
        m = measure(scorer.score, pairs)
        assert m["accuracy"] == m["macro_f1"] == 1.0 and m["n"] == 32


def test_measure_counts_errors_both_ways() -> None:
    pairs = [("a", 1), ("b", 1), ("c", 0), ("d", 0)]
    m = measure(lambda t: 1.0 if t in ("a", "c") else -1.0, pairs)  # one right of each class
    assert m["accuracy"] == 0.5 and m["macro_f1"] == 0.5
    assert "| x | 4 | s | - | 0.500 | 0.500 |" in table([("x", "s", "-", m)])


def test_a_trained_head_learns_the_words_of_each_side() -> None:
    pairs = [("很好 满意 推荐", 1), ("很差 失望 退货", 0)] * 20
    head = train_head(pairs)
    assert head.score("满意") > 0 > head.score("失望")
