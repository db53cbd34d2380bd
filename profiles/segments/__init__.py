"""Online user segmentation: distributed mini-batch k-means with stable segment ids.

Pure estimators (:mod:`.features`, :mod:`.kmeans`, :mod:`.matching`, :mod:`.hysteresis`,
:mod:`.summary`) and the shared centroid store in Redis (:mod:`.store`).
"""

from profiles.segments.features import (
    BEHAVIOUR_FEATURES,
    FeatureConfig,
    Standardizer,
    behaviour_vector,
    behaviour_vector_of,
    clustering_vectors,
)
from profiles.segments.hysteresis import choose, choose_many
from profiles.segments.kmeans import Delta, MiniBatchKMeans, Model
from profiles.segments.matching import stable_ids

__all__ = [
    "BEHAVIOUR_FEATURES",
    "Delta",
    "FeatureConfig",
    "MiniBatchKMeans",
    "Model",
    "Standardizer",
    "behaviour_vector",
    "behaviour_vector_of",
    "choose",
    "choose_many",
    "clustering_vectors",
    "stable_ids",
]
