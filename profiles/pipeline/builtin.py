"""The built-in features, in the order the updater runs them, and their field codecs.

Order matters: vectors first (the encoder call and the per-event learning), then
segments (they read the vectors), churn, customer value, review sentiment (its alerts read the
value tier), risk flags, audiences (they read all of these), and recommendations last (they
read the segment of this batch, and may skip users with open risk flags). A new feature is
one package with a :class:`Feature`; it joins here and, if it stores fields, in :data:`CODECS`.
"""

from __future__ import annotations

import functools

from profiles.audiences.definitions import AudienceBook
from profiles.audiences.feature import AudienceFeature, AudienceFields
from profiles.churn.feature import ChurnFeature, ChurnFields
from profiles.churn.tracker import ChurnTracker
from profiles.core.config import ProfileConfig
from profiles.core.profile import Profile
from profiles.embedding.embedder import Embedder
from profiles.embedding.feature import EmbeddingFeature, EmbeddingFields
from profiles.experiments.feature import ExperimentConfig, ExperimentFeature, ExperimentFields
from profiles.pipeline.feature import Feature, Fields
from profiles.recommend.feature import RecommendFeature, RecsFields
from profiles.recommend.recommender import Recommender
from profiles.risk.detector import RiskDetector, open_flags
from profiles.risk.feature import RiskFeature, RiskFields
from profiles.segments.feature import SegmentFields, SegmentsFeature
from profiles.segments.segmenter import Segmenter
from profiles.sentiment.feature import SentimentFeature, SentimentFields
from profiles.together.feature import TogetherFeature, TogetherFields
from profiles.value.feature import ValueFeature, ValueFields
from profiles.value.scorer import ValueScorer

#: Every built-in field codec, enabled or not: stores read (and keep) all of them, so a
#: feature switched off leaves its fields as they were. Stored order: e, s, c, r, rv, cv, sn,
#: rk, au, tg, xp.
CODECS: tuple[Fields, ...] = (
    EmbeddingFields(),
    SegmentFields(),
    ChurnFields(),
    RecsFields(),
    ValueFields(),
    SentimentFields(),
    RiskFields(),
    AudienceFields(),
    TogetherFields(),
    ExperimentFields(),
)


def builtin_features(
    *,
    partitions: int,
    embedder: Embedder | None = None,
    emit_vector: bool = False,
    segmenter: Segmenter | None = None,
    churn: ChurnTracker | None = None,
    recommender: Recommender | None = None,
    config: ProfileConfig | None = None,
    value: ValueScorer | None = None,
    sentiment: SentimentFeature | None = None,
    risk: RiskDetector | None = None,
    exclude_flagged: str = "none",
    audiences: AudienceBook | None = None,
    together: TogetherFeature | None = None,
    experiment: ExperimentConfig | None = None,
) -> list[Feature]:
    """The enabled built-in features. Churn is always on: with ``churn=None`` it keeps only
    the customer index, so turning scoring on later finds every customer. Users with an open
    risk flag of at least severity ``exclude_flagged`` get no recommendations ("none": all do)."""
    features: list[Feature] = []
    if embedder is not None:
        features.append(EmbeddingFeature(embedder, emit_vector))
    if segmenter is not None:
        features.append(SegmentsFeature(segmenter))
    features.append(ChurnFeature(churn, partitions))
    if value is not None:
        features.append(ValueFeature(value, partitions))
    if sentiment is not None:
        features.append(sentiment)
    if risk is not None:
        features.append(RiskFeature(risk))
    if audiences is not None:
        features.append(AudienceFeature(audiences, partitions))
    if together is not None:  # before recommendations: their complements read this batch's
        features.append(together)
    model = embedder.config.model_id if embedder is not None else ""
    if recommender is not None:
        weights = dict((config or ProfileConfig()).kind_weights)  # what counts as popular
        skip = None if exclude_flagged == "none" else functools.partial(flagged, exclude_flagged)
        features.append(RecommendFeature(recommender, weights, partitions, model, skip))
    if experiment is not None:  # after recommendations: it holds back or labels their lists
        popular = None if recommender is None else recommender.popular_many
        features.append(ExperimentFeature(experiment, partitions, popular, model))
    return features


def flagged(at_least: str, profile: Profile) -> bool:
    """``profile`` has an open risk flag of at least severity ``at_least``."""
    return bool(open_flags(profile, at_least))
