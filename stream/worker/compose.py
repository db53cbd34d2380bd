"""The composition root: every collaborator of the update stage, built whole from settings.

The worker's runtime calls :func:`load_models` once Redis answers, then
:func:`build_updater`; the benchmarks and tests that need the worker's pipeline call the
same functions, so no wiring is copied. Loading the model takes seconds and runs in a
thread; everything else here is cheap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from profiles.audiences.definitions import AudienceBook
from profiles.churn.sweeper import ChurnSweeper
from profiles.churn.tracker import ChurnTracker
from profiles.core.profile import Profile
from profiles.embedding.cache import EmbeddingCache, TextEncoder
from profiles.embedding.channel import ChannelEncoder
from profiles.embedding.embedder import Embedder
from profiles.embedding.profile import EmbeddingConfig
from profiles.encoder.encoder import Encoder, EncoderConfig
from profiles.experiments.assign import parse_arms
from profiles.experiments.feature import ExperimentConfig
from profiles.pipeline.builtin import builtin_features
from profiles.pipeline.store import ProfileStore
from profiles.pipeline.updater import BatchUpdater, LruCache
from profiles.recommend.blend import BlendConfig
from profiles.recommend.index import DAY_MS, ItemIndex
from profiles.recommend.mirror import ItemMirror
from profiles.recommend.recommender import Recommender, RecsConfig
from profiles.redis.catalog import RedisCatalog
from profiles.redis.churn import RedisChurnStore
from profiles.redis.segments import CentroidStore
from profiles.redis.store import RedisStore
from profiles.redis.tier import RedisVectorTier
from profiles.redis.together import RedisTogether
from profiles.redis.value import RedisValueStore
from profiles.risk.detector import RiskDetector
from profiles.segments.features import BEHAVIOUR_FEATURES, FeatureConfig
from profiles.segments.kmeans import MiniBatchKMeans
from profiles.segments.segmenter import Segmenter
from profiles.sentiment.feature import SentimentFeature
from profiles.sentiment.scorer import SentimentScorer
from profiles.tags.event_tags import TextTagger
from profiles.tags.extractor import TagExtractor
from profiles.together.complements import ComplementCache
from profiles.together.feature import TogetherFeature
from profiles.together.session import SessionConfig
from profiles.value.refit import ValuePopulation
from profiles.value.scorer import ValueScorer
from stream.settings import Settings

log = logging.getLogger(__name__)


def encoder_from(settings: Settings) -> Encoder:
    """The text encoder the settings name (loads the model: seconds)."""
    return Encoder(
        EncoderConfig(
            model=settings.encoder.model,
            device=settings.encoder.device,
            max_length=settings.encoder.max_tokens,
            batch_size=settings.encoder.batch,
        )
    )


def embedding_config(settings: Settings, model_id: str, dim: int) -> EmbeddingConfig:
    """How profile vectors learn, for vectors of ``model_id`` with ``dim`` components."""
    s = settings
    return EmbeddingConfig(
        model_id=model_id,
        dim=dim,
        long_half_life_ms=s.profile.half_life_ms,
        short_half_life_ms=int(s.embedding.short_half_life_min * 60_000),
        interests=s.embedding.interests,
        storage=s.embedding.vector_storage,
    )


def load_embedder(settings: Settings, tier: RedisVectorTier | None) -> Embedder:
    """Load the model (seconds: call it in a thread) and wire the two-tier vector cache, as
    the worker does (the re-embedding command too, so both name vectors alike)."""
    s = settings
    encoder = encoder_from(s)
    # The channel wraps the encoder below the cache, so every consumer of text vectors
    # (profiles, interests, segments, the item index) gets the same mixed vectors, under
    # the mixed model id.
    vectors: TextEncoder = ChannelEncoder(encoder) if s.embedding.text_channel else encoder
    cache = EmbeddingCache(vectors, capacity=s.encoder.vector_cache, tier=tier)
    log.info(
        "encoder %s (dim %d, %s, %s, pooling %s)",
        vectors.model_id,
        encoder.dim,
        encoder.device,
        encoder.dtype,
        encoder.pooling,
    )
    return Embedder(cache, embedding_config(s, vectors.model_id, encoder.dim))


def segmenter_for(settings: Settings, client: aioredis.Redis, dim: int) -> Segmenter:
    """The online k-means over ``dim``-wide vectors plus the behaviour features."""
    s = settings
    # A small reservoir: the model blob (rewritten at every merge) stays ~1 MiB.
    kmeans = MiniBatchKMeans(
        s.segments.k, dim + len(BEHAVIOUR_FEATURES), forgetting=0.01, reservoir=500
    )
    return Segmenter(
        kmeans,
        CentroidStore(client),
        FeatureConfig(),
        margin=s.segments.margin,
        seed_after_users=s.segments.seed_users,
    )


def recommendations_for(
    settings: Settings, client: aioredis.Redis, embedder: Embedder, tagger: TagExtractor
) -> tuple[ItemMirror, Recommender]:
    """The item index with the catalog follower that fills it, and the recommender over it
    (the mirror is empty until :meth:`ItemMirror.load`)."""
    s = settings
    device = str(getattr(embedder.cache.encoder, "device", "cpu"))
    index = ItemIndex(
        embedder.config.dim,
        device=device,
        popularity_half_life_ms=int(s.recommend.popularity_half_life_days * DAY_MS),
    )
    mirror = ItemMirror(
        index,
        RedisCatalog(client),
        embedder,
        tagger,
        s.kafka.partitions,
        popularity_every=max(1, round(10.0 / s.recommend.catalog_poll_s)),
    )
    paired = s.together.enabled and s.together.w_recs > 0
    blend = BlendConfig(
        k=s.recommend.k,
        w_vector=s.recommend.w_vector,
        w_tags=s.recommend.w_tags,
        w_popularity=s.recommend.w_popularity,
        w_together=s.together.w_recs if paired else 0.0,
        diversity=s.recommend.diversity,
    )
    cache = complement_cache(settings, client) if paired else None
    recommender = Recommender(
        index,
        RecsConfig(blend, int(s.recommend.interval_s * 1000), s.recommend.shift),
        s.profile.half_life_ms,
        embedder.config,
        lock=mirror.lock,
        complements=cache,
    )
    return mirror, recommender


def together_reader(settings: Settings, client: aioredis.Redis) -> RedisTogether:
    """Reads of the pair counts (the API, the rules command, the blend's cache)."""
    half_life = int(settings.together.half_life_days * DAY_MS)
    return RedisTogether(client, settings.kafka.partitions, half_life)


def complement_cache(settings: Settings, client: aioredis.Redis) -> ComplementCache:
    reader = together_reader(settings, client)
    s = settings.together
    return ComplementCache(reader, s.min_count, k=settings.recommend.k, ttl_s=s.cache_s)


def together_feature(settings: Settings, models: Models) -> TogetherFeature | None:
    """Pair counting (RTP_TOGETHER); the complements cache when the blend uses it."""
    s = settings.together
    if not s.enabled:
        return None
    recommender = models.recommender
    cache = None if recommender is None else recommender.complements
    return TogetherFeature(
        SessionConfig(s.max_items, int(s.session_gap_s * 1000), s.views),
        settings.kafka.partitions,
        int(s.half_life_days * DAY_MS),
        s.neighbours,
        cache,
    )


@dataclass(slots=True)
class Models:
    """What exists only once the model is loaded; all None while it is not (or is off)."""

    embedder: Embedder | None = None
    segmenter: Segmenter | None = None
    mirror: ItemMirror | None = None
    recommender: Recommender | None = None
    tier: RedisVectorTier | None = None  # the vector cache's Redis tier (its own connection)

    def close(self) -> None:
        if self.tier is not None:
            self.tier.close()


async def load_models(settings: Settings, client: aioredis.Redis, tagger: TagExtractor) -> Models:
    """Load the model in a thread and start what needs it: the segmenter (its centroids from
    Redis) and the item index (the stored catalog), as the settings enable them."""
    models = Models()
    if not settings.embedding.enabled:
        return models
    url = settings.redis.url.get_secret_value()
    models.tier = RedisVectorTier(url, tls=settings.redis.tls)
    try:
        models.embedder = await asyncio.to_thread(load_embedder, settings, models.tier)
        if settings.segments.enabled:
            models.segmenter = segmenter_for(settings, client, models.embedder.config.dim)
            await models.segmenter.start()
        if settings.recommend.enabled:
            models.mirror, models.recommender = recommendations_for(
                settings, client, models.embedder, tagger
            )
            await models.mirror.load()
    except BaseException:
        models.close()  # the caller retries (Redis down at start): no tier connection left behind
        raise
    return models


def value_scorer(settings: Settings, churn: ChurnTracker | None) -> ValueScorer | None:
    """Customer value (RTP_VALUE), reading the churn tracker's BG/NBD fit for purchases."""
    if not settings.value.enabled:
        return None
    return ValueScorer(
        horizons_days=(90.0, settings.value.horizon_days),
        margin=settings.value.margin,
        bgnbd=(lambda: None) if churn is None else (lambda: churn.params),
    )


def churn_sweeper(
    settings: Settings,
    store: RedisStore,
    churn: ChurnTracker,
    value: ValueScorer | None,
    cached: Callable[[str], Profile | None],
) -> ChurnSweeper:
    """The churn sweep and refit (the customer value model refitted with it), for a worker
    and for ``python -m stream churn fit``."""
    companions = () if value is None else (ValuePopulation(value, RedisValueStore(store.client)),)
    return ChurnSweeper(
        churn, RedisChurnStore(store.client), store, cached, settings.kafka.partitions, companions
    )


def sentiment_feature(settings: Settings) -> SentimentFeature | None:
    """Review sentiment (RTP_SENTIMENT): VADER and the bundled Chinese head, both in memory."""
    s = settings.sentiment
    if not s.enabled:
        return None
    return SentimentFeature(
        SentimentScorer(),
        settings.kafka.partitions,
        half_life_ms=int(s.half_life_days * 86_400_000),
        item_half_life_ms=int(s.item_half_life_days * 86_400_000),
        polar=s.polar,
        alert_score=s.alert_score,
        alert_tiers=[t for t in s.alert_tiers.split(",") if t],
        alert_min_spend=s.alert_min_spend,
    )


def risk_detector(settings: Settings, value: ValueScorer | None) -> RiskDetector | None:
    """Risk flags (RTP_RISK); order amounts are judged against the value model's population
    mean spend per order once it is fitted."""
    if not settings.risk.enabled:
        return None
    return RiskDetector(
        population=lambda: None if value is None else population_order_value(value),
        half_life_ms=settings.profile.half_life_ms,
    )


def population_order_value(value: ValueScorer) -> float | None:
    """The Gamma-Gamma population mean spend per order, ``p v / (q - 1)`` (None: not fitted)."""
    gg = None if value.fit is None else value.fit.gg
    if gg is None or gg.q <= 1:
        return None
    return gg.p * gg.v / (gg.q - 1)


def experiment_config(settings: Settings) -> ExperimentConfig | None:
    """The running experiment (None: RTP_EXPERIMENT is empty); arms named ``holdout...``
    get no personal lists (RTP_EXPERIMENT_HOLDOUT says what instead)."""
    s = settings.experiment
    if not s.name:
        return None
    arms = parse_arms(s.arms)
    held = tuple(name for name, _ in arms if name.startswith("holdout"))
    return ExperimentConfig(s.name, arms, held, int(s.window_s * 1000), s.control)


def build_updater(
    settings: Settings,
    store: ProfileStore,
    tagger: TextTagger,
    models: Models,
    churn: ChurnTracker | None,
    cache: LruCache[Profile] | None = None,
    value: ValueScorer | None = None,
    audiences: AudienceBook | None = None,
) -> BatchUpdater:
    """The batch updater with every enabled feature the loaded ``models`` allow."""
    features = builtin_features(
        partitions=settings.kafka.partitions,
        embedder=models.embedder,
        emit_vector=settings.embedding.emit_vector,
        segmenter=models.segmenter,
        churn=churn,
        recommender=models.recommender,
        config=settings.profile,
        value=value,
        sentiment=sentiment_feature(settings),
        risk=risk_detector(settings, value),
        exclude_flagged=settings.risk.exclude,
        audiences=audiences,
        together=together_feature(settings, models),
        experiment=experiment_config(settings),
    )
    return BatchUpdater(
        store,
        settings.profile,
        tagger,
        features,
        cache_users=settings.profiles.cache_users,
        cache=cache,
    )
