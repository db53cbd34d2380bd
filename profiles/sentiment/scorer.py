"""Sentiment of one review text, in ``[-1, 1]``, for Chinese and English.

English goes to VADER (``vaderSentiment``: a lexicon and rules tuned on social text, with
negation, intensifiers, "but" and emoji; about 75 µs a review, no model download); Chinese
goes to the hashed linear head (:mod:`profiles.sentiment.linear`). A text is routed by its
share of Han characters among Han characters and Latin words; a mixed text gets both scores
weighted by that share. The star rating is never read here: disagreement between text and
stars is a signal of its own (:mod:`profiles.sentiment.state`).

>>> s = SentimentScorer()
>>> s.score("Terrible, it broke after two days. Want a refund.") < -0.5
True
>>> s.score("质量很好，非常满意") > 0.5
True
>>> s.score(""), s.score("   "), s.score(None)
(0.0, 0.0, 0.0)
>>> s.score("😍😍") > 0.5  # VADER reads emoji
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from profiles.sentiment.linear import LinearHead

__all__ = ["MAX_CHARS", "SentimentScorer", "han_share"]

#: Longer texts are cut here: the lead of a review carries its verdict, and the cost of both
#: scorers grows with length (a 100 kB text would take tens of ms).
MAX_CHARS = 2000

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z]+")


def han_share(text: str) -> float:
    """Han characters among Han characters and Latin words (0 when there are neither).

    >>> han_share("很好"), han_share("good value"), han_share("很好 good")
    (1.0, 0.0, 0.6666666666666666)
    """
    han = len(_HAN.findall(text))
    words = len(_WORD.findall(text))
    return han / (han + words) if han + words else 0.0


class SentimentScorer:
    """VADER for English, the bundled linear head for Chinese; thread-safe (both read-only)."""

    def __init__(self, head: LinearHead | None = None) -> None:
        self.head = head if head is not None else LinearHead.bundled()
        self.vader = SentimentIntensityAnalyzer()

    def version(self) -> str:
        return "sent1:vader-3.3.2+zh-head1"

    def vader_score(self, text: str) -> float:
        return float(self.vader.polarity_scores(text)["compound"])

    def score(self, text: Any) -> float:
        if not isinstance(text, str):
            return 0.0
        text = text[:MAX_CHARS]
        if not text.strip():
            return 0.0
        share = han_share(text)
        if share >= 1.0:
            return self.head.score(text)
        en = self.vader_score(text)
        if share <= 0.0:
            return en
        return share * self.head.score(text) + (1.0 - share) * en

    def scores(self, texts: Iterable[str]) -> dict[str, float]:
        """Each distinct text's score (rounded: equal on every worker and replay)."""
        return {text: round(self.score(text), 4) for text in set(texts)}
