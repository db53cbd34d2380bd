"""Interest tags from product titles, category paths, review text and search queries.

Text is split into Han (Chinese) runs and everything else:

* Han runs go through jieba's TF-IDF keywords (its bundled IDF table), as in the seed
  articles; single-character words and e-commerce filler (包邮, 正品, ...) are dropped.
* The rest is NFKC-normalised, lower-cased and tokenised into words of letters, digits and
  combining marks (internal ``-`` / ``'`` allowed).  There is no IDF corpus for it, so a word
  weighs term frequency x ``log2(len(word))``: longer words tend to be rarer and more specific
  ("headphones" over "pro"), which is the cheapest stand-in for IDF that still ranks sensibly.
  Stop words, shopping filler ("sale", "free", "pcs"), review filler ("great", "recommend")
  and quantity/spec tokens ("2pcs", "128gb", "500ml") are dropped; tokens without a letter,
  shorter than 2 or longer than 32 characters are dropped too (the long ones are SKUs, hashes
  and URLs, and a truncated prefix would be a made-up tag).

Each part's weights are normalised, scaled by the part's share of the text's content
characters (Han characters vs. characters of the kept words), merged, cut to ``top_k``
and normalised again, so weights are positive and sum to 1.  Ties are broken by tag, so the
output is a pure function of the input.

Results are cached per text (product titles repeat millions of times).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Tag", "TagExtractor", "category_tags", "extract_tags"]

Tag = tuple[str, float]

MAX_TAG_CHARS = 32
# Longer inputs are cut: the interest signal saturates long before this, and an unbounded
# review must not stall the worker inside jieba.
MAX_TEXT_CHARS = 10_000
# Only short texts (titles, queries, categories) are cached; long reviews are nearly always
# unique, and caching them would evict the titles and hold megabytes of keys.
CACHE_MAX_TEXT_CHARS = 512

# Han ideographs only: URO, extensions A-H and the compatibility block.  Kana and Hangul go
# down the word path, where they form usable tokens; jieba would cut them into single
# characters, which are then dropped.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003347f"
_HAN_RUN_RE = re.compile(f"[{_HAN}]+")
_ALL_HAN_RE = re.compile(f"[{_HAN}]+\\Z")

# Removed outright: invisible format characters (ZWJ/ZWNJ, bidi marks, soft hyphen, BOM, word
# joiner) and variation selectors, so "infor\xadmation" or an RTL-marked word stays one word.
_INVISIBLE_RE = re.compile(
    "[\u00ad\u034f\u061c\u180e\u200c-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufe00-\ufe0f\ufeff\U000e0000-\U000e007f\U000e0100-\U000e01ef]"
)
# Turned into a separator: controls (NUL included), lone surrogates (they would make the tag
# unencodable as UTF-8 for Redis/JSON), private use, zero-width space and underscores.
_SEPARATOR_RE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ue000-\uf8ff\u200b_]")
_APOSTROPHE_RE = re.compile("[\u2018\u2019\u02bc\u0060\u00b4]")
_HYPHEN_RE = re.compile("[\u2010\u2011]")

_QUANTITY_RE = re.compile(
    r"(?:\d+(?:pcs|pc|pack|packs|pk|pairs?|ct|count|mm|cm|km|ml|kg|mg|oz|lbs?|inch|inches|ft"
    r"|gb|tb|mb|mah|hz|ghz|mhz|x)|x\d+)"
)


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_ENGLISH_STOP_WORDS = _word_set(
    """
    about above across after again against ago all almost along already also although always am
    among an and another any anyone anything are aren't around as at be because been before
    being below beside besides between beyond both but by can can't cannot could couldn't did
    didn't do does doesn't doing don't done down during each either else etc even ever every
    for from further get gets got had hadn't has hasn't have haven't having he he's her here
    here's hers herself him himself his how however i'd i'll i'm i've if in inside into is isn't
    it it's its itself just let let's may me might more most much must my myself neither no nor
    not now of off often on once one only onto or other others our ours ourselves out over own
    per quite rather same shall she she's should shouldn't since so some such than that that's
    the their theirs them themselves then there there's these they they'd they'll they're
    they've this those though through thru to too toward towards under until up upon us very via
    was wasn't we we'd we'll we're we've were weren't what what's when where which while who
    whom whose why will with within without won't would wouldn't yet you you'd you'll you're
    you've your yours yourself yourselves
    """
)

# Words that appear on every listing or review and say nothing about what the user likes.
# Audience words (men, women, kids, baby) are deliberately kept: they are profile signal.
_ENGLISH_FILLER_WORDS = _word_set(
    """
    new newest latest sale sales hot free shipping ship ships shipped delivery fast pcs pc piece
    pieces pack packs pk set sets lot lots size sizes color colors colour colours style styles
    brand brands genuine original authentic official quality high premium cheap price prices
    discount discounts deal deals offer offers bundle item items product products stock
    available clearance wholesale limited edition version model includes included pair pairs
    pro max plus mini ultra lite series gen generation
    best better good great nice awesome amazing excellent perfect love loved loves like liked
    really bought buy buying purchase purchased order ordered recommend recommended highly
    review reviews star stars arrived received seller thanks thank
    """
)
_LATIN_DROP = _ENGLISH_STOP_WORDS | _ENGLISH_FILLER_WORDS

# High-IDF shopping and review filler: jieba's IDF comes from a general corpus, where words
# like 正品 or 热卖 are rare and would otherwise outrank the actual product.
_CHINESE_FILLER_WORDS = _word_set(
    """
    新款 新品 包邮 免邮 正品 特价 热卖 热销 爆款 促销 优惠 折扣 秒杀 限时 清仓 批发 现货 官方
    旗舰店 专柜 同款 原装 全新 直销 厂家 顺丰 包装 发货 收到 宝贝 卖家 客服 物流 快递 商品
    东西 质量 非常 不错 很好 满意 推荐 好评 就是 有点 感觉 还是 真的 比较 一个 这个 没有 可以
    已经 而且 但是 因为 所以 什么 一下 其他 一次 第一次 购买 下单 价格 便宜
    """
)

# --------------------------------------------------------------------------- jieba, loaded lazily

_JiebaExtract = Callable[..., list[tuple[str, float]]]
_jieba_lock = threading.Lock()
_jieba_state: dict[str, Any] = {}


def _jieba_extract() -> _JiebaExtract:
    """Import jieba on first use: the import alone reads a 6 MB IDF table (~0.5 s)."""
    extract: _JiebaExtract | None = _jieba_state.get("extract")
    if extract is not None:
        return extract
    with _jieba_lock:
        if "extract" not in _jieba_state:
            # jieba.analyse leaves idf.txt open on import; under `-W error` (pytest config) the
            # resulting ResourceWarning surfaces as an unraisable exception and fails tests.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                import jieba
                import jieba.analyse

            # jieba logs "Building prefix dict ..." at DEBUG to stderr on every start.
            jieba.setLogLevel(logging.WARNING)
            _jieba_state["jieba"] = jieba
            _jieba_state["extract"] = jieba.analyse.extract_tags
        loaded: _JiebaExtract = _jieba_state["extract"]
        return loaded


@functools.cache
def _word_re() -> re.Pattern[str]:
    """Word tokens: letters/digits plus combining marks, with internal ``-`` or ``'``.

    ``\\w`` alone excludes combining marks, which would shred Devanagari, Thai or vowelled Arabic
    into single letters; the mark set is read from this Python's Unicode database (~25 ms, once).
    """
    ranges: list[str] = []
    start = prev = -2
    for cp in range(0x300, 0x30000):
        if unicodedata.category(chr(cp))[0] != "M":
            continue
        if cp != prev + 1:
            if start >= 0:
                ranges.append(_range(start, prev))
            start = cp
        prev = cp
    if start >= 0:
        ranges.append(_range(start, prev))
    part = f"\\w[\\w{''.join(ranges)}]*"
    return re.compile(f"{part}(?:['-]{part})*")


def _range(lo: int, hi: int) -> str:
    return f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}"


# --------------------------------------------------------------------------- pure helpers


def _clean(text: str) -> str:
    """NFKC, lower-case, strip invisibles; separators become spaces.  Never raises."""
    text = _SEPARATOR_RE.sub(" ", text[:MAX_TEXT_CHARS])
    text = unicodedata.normalize("NFKC", text)
    # NFKC can map compatibility characters onto separators or invisibles, so filter again.
    text = _SEPARATOR_RE.sub(" ", _INVISIBLE_RE.sub("", text))
    text = _APOSTROPHE_RE.sub("'", text)
    text = _HYPHEN_RE.sub("-", text)
    return text.lower()


def _keep_word(token: str) -> bool:
    if not 2 <= len(token) <= MAX_TAG_CHARS or token in _LATIN_DROP:
        return False
    if not any(ch.isalpha() for ch in token) or _QUANTITY_RE.fullmatch(token):
        return False
    # "2-pack", "all-new": nothing left once numbers and filler are set aside.
    return not all(
        part.isdigit() or part in _LATIN_DROP or _QUANTITY_RE.fullmatch(part)
        for part in token.split("-")
    )


def _word_weights(text: str) -> tuple[dict[str, float], int]:
    """Term frequency x log2(length) per kept word, and the characters of the kept words."""
    weights: dict[str, float] = {}
    chars = 0
    for token in _word_re().findall(text):
        if token.endswith("'s"):
            token = token[:-2]
        if _keep_word(token):
            # Only kept words count towards the share: English spends far more letters on stop
            # words than Chinese spends characters on function words.
            chars += len(token)
            weights[token] = weights.get(token, 0.0) + math.log2(len(token))
    return weights, chars


def _han_weights(runs: Sequence[str]) -> dict[str, float]:
    # Runs are joined with spaces so that jieba never glues words across a Latin gap.
    pairs = _jieba_extract()(" ".join(runs), topK=None, withWeight=True)
    weights: dict[str, float] = {}
    for word, weight in pairs:
        if (
            2 <= len(word) <= MAX_TAG_CHARS
            and word not in _CHINESE_FILLER_WORDS
            and _ALL_HAN_RE.match(word)
            and math.isfinite(weight)
            and weight > 0
        ):
            weights[word] = weights.get(word, 0.0) + float(weight)
    return weights


def _merge(parts: Sequence[tuple[dict[str, float], float]]) -> dict[str, float]:
    merged: dict[str, float] = {}
    for weights, share in parts:
        total = sum(weights.values())
        if total <= 0 or share <= 0:
            continue
        for tag, weight in weights.items():
            merged[tag] = merged.get(tag, 0.0) + share * weight / total
    return merged


def _rank(weights: dict[str, float], top_k: int) -> tuple[Tag, ...]:
    """Top ``top_k`` by weight (ties by tag), normalised to sum 1, in that order."""
    top = sorted(weights.items(), key=_order)[:top_k]
    total = sum(weight for _, weight in top)
    if not top or not total > 0:
        return ()
    # Sorting again: division may turn two nearly equal weights into exactly equal ones.
    return tuple(sorted(((tag, weight / total) for tag, weight in top), key=_order))


def _order(item: Tag) -> tuple[float, str]:
    return -item[1], item[0]


def _text_tags(text: str, top_k: int) -> tuple[Tag, ...]:
    cleaned = _clean(text)
    runs = _HAN_RUN_RE.findall(cleaned)
    words, word_chars = _word_weights(_HAN_RUN_RE.sub(" ", cleaned) if runs else cleaned)
    han_chars = sum(len(run) for run in runs)
    han = _han_weights(runs) if han_chars >= 2 else {}
    return _rank(_merge([(han, float(han_chars)), (words, float(word_chars))]), top_k)


def _category_tags(path: tuple[str, ...], top_k: int) -> tuple[Tag, ...]:
    weights: dict[str, float] = {}
    depth = 0
    for level in path:
        name = " ".join(_clean(level).split())[:MAX_TAG_CHARS].rstrip()
        if not any(ch.isalnum() for ch in name):
            continue
        depth += 1
        # A repeated name ("Women > Shoes > Women") keeps its deepest, most specific weight.
        weights[name] = float(depth)
    return _rank(weights, top_k)


# --------------------------------------------------------------------------- public API


class TagExtractor:
    """Interest-tag extractor with its own settings and LRU caches.

    >>> extractor = TagExtractor(top_k=3)
    >>> [tag for tag, _ in extractor.text("Wireless Headphones for Travel, noise cancelling")]
    ['cancelling', 'headphones', 'wireless']
    >>> extractor.category(["Electronics", "Audio", "Headphones"])
    (('headphones', 0.5), ('audio', 0.3333333333333333), ('electronics', 0.16666666666666666))
    """

    def __init__(self, top_k: int = 5, cache_size: int = 100_000) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.top_k = top_k
        self.cache_size = cache_size
        self._text_cached: Callable[[str], tuple[Tag, ...]] = functools.lru_cache(
            maxsize=cache_size
        )(self._text_uncached)
        self._category_cached: Callable[[tuple[str, ...]], tuple[Tag, ...]] = functools.lru_cache(
            maxsize=cache_size
        )(self._category_uncached)

    def text(self, text: str) -> tuple[Tag, ...]:
        """Tags of a title, query or review; ``()`` when nothing usable is in it."""
        if len(text) <= CACHE_MAX_TEXT_CHARS:
            return self._text_cached(text)
        return _text_tags(text, self.top_k)

    def category(self, path: Sequence[str]) -> tuple[Tag, ...]:
        """One tag per level of a category path, deeper levels weighing more (depth 1..n).

        A bare string is one level, not a sequence of characters.
        """
        key = (path,) if isinstance(path, str) else tuple(path)
        return self._category_cached(key)

    def warm_up(self) -> None:
        """Load jieba's dictionary and IDF table now (~1 s) instead of on the first event."""
        _jieba_extract()
        _jieba_state["jieba"].initialize()
        _word_re()

    def _text_uncached(self, text: str) -> tuple[Tag, ...]:
        return _text_tags(text, self.top_k)

    def _category_uncached(self, path: tuple[str, ...]) -> tuple[Tag, ...]:
        return _category_tags(path, self.top_k)


@functools.lru_cache(maxsize=8)
def _default_extractor(top_k: int) -> TagExtractor:
    return TagExtractor(top_k=top_k)


def extract_tags(text: str, top_k: int = 5) -> tuple[Tag, ...]:
    """Weighted interest tags of ``text`` (Chinese, English or mixed), heaviest first.

    Weights are positive and sum to 1; ties are ordered by tag; results are cached.

    >>> [tag for tag, _ in extract_tags("华为 Mate 60 Pro 智能手机 5G 全网通", top_k=10)]
    ['mate', '网通', '智能手机', '华为', '5g']
    >>> extract_tags("The Best Wireless Headphones for Travel", top_k=2)[0][0]
    'headphones'
    >>> extract_tags("  🎉🎉  ")
    ()
    """
    return _default_extractor(top_k).text(text)


def category_tags(path: Sequence[str]) -> tuple[Tag, ...]:
    """Tags of a category path, the deepest (most specific) level weighing most.

    >>> category_tags(["Home", "Kitchen", "Coffee Makers"])
    (('coffee makers', 0.5), ('kitchen', 0.3333333333333333), ('home', 0.16666666666666666))
    >>> category_tags([])
    ()
    """
    return _default_extractor(5).category(path)
