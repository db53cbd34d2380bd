"""Interest-tag extraction: expected tags, invariants, robustness and caching."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.tags.extractor import (
    CACHE_MAX_TEXT_CHARS,
    MAX_TAG_CHARS,
    Tag,
    TagExtractor,
    category_tags,
    extract_tags,
)


def tags_of(result: Sequence[Tag]) -> list[str]:
    return [tag for tag, _ in result]


def assert_well_formed(result: tuple[Tag, ...], top_k: int) -> None:
    assert isinstance(result, tuple)
    assert len(result) <= top_k
    names = tags_of(result)
    assert len(set(names)) == len(names)
    for tag, weight in result:
        assert isinstance(tag, str) and isinstance(weight, float)
        assert 1 <= len(tag) <= MAX_TAG_CHARS
        assert tag == tag.lower()
        tag.encode("utf-8")  # no lone surrogates: tags must survive Redis and JSON
        assert weight > 0 and math.isfinite(weight)
    if result:
        assert math.isclose(sum(weight for _, weight in result), 1.0, rel_tol=1e-9)
    assert list(result) == sorted(result, key=lambda item: (-item[1], item[0]))


# --------------------------------------------------------------------------- expected tags


def test_chinese_phone_title() -> None:
    result = extract_tags("华为 Mate 60 Pro 智能手机 5G 全网通", top_k=10)
    assert_well_formed(result, 10)
    names = tags_of(result)
    assert {"智能手机", "华为", "mate"} <= set(names)
    # "60" is a bare number and "pro" a model-variant filler word.
    assert "60" not in names and "pro" not in names


def test_chinese_only_title_drops_filler_and_single_characters() -> None:
    names = tags_of(extract_tags("新款正品 连衣裙女夏季碎花雪纺中长款", top_k=10))
    assert {"连衣裙", "雪纺", "碎花"} <= set(names)
    assert "新款" not in names and "正品" not in names
    assert all(len(name) >= 2 for name in names)


def test_english_title_drops_stop_words() -> None:
    result = extract_tags("The Best Wireless Noise Cancelling Headphones for Travel")
    assert_well_formed(result, 5)
    names = tags_of(result)
    assert {"wireless", "headphones"} <= set(names)
    assert not {"the", "for", "best"} & set(names)


def test_english_filler_quantities_and_possessives() -> None:
    names = tags_of(extract_tags("Men's Running Shoes 2-Pack 2pcs 500ml Size 10 Free Shipping"))
    assert names == ["running", "shoes", "men"]


def test_english_weights_follow_frequency_and_length() -> None:
    result = dict(extract_tags("case case cable"))
    # tf x log2(len): case 2 x 2 = 4, cable log2(5) ~ 2.32.
    assert result["case"] > result["cable"]
    assert math.isclose(result["case"] / result["cable"], 4 / math.log2(5))


def test_mixed_title() -> None:
    names = tags_of(extract_tags("Apple iPhone 15 Pro Max 256GB 手机壳 透明 防摔", top_k=10))
    assert {"iphone", "apple", "手机", "透明"} <= set(names)
    assert not {"15", "256gb", "pro", "max"} & set(names)


def test_mixed_parts_weigh_by_their_share_of_the_text() -> None:
    # Two Han characters against four letters of kept words: one third vs two thirds.
    result = dict(extract_tags("耳机 case"))
    assert math.isclose(result["耳机"], 1 / 3)
    assert math.isclose(result["case"], 2 / 3)


def test_mixed_text_normalises_width_and_case() -> None:
    assert tags_of(extract_tags("Ａｐｐｌｅ　ｉＰｈｏｎｅ")) == ["iphone", "apple"]


def test_invisible_characters_do_not_split_words() -> None:
    names = tags_of(extract_tags("infor\xadmation wi\u2011fi \u200fshalom\u200f"))
    assert set(names) == {"information", "wi-fi", "shalom"}


def test_combining_marks_stay_inside_words() -> None:
    names = tags_of(extract_tags("हिन्दी किताब"))
    assert set(names) == {"हिन्दी", "किताब"}


def test_top_k_limits_and_renormalises() -> None:
    result = extract_tags("华为 Mate 60 Pro 智能手机 5G 全网通", top_k=1)
    assert len(result) == 1 and result[0][1] == 1.0


@pytest.mark.parametrize(
    "text",
    ["", "   ", "\n\t", "🎉🎉🎉", "👨‍👩‍👧‍👦", "\x00\x00", "12345 678", "the and of", "!!!", "的了"],
)
def test_empty_cases(text: str) -> None:
    assert extract_tags(text) == ()


def test_tie_order_is_by_tag() -> None:
    assert tags_of(extract_tags("zebra apple mango")) == ["apple", "mango", "zebra"]


def test_tags_longer_than_limit_are_dropped() -> None:
    assert tags_of(extract_tags("a" * (MAX_TAG_CHARS + 1) + " coffee")) == ["coffee"]


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "text",
    [
        "lone \ud800 surrogate \udfff here",
        "nul\x00inside\x00words",
        "مرحبا بالعالم שלום עולם \u202eevil\u202c",
        "family 👨\u200d👩\u200d👧 flag 🏳️\u200d🌈 skin 👍🏽",
        "\ufdfa\ufb01\u2126\u212b",  # NFKC expands and remaps these
        "\U0002a6d6\U0002a6d6 \u3400\u3401",  # Han outside jieba's dictionary range
        "_under_score_ snake_case",
    ],
)
def test_odd_text_never_raises(text: str) -> None:
    assert_well_formed(extract_tags(text), 5)


def test_long_review() -> None:
    sentence = "这款耳机音质很好，降噪效果也不错，就是续航有点短。Great sound, battery life. "
    review = (sentence * 80)[:5000]
    result = extract_tags(review, top_k=8)
    assert_well_formed(result, 8)
    assert {"降噪", "battery"} <= set(tags_of(result))


def test_huge_text_is_bounded() -> None:
    assert_well_formed(extract_tags("手机 phone " * 200_000), 5)


# --------------------------------------------------------------------------- categories


def test_category_weights_grow_with_depth() -> None:
    assert category_tags(["Electronics", "Audio", "Headphones"]) == (
        ("headphones", 3 / 6),
        ("audio", 2 / 6),
        ("electronics", 1 / 6),
    )


def test_category_levels_are_normalised() -> None:
    names = tags_of(category_tags(["  Ｈｏｍｅ  ", "", "  ", "🔥", "Coffee   Makers", "咖啡机"]))
    assert names == ["咖啡机", "coffee makers", "home"]


def test_category_edge_cases() -> None:
    assert category_tags([]) == ()
    assert category_tags(["", "   "]) == ()
    assert category_tags("Books") == (("books", 1.0),)  # a bare str is one level
    assert tags_of(category_tags(["Women", "Shoes", "Women"])) == ["women", "shoes"]
    long_name = "x" * 100
    assert category_tags([long_name]) == (("x" * MAX_TAG_CHARS, 1.0),)


def test_category_keeps_deepest_levels() -> None:
    path = [f"level{depth}" for depth in range(1, 9)]
    assert tags_of(TagExtractor(top_k=3).category(path)) == ["level8", "level7", "level6"]


# --------------------------------------------------------------------------- caching, settings


def test_cache_hit_returns_identical_object() -> None:
    extractor = TagExtractor()
    title = "Sony WH-1000XM5 Wireless Headphones 降噪耳机"
    first = extractor.text(title)
    assert extractor.text(title) is first
    assert extractor.text("".join(list(title))) is first  # equal, not identical, key
    path = ["Electronics", "Audio"]
    assert extractor.category(path) is extractor.category(tuple(path))


def test_long_text_bypasses_cache_but_is_deterministic() -> None:
    extractor = TagExtractor()
    review = "great battery " * (CACHE_MAX_TEXT_CHARS // 10)
    assert extractor.text(review) == extractor.text(review)


def test_module_functions_respect_top_k() -> None:
    text = "alpha beta gamma delta epsilon zeta theta kappa"
    assert len(extract_tags(text, top_k=3)) == 3
    assert len(extract_tags(text)) == 5


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        TagExtractor(top_k=0)
    with pytest.raises(ValueError):
        TagExtractor(cache_size=-1)


def test_warm_up_is_quiet() -> None:
    # A fresh interpreter, so jieba really loads; -W error catches its import-time warnings.
    code = (
        "from profiles.tags.extractor import TagExtractor, extract_tags\n"
        "TagExtractor().warm_up()\n"
        "print(extract_tags('智能手机'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "智能手机" in done.stdout


# --------------------------------------------------------------------------- properties

ANY_CHAR = st.characters(exclude_categories=())  # includes lone surrogates and controls
VOCAB = st.sampled_from(
    [
        "手机",
        "智能手机",
        "华为",
        "连衣裙",
        "的",
        "新款",
        "耳机",
        "iPhone",
        "Case",
        "the",
        "for",
        "wireless",
        "2pcs",
        "60",
        "Men's",
        "wi-fi",
        "🎉",
        " ",
        "，",
        "\u200d",
        "\x00",
    ]
)
TEXTS = st.one_of(
    st.text(ANY_CHAR, max_size=200),
    st.lists(st.one_of(VOCAB, st.text(ANY_CHAR, max_size=3)), max_size=40).map("".join),
)


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, top_k=st.integers(min_value=1, max_value=12))
def test_text_invariants(text: str, top_k: int) -> None:
    result = TagExtractor(top_k=top_k, cache_size=0).text(text)
    assert_well_formed(result, top_k)
    assert all(len(tag) >= 2 and not any(ch.isspace() for ch in tag) for tag in tags_of(result))
    assert extract_tags(text, top_k=top_k) == result


@settings(max_examples=200, deadline=None)
@given(path=st.lists(st.text(ANY_CHAR, max_size=40), max_size=8))
def test_category_invariants(path: list[str]) -> None:
    result = category_tags(path)
    assert_well_formed(result, 5)
    assert all(tag == tag.strip() for tag in tags_of(result))
