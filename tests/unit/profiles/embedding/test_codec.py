"""Stored embedding formats (profiles.embedding.codec): old blobs load, compact ones agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from profiles.embedding.codec import FORMATS, Format, blob_format, pack, unpack
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile

DATA = Path(__file__).resolve().parents[3] / "data"
#: Written by the float32 encoder before the compact formats existed (24 dims, 4 interests).
OLD_BLOB = (DATA / "embedding_v1.json").read_bytes()
#: What that encoder's decoder read from it: vectors, weights, counts, tags.
OLD_EXPECTED = orjson.loads((DATA / "embedding_v1.expected.json").read_bytes())


def config(storage: Format = "f16") -> EmbeddingConfig:
    return EmbeddingConfig("fixture-model", 24, storage=storage)


def cos(a: np.ndarray | None, b: np.ndarray | None) -> float:
    assert a is not None and b is not None
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def profile(seed: int = 3, dim: int = 24, events: int = 60) -> EmbeddingProfile:
    p = EmbeddingProfile(EmbeddingConfig("m", dim))
    rng = np.random.default_rng(seed)
    bases = rng.standard_normal((4, dim))
    for i in range(events):
        vec = bases[i % 4] + 0.4 * rng.standard_normal(dim)
        p.learn_one(vec, 1.0 + i % 5, 1_767_225_600_000 + i * 600_000, [(f"t{i % 6}", 1.0)])
    return p


@pytest.mark.parametrize("storage", FORMATS)
def test_old_float32_blob_loads_whatever_the_configured_format(storage: Format) -> None:
    assert blob_format(OLD_BLOB) == "f32"
    loaded, changed = EmbeddingProfile.load(OLD_BLOB, config(storage))
    assert not changed
    np.testing.assert_array_equal(loaded.long_term(), np.array(OLD_EXPECTED["long"], np.float32))
    np.testing.assert_array_equal(loaded.short_term(), np.array(OLD_EXPECTED["short"], np.float32))
    assert loaded.long.weight() == OLD_EXPECTED["long_weight"]
    interests = loaded.interest_list()
    assert len(interests) == len(OLD_EXPECTED["interests"]) == 4
    for got, (vector, weight, events, last_ts, tags) in zip(
        interests, OLD_EXPECTED["interests"], strict=True
    ):
        np.testing.assert_array_equal(got.vector, np.array(vector, np.float32))
        assert (got.weight, got.events, got.last_ts) == (weight, events, last_ts)
        assert [list(t) for t in got.tags] == tags


def test_the_float32_writer_is_the_old_encoder_byte_for_byte() -> None:
    loaded, _ = EmbeddingProfile.load(OLD_BLOB, config())
    assert loaded.to_bytes("f32") == OLD_BLOB


def test_an_old_profile_is_rewritten_compactly_and_keeps_its_directions() -> None:
    loaded, _ = EmbeddingProfile.load(OLD_BLOB, config("f16"))
    blob = loaded.to_bytes()
    assert blob_format(blob) == "f16" and len(blob) < len(OLD_BLOB)
    again, changed = EmbeddingProfile.load(blob, config("f16"))
    assert not changed
    assert cos(again.long_term(), loaded.long_term()) > 0.99999
    for a, b in zip(again.interest_list(), loaded.interest_list(), strict=True):
        assert cos(a.vector, b.vector) > 0.99999
        assert (a.weight, a.events, a.tags) == (b.weight, b.events, b.tags)


@pytest.mark.parametrize(("storage", "floor"), [("f16", 0.99999), ("i8", 0.9995)])
def test_compact_round_trip_is_close_to_float32(storage: Format, floor: float) -> None:
    p = profile(dim=384)
    ref, _ = EmbeddingProfile.load(p.to_bytes("f32"), EmbeddingConfig("m", 384))
    got, _ = EmbeddingProfile.load(p.to_bytes(storage), EmbeddingConfig("m", 384))
    assert blob_format(p.to_bytes(storage)) == storage
    assert cos(got.long_term(), ref.long_term()) > floor
    assert cos(got.short_term(), ref.short_term()) > floor
    assert got.long.total == ref.long.total and got.long.ts == ref.long.ts
    assert len(got.interest_list()) == len(ref.interest_list())


def test_sizes_per_vector() -> None:
    p = profile(dim=384)
    sizes = {f: len(p.to_bytes(f)) for f in FORMATS}
    vectors = 2 + len(p.interests)
    # float32 base64: 2048 characters a vector; f16: 8 + 768 bytes; i8: 8 + 384 bytes.
    assert sizes["f32"] - sizes["f16"] >= vectors * (2048 - 776) - 200
    assert sizes["f16"] - sizes["i8"] == vectors * 384


def test_scale_keeps_sums_far_outside_float16_and_float32_range() -> None:
    v = np.array([3.0, -1.0, 0.5, 0.0])
    for magnitude in (1e-200, 1e-30, 1.0, 1e7, 1e200):
        for fmt in ("f16", "i8"):
            meta, rows = unpack(pack(lambda vec, m=magnitude: {"s": vec(v * m)}, 4, fmt))
            back = rows[meta["s"]]
            assert np.isfinite(back).all()
            assert cos(back / magnitude, v) > 0.9999
            assert abs(float(np.max(np.abs(back))) / (3.0 * magnitude) - 1.0) < 1e-12


def test_zero_and_absent_vectors() -> None:
    meta, rows = unpack(pack(lambda vec: {"z": vec(np.zeros(3)), "n": None}, 3, "f16"))
    assert rows[meta["z"]].tolist() == [0.0, 0.0, 0.0] and meta["n"] is None
    empty = EmbeddingProfile(EmbeddingConfig("m", 8))
    for fmt in FORMATS:
        back, _ = EmbeddingProfile.load(empty.to_bytes(fmt), EmbeddingConfig("m", 8))
        assert back.long_term() is None and back.interest_list() == []


def test_model_is_read_from_every_format_and_another_model_is_discarded() -> None:
    p = profile()
    for fmt in FORMATS:
        blob = p.to_bytes(fmt)
        assert EmbeddingProfile.stored_model(blob) == ("m", 24)
        _, changed = EmbeddingProfile.load(blob, EmbeddingConfig("other", 24))
        assert changed


def test_unknown_format_is_an_error_not_a_silent_reset() -> None:
    with pytest.raises(ValueError, match="unknown embedding blob format"):
        blob_format(b"\x09rest")


def test_rounding_is_unbiased_so_small_updates_are_not_lost() -> None:
    # A stored component grows by far less than a float16 step at every write: nearest
    # rounding would keep it where it is forever; stochastic rounding moves it on average.
    start, step, writes = 0.7, 5e-5, 4000  # a tenth of a step (nearest: never moves)
    value = start
    for i in range(writes):
        meta, rows = unpack(
            pack(lambda vec, x=value, n=i: {"s": vec(np.array([x + step, 1.0])), "i": n}, 2, "f16")
        )
        value = float(rows[meta["s"]][0])
    assert abs((value - start) / (writes * step) - 1.0) < 0.15
    assert blob_format(pack(lambda vec: {"s": vec(np.ones(2))}, 2, "f16")) == "f16"


def test_a_heavy_user_written_after_every_event_keeps_float32_directions() -> None:
    rng = np.random.default_rng(11)
    dim, config = 384, EmbeddingConfig("m", 384)
    items = rng.standard_normal((40, dim)) + 0.5  # shared bias, as real text vectors have
    ref, stored = EmbeddingProfile(config), EmbeddingProfile(config)
    for i in range(4000):
        vec, w, ts = items[rng.integers(40)], float(rng.choice([1, 1, 1, 3, 5])), i * 1_000_000
        ref.learn_one(vec, w, ts, [])
        stored.learn_one(vec, w, ts, [])
        stored, _ = EmbeddingProfile.load(stored.to_bytes("f16"), config)
    assert cos(stored.long_term(), ref.long_term()) > 0.9999
    for a, b in zip(stored.interest_list(), ref.interest_list(), strict=True):
        assert cos(a.vector, b.vector) > 0.9999


def test_the_same_state_always_stores_the_same_bytes() -> None:
    p = profile(dim=384)
    assert p.to_bytes("f16") == p.to_bytes("f16") and p.to_bytes("i8") == p.to_bytes("i8")
