"""The review scorer: both languages, routing, and hostile or odd texts."""

from __future__ import annotations

import numpy as np
import pytest

from profiles.sentiment.linear import BUCKETS, LinearHead, hashed
from profiles.sentiment.scorer import MAX_CHARS, SentimentScorer, han_share


@pytest.fixture(scope="module")
def scorer() -> SentimentScorer:
    return SentimentScorer()


@pytest.mark.parametrize(
    ("text", "positive"),
    [
        ("Great value, works perfectly and arrived early. Love it!", True),
        ("Stopped working after two days, very disappointed. Returning it.", False),
        ("Not good at all.", False),  # negation
        ("这款耳机音质很好，物流也很快，非常满意！", True),
        ("质量太差了，用了两天就坏了，客服也不理人，很失望。", False),
        ("不推荐购买，已经申请退货。", False),
    ],
)
def test_the_sign_follows_the_text(scorer: SentimentScorer, text: str, positive: bool) -> None:
    score = scorer.score(text)
    assert -1.0 <= score <= 1.0
    assert (score > 0.2) if positive else (score < -0.2), score


def test_the_stars_are_not_read_only_the_text(scorer: SentimentScorer) -> None:
    # The scorer takes a text; the same words score the same whatever rating came with them.
    text = "Awful. Broke on day one."
    assert scorer.scores([text, text]) == {text: round(scorer.score(text), 4)}


@pytest.mark.parametrize("text", ["", "   \n\t", "!!!", "12345", "\u200b\u200b"])
def test_texts_without_words_are_neutral(scorer: SentimentScorer, text: str) -> None:
    assert scorer.score(text) == 0.0


@pytest.mark.parametrize("bad", [None, 5, b"bytes", ["list"], {"text": "x"}])
def test_what_is_not_a_string_is_neutral(scorer: SentimentScorer, bad: object) -> None:
    assert scorer.score(bad) == 0.0


def test_emoji_only_reviews_read_as_emoji(scorer: SentimentScorer) -> None:
    # VADER reads an emoji as its name ("angry face"): names outside its lexicon read 0.
    assert scorer.score("😍😍👍") > 0.3
    assert scorer.score("😠😠") < -0.3
    assert scorer.score("😡") == 0.0  # "pouting face"


def test_a_very_long_review_costs_only_its_lead(scorer: SentimentScorer) -> None:
    lead = "Terrible quality, it broke at once and support ignored me. "
    long = lead * 40 + "great " * 200_000  # 1.2 MB of text
    assert len(long) > 500 * MAX_CHARS
    # Only the first MAX_CHARS characters are read: the verdict of the lead stands.
    assert scorer.score(long) == scorer.score(long[:MAX_CHARS]) < -0.5


def test_mixed_language_weights_both_scorers_by_share(scorer: SentimentScorer) -> None:
    text = "质量很差 but the delivery was great"
    share = han_share(text)
    assert 0 < share < 1
    expected = share * scorer.head.score(text) + (1 - share) * scorer.vader_score(text)
    assert scorer.score(text) == pytest.approx(expected)
    assert scorer.score("很差很差很差，完全不能用 ok") < 0  # mostly Chinese, negative


def test_unpaired_surrogates_and_control_characters_do_not_crash(scorer: SentimentScorer) -> None:
    for text in ["\ud800 good", "bad\x00\x01\x02", "好\udfff差", "\uffff" * 50]:
        assert -1.0 <= scorer.score(text) <= 1.0


def test_hashing_is_stable_and_in_range() -> None:
    ids, weights = hashed("物流很快 fast delivery")
    assert ids == hashed("物流很快 fast delivery")[0]
    assert all(0 <= i < BUCKETS for i in ids)
    assert sum(w * w for w in weights) == pytest.approx(1.0)


def test_a_saved_head_loads_back_to_the_same_scores(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    rng = np.random.default_rng(3)
    head = LinearHead(rng.normal(0, 1, BUCKETS).astype(np.float32), 0.25)
    path = tmp_path / "h.npz"
    head.save(path)
    back = LinearHead.bundled(path)
    for text in ["很好", "差评 bad", "一般般吧"]:
        assert back.score(text) == pytest.approx(head.score(text), abs=2e-3)  # float16 weights
