"""Any sentence-transformers directory loads as the model defines it.

Small random-weight BERT models with a Chinese vocabulary are built here and saved by
sentence-transformers itself, in its own directory format; the sentence-transformers package
encoding the same directory is the reference computation.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from profiles.encoder.encoder import Encoder, EncoderConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    *"猫粮砂跑步鞋茶叶耐克红色绿乌龙查询文档女男款：:",
    "red",
    "shoes",
    "tea",
    "green",
    "cat",
]
TEXTS = [
    "猫粮",
    "红色 女款 跑步鞋",
    "绿茶 茶叶",
    "耐克 跑步鞋 red shoes",
    "Green Tea",
    "乌龙茶 " * 20,  # longer than max_seq_length: truncated the same way
    "cat 猫砂",
]
HIDDEN = 32


def _modules() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from sentence_transformers.sentence_transformer import modules
    return modules


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("bert-zh")
    (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(d / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


def build(
    bert_dir: Path,
    out: Path,
    pooling: str,
    dense: int | None = None,
    prompts: dict[str, str] | None = None,
    default_prompt: str | None = None,
) -> tuple[Path, Any]:
    """Save a sentence-transformers model dir; return it and the loaded reference model."""
    from sentence_transformers import SentenceTransformer

    m = _modules()
    torch.manual_seed(1)
    layers: list[Any] = [
        m.Transformer(str(bert_dir), max_seq_length=16),
        m.Pooling(HIDDEN, pooling),
    ]
    if dense is not None:
        layers.append(m.Dense(HIDDEN, dense))
    layers.append(m.Normalize())
    model = SentenceTransformer(
        modules=layers, prompts=prompts, default_prompt_name=default_prompt, device="cpu"
    )
    model.save(str(out))
    return out, SentenceTransformer(str(out), device="cpu", local_files_only=True)


def reference(st: Any, texts: list[str], **kwargs: Any) -> np.ndarray:
    vecs = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True, **kwargs)
    return np.asarray(vecs, dtype=np.float32)


def assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_cls_pooling_dense_layer_and_default_prompt(bert_dir: Path, tmp_path: Path) -> None:
    out, st = build(
        bert_dir,
        tmp_path / "zh-cls-dense",
        "cls",
        dense=16,
        prompts={"query": "查询：", "document": ""},
        default_prompt="query",
    )
    enc = Encoder(EncoderConfig(model=str(out), device="cpu"))
    assert (enc.pooling, enc.dim, enc.max_length) == ("cls", 16, 16)
    assert enc.prompt_name == "query" and enc.model_id.endswith(":query")
    assert_close(enc.encode(TEXTS), reference(st, TEXTS))
    # Another of the model's prompts, and none at all: other vectors, other ids.
    doc = Encoder(EncoderConfig(model=str(out), device="cpu", prompt_name="document"))
    assert_close(doc.encode(TEXTS), reference(st, TEXTS, prompt_name="document"))
    bare = Encoder(EncoderConfig(model=str(out), device="cpu", prompt_name="none"))
    assert_close(bare.encode(TEXTS), reference(st, TEXTS, prompt=""))
    # The empty "document" prompt gives the same vectors as none, under the same id.
    assert doc.prompt == "" and doc.model_id == bare.model_id != enc.model_id
    with pytest.raises(ValueError, match="declares no prompt 'passage'"):
        Encoder(EncoderConfig(model=str(out), device="cpu", prompt_name="passage"))


@pytest.mark.parametrize(
    ("pooling", "dense"),
    [
        ("mean", None),
        ("max", None),
        ("lasttoken", None),
        ("weightedmean", None),
        # sum/sqrt(n) differs from the mean only in scale, which a Dense tanh does see.
        ("mean_sqrt_len_tokens", 8),
        ("mean", 8),
    ],
)
def test_pooling_modes_match_sentence_transformers(
    bert_dir: Path, tmp_path: Path, pooling: str, dense: int | None
) -> None:
    out, st = build(bert_dir, tmp_path / f"zh-{pooling}", pooling, dense=dense)
    enc = Encoder(EncoderConfig(model=str(out), device="cpu", batch_size=3))
    assert enc.pooling == pooling and enc.dim == (dense or HIDDEN)
    assert_close(enc.encode(TEXTS), reference(st, TEXTS))


def test_dense_weights_change_the_model_id(bert_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    a, _ = build(bert_dir, tmp_path / "a" / "zh", "cls", dense=16)
    b, _ = build(bert_dir, tmp_path / "b" / "zh", "cls", dense=16)
    id_a = Encoder(EncoderConfig(model=str(a), device="cpu")).model_id
    assert Encoder(EncoderConfig(model=str(b), device="cpu")).model_id == id_a
    weights = b / "2_Dense" / "model.safetensors"
    state = load_file(str(weights))
    state["linear.weight"] = state["linear.weight"] * 2
    save_file(state, str(weights))
    assert Encoder(EncoderConfig(model=str(b), device="cpu")).model_id != id_a


def test_unsupported_modules_are_clear_errors(bert_dir: Path, tmp_path: Path) -> None:
    out, _ = build(bert_dir, tmp_path / "zh-odd", "cls", dense=16)
    modules = json.loads((out / "modules.json").read_text())
    modules.insert(
        2,
        {"idx": 9, "name": "9", "path": "9_LayerNorm", "type": "sentence_transformers.LayerNorm"},
    )
    (out / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="module 'LayerNorm' is not supported"):
        Encoder(EncoderConfig(model=str(out), device="cpu"))

    out2, _ = build(bert_dir, tmp_path / "zh-act", "cls", dense=16)
    cfg_file = out2 / "2_Dense" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["activation_function"] = "os.system"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"activation 'os\.system' is not supported"):
        Encoder(EncoderConfig(model=str(out2), device="cpu"))


def test_legacy_max_seq_length_file_is_honoured(bert_dir: Path, tmp_path: Path) -> None:
    out, _ = build(bert_dir, tmp_path / "zh-legacy", "mean")
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 6, "do_lower_case": True})
    )
    enc = Encoder(EncoderConfig(model=str(out), device="cpu"))
    assert enc.max_length == 6
    # Lower-casing is done before tokenising, so these two texts are one vector.
    a, b = enc.encode(["GREEN TEA", "green tea"])
    assert np.array_equal(a, b)
