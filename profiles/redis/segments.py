"""The shared segmentation model in Redis, merged by every worker without losing updates.

| key | type | holds |
| --- | --- | --- |
| ``rtp:seg:{seg}:model`` | hash | ``v`` model version, ``d`` :meth:`Model.to_bytes` |
| ``rtp:seg:{seg}:standardizer`` | string | :meth:`Standardizer.to_dict` as JSON |

A merge is an optimistic read-modify-write: WATCH both keys, read them, fold the worker's delta
in, and write both in MULTI/EXEC. If another worker wrote in between, EXEC fails and the merge
starts again from the new state (bounded attempts, jittered backoff), so concurrent merges never
overwrite each other's contribution. Everything merged lives in Redis: a restarted worker
loses at most the delta it had not merged yet.

Both keys share the hash tag ``{seg}``, so the WATCH and the MULTI touch one slot on Redis
Cluster too. Before they had the tag they were ``rtp:seg:model`` and ``rtp:seg:standardizer``:
a single-node Redis that still holds only those gets them copied once at the first load.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from profiles.segments.features import Standardizer
from profiles.segments.kmeans import Delta, MiniBatchKMeans, Model

__all__ = ["MODEL_KEY", "STANDARDIZER_KEY", "CentroidStore", "MergeConflictError"]

MODEL_KEY = "rtp:seg:{seg}:model"
STANDARDIZER_KEY = "rtp:seg:{seg}:standardizer"
#: The untagged names of earlier versions (``CentroidStore.load`` adopts them once).
LEGACY_KEYS = {MODEL_KEY: "rtp:seg:model", STANDARDIZER_KEY: "rtp:seg:standardizer"}


class MergeConflictError(RuntimeError):
    """Every attempt of a merge lost the race to another writer."""


def _fold(
    blob: bytes | None,
    std_raw: bytes | None,
    delta: Delta,
    std_delta: Standardizer,
    kmeans: MiniBatchKMeans,
    vectors: np.ndarray,
) -> tuple[Model, Standardizer, bytes | None]:
    """The new model and standardizer, and the model's bytes if anything changed (else None).

    Pure; runs off the event loop: decoding, applying and encoding a large model take ms.
    """
    model = Model.from_bytes(blob) if blob else kmeans.empty()
    std = Standardizer.from_dict(orjson.loads(std_raw)) if std_raw else Standardizer(std_delta.dim)
    changed = std_delta.n > 0
    if changed:
        std = std.merge(std_delta)
    # A delta from before seeding has no rows; it carries nothing to fold in.
    if model.seeded and delta.counts.size and delta.weight > 0:
        model = kmeans.apply(model, delta)
        changed = True
    if len(vectors):
        model = kmeans.seed(model, vectors)
        changed = True
    return model, std, model.to_bytes() if changed else None


class CentroidStore:
    """One worker's handle on the shared model; keeps the latest one it saw in ``model``."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        model_key: str = MODEL_KEY,
        standardizer_key: str = STANDARDIZER_KEY,
        max_attempts: int = 50,
        backoff_s: float = 0.002,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.model_key = model_key
        self.standardizer_key = standardizer_key
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self._rng = rng or random.Random()
        self.model: Model | None = None
        self.standardizer: Standardizer | None = None
        self.conflicts = 0  # merges retried because another writer got there first

    async def load(self) -> Model | None:
        """The stored model (None if there is none yet); also loads the standardizer."""
        await self._adopt_legacy()
        # One MULTI round trip: the model and the standardizer of the same merge.
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hget(self.model_key, "d")
            pipe.get(self.standardizer_key)
            blob, std_raw = await pipe.execute()
        self.standardizer = Standardizer.from_dict(orjson.loads(std_raw)) if std_raw else None
        self.model = Model.from_bytes(blob) if blob else None
        return self.model

    async def refresh(self) -> Model:
        """The latest stored model, fetched only when its version differs from ``self.model``.

        Raises LookupError when Redis has no model and none was loaded or merged before.
        """
        raw = await self.client.hget(self.model_key, "v")
        if raw is not None and (self.model is None or int(raw) != self.model.version):
            await self.load()
        if self.model is None:
            raise LookupError(f"no segmentation model at {self.model_key!r} yet")
        return self.model

    async def merge(
        self,
        delta: Delta,
        std_delta: Standardizer,
        kmeans: MiniBatchKMeans,
        vectors_for_seeding: np.ndarray,
    ) -> Model:
        """Fold a worker's delta, standardizer increment and seeding vectors into the stored
        model atomically; returns the model as written (or as found when nothing changed).

        Raises :class:`MergeConflictError` after ``max_attempts`` lost races.
        """
        vectors = np.asarray(vectors_for_seeding, dtype=np.float64).reshape(-1, kmeans.dim)
        for attempt in range(self.max_attempts):
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(self.model_key, self.standardizer_key)
                    blob, std_raw = await self._read(pipe)
                    model, std, out = await asyncio.to_thread(
                        _fold, blob, std_raw, delta, std_delta, kmeans, vectors
                    )
                    # Leaving the block resets the pipeline, which also drops the WATCH.
                    if out is not None:
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.hset(self.model_key, mapping={"v": model.version, "d": out})
                        pipe.set(self.standardizer_key, orjson.dumps(std.to_dict()))
                        await pipe.execute()
                except WatchError:
                    self.conflicts += 1
                    # Full jitter: racing workers spread out instead of colliding again.
                    cap = self.backoff_s * 2 ** min(attempt, 8)
                    await asyncio.sleep(self._rng.uniform(0.0, cap))
                    continue
            self.model, self.standardizer = model, std
            return model
        raise MergeConflictError(
            f"segment merge lost {self.max_attempts} races in a row on {self.model_key!r}"
        )

    async def _adopt_legacy(self) -> None:
        """Copy the untagged keys of an earlier version to the tagged ones, once.

        ``COPY`` without ``REPLACE`` never overwrites, so two workers starting at once, or a
        merge that already wrote the new keys, are safe. Only a single-node Redis can hold
        the old pair (on a cluster their WATCH failed with CROSSSLOT), so a cluster skips it.
        """
        if (self.model_key, self.standardizer_key) != (MODEL_KEY, STANDARDIZER_KEY):
            return  # keys of a caller's own choosing (tests, benchmarks): nothing to adopt
        if isinstance(self.client, aioredis.RedisCluster):
            return
        if not await self.client.exists(MODEL_KEY):
            for new, old in LEGACY_KEYS.items():
                await self.client.copy(old, new)

    async def _read(self, client: Any) -> tuple[bytes | None, bytes | None]:
        blob = await client.hget(self.model_key, "d")
        std_raw = await client.get(self.standardizer_key)
        return blob, std_raw
