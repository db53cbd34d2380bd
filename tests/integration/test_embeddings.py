"""Embedding profiles through the real worker, the real model and the real Redis."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import redis.asyncio as aioredis

from profiles.embedding.channel import ChannelEncoder
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile
from profiles.embedding.text import item_text
from profiles.encoder.encoder import Encoder, EncoderConfig
from profiles.redis import keys
from tests.integration.harness import Names, Worker, produce, read_topic
from tests.integration.oracle import eventually

pytestmark = pytest.mark.integration
START = 1_767_225_600_000
#: The worker's default vectors: the bundled model with the hashed text channel.
MODEL_ID = "all-MiniLM-L6-v2+hc1"


def event(n: int, kind: str, user: str, **fields: object) -> dict[str, object]:
    return {
        "event_id": f"{user}-{n}",
        "type": kind,
        "schema_version": 1,
        "user_id": user,
        "ts": START + n * 1000,
        **fields,
    }


async def test_vectors_are_stored_with_the_model_id_and_match_the_encoder(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    title, category = "Stainless Steel Espresso Machine", ["Home", "Kitchen", "Coffee"]
    product = {
        "event_id": "cat-1",
        "type": "product",
        "schema_version": 1,
        "user_id": "catalog",
        "ts": START,
        "product_id": "p-espresso",
        "title": title,
        "category": category,
        "price": 199.0,
        "currency": "USD",
    }
    await produce(brokers, names.input, [product])
    await eventually(lambda: _exists(redis_client, keys.item("p-espresso")))
    # The click carries only the product id: title and vector come from the catalog.
    await produce(
        brokers,
        names.input,
        [
            event(1, "click", "dora", product_id="p-espresso"),
            event(2, "search", "eve", query="咖啡机 家用"),
        ],
    )
    await eventually(lambda: _field(redis_client, keys.profile("eve"), "e"))
    await eventually(lambda: _field(redis_client, keys.profile("dora"), "e"))

    # The worker's default: the text channel mixed into the bundled model's vectors.
    plain = Encoder(EncoderConfig())
    encoder = ChannelEncoder(plain)
    config = EmbeddingConfig(encoder.model_id, encoder.dim)
    reference = encoder.encode([item_text(title, category), "咖啡机 家用"])
    # The Chinese query is mostly [UNK] to the model, so the channel changed its vector.
    assert float(np.dot(reference[1], plain.encode(["咖啡机 家用"])[0])) < 0.9
    for user, row in (("dora", 0), ("eve", 1)):
        blob = await redis_client.hget(keys.profile(user), "e")
        profile, changed = EmbeddingProfile.load(blob, config)
        assert not changed and profile.model_id == MODEL_ID
        vector = profile.long_term()
        assert vector is not None and vector.shape == (384,)
        assert float(np.dot(vector, reference[row])) >= 0.999

    stats = await worker.stats()
    assert stats["encoder"]["model"] == MODEL_ID
    assert stats["encoder"]["cache_hits"] + stats["encoder"]["tier_hits"] >= 1  # click reused it
    status, body = await worker.get("/users/dora")
    assert status == 200 and body["embedding"]["model"] == MODEL_ID

    out = await read_topic(brokers, names.profiles, lambda got: any(m.key == b"eve" for m in got))
    eve = [orjson.loads(m.value) for m in out if m.key == b"eve" and m.value]
    assert eve[-1]["model"] == MODEL_ID


async def _exists(client: aioredis.Redis, key: str) -> bool:
    return bool(await client.exists(key))


async def _field(client: aioredis.Redis, key: str, name: str) -> bool:
    return await client.hget(key, name) is not None
