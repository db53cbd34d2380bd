"""The API's view of stored vectors reads every stored format (float32 JSON and compact)."""

from __future__ import annotations

import numpy as np
import pytest

from profiles.core.profile import Profile
from profiles.embedding.codec import FORMATS, Format
from profiles.embedding.profile import EmbeddingConfig, EmbeddingProfile
from stream.worker.web import _embedding_view


@pytest.mark.parametrize("storage", FORMATS)
def test_view_of_a_stored_blob_names_model_dim_and_interests(storage: Format) -> None:
    emb = EmbeddingProfile(EmbeddingConfig("m", 8))
    emb.learn_one(np.eye(8)[0], 1.0, 1, [("tea", 1.0)])
    emb.learn_one(np.eye(8)[1], 1.0, 2, [("shoes", 1.0)])
    profile = Profile("u1")
    profile.embedding_blob = emb.to_bytes(storage)
    assert _embedding_view(profile) == {"model": "m", "dim": 8, "interests": 2}
