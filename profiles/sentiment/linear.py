"""A linear sentiment head over hashed text features, for Chinese reviews.

Features are the hashed text channel's (:func:`profiles.embedding.channel.features`: Han
character unigrams and bigrams, lower-cased Latin/digit words), hashed with ``zlib.crc32``
onto :data:`BUCKETS` weights; the score is ``tanh(logit / 2)`` (that is ``2 p - 1`` for the
logistic probability ``p``), so it lies in ``(-1, 1)`` like VADER's compound score. The
weights ship in ``zh.npz`` (float16, trained by ``python -m stream.evaluation.sentiment
--train``); a text without features scores 0.

>>> head = LinearHead.bundled()
>>> head.score("质量很好，物流也快，非常满意") > 0.3
True
>>> head.score("太差了，用了两天就坏了，退货") < -0.3
True
>>> head.score("")
0.0
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from profiles.embedding.channel import features

__all__ = ["BUCKETS", "LinearHead", "hashed"]

#: Weights per head: 2**17 float16 (256 KB); collisions cost under half a point of accuracy.
BUCKETS = 1 << 17
SEED = 0x5E47_0001
BUNDLED = Path(__file__).with_name("zh.npz")


def hashed(text: str) -> tuple[list[int], list[float]]:
    """Bucket ids and weights of ``text``'s features (weights scaled to unit length).

    >>> ids, w = hashed("好评")
    >>> len(ids), round(sum(x * x for x in w), 6)
    (3, 1.0)
    """
    pairs = features(text)
    if not pairs:
        return [], []
    norm = math.sqrt(sum(w * w for _, w in pairs))
    ids = [zlib.crc32(f.encode("utf-8"), SEED) % BUCKETS for f, _ in pairs]
    return ids, [w / norm for _, w in pairs]


class LinearHead:
    def __init__(self, weights: npt.NDArray[np.float32], bias: float) -> None:
        self.weights = weights
        self.bias = bias

    @classmethod
    def bundled(cls, path: Path = BUNDLED) -> LinearHead:
        with np.load(path) as data:
            return cls(data["weights"].astype(np.float32), float(data["bias"]))

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path, weights=self.weights.astype(np.float16), bias=np.float32(self.bias)
        )

    def logit(self, text: str) -> float | None:
        ids, w = hashed(text)
        if not ids:
            return None
        return self.bias + float(np.dot(self.weights[ids], np.asarray(w, dtype=np.float32)))

    def score(self, text: str) -> float:
        z = self.logit(text)
        return 0.0 if z is None else math.tanh(z / 2.0)
