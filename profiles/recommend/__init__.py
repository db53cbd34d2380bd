"""Recommendations: an in-memory item index, blended candidates and a throttle policy.

* :mod:`profiles.recommend.index`: catalog items as unit vectors in one float32 matrix (cosine
  top-k by one matrix product), a tag inverted index, and rolling popularity by event time.
* :mod:`profiles.recommend.blend`: candidates from the user's interest and long-term vectors and
  from shared tags, one blended score, purchased/discontinued items excluded, diversity across
  interests, popularity for cold-start users.
* :mod:`profiles.recommend.throttle`: when a user's list is worth recomputing.

Everything here is pure (no Redis, no Kafka); the worker persists and publishes.
"""

from profiles.recommend.blend import BlendConfig, Recommendation, recommend
from profiles.recommend.index import Item, ItemIndex
from profiles.recommend.throttle import interest_shift, should_recommend

__all__ = [
    "BlendConfig",
    "Item",
    "ItemIndex",
    "Recommendation",
    "interest_shift",
    "recommend",
    "should_recommend",
]
