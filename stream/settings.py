"""One frozen settings object, built once from ``RTP_*`` environment variables, passed down.

The model is pydantic-settings: one section per concern (``settings.kafka.broker``,
``settings.recommend.k``, ...), each field tied to its environment variable by :func:`env`.
The variable names are flat (``RTP_BROKER``, not ``RTP_KAFKA__BROKER``) because they are the
project's public interface; :class:`_RtpEnvSource` is the one place that reads them.
``Settings.from_env()`` raises one :class:`SettingsError` that lists every bad variable,
single values and combinations alike. The README's table comes from :func:`settings_table`
(``make settings-doc``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from profiles.core.config import ProfileConfig
from profiles.core.privacy import MIN_SECRET_CHARS
from profiles.experiments.assign import parse_arms
from profiles.redis.client import RedisTLS
from profiles.value.rfm import TIER_NAMES
from stream.security import kafka_problems, redact_url, redis_problems
from stream.tokens import TokenError, parse_entries, read_file
from stream.worker.dead_letters import DeadLetterTooLarge, check_fits


class SettingsError(ValueError):
    """One or more settings are invalid; the message lists each with its variable."""


# -- value types -------------------------------------------------------------------------------


_HOST_PORT = re.compile(r"([^\s/:\[\]]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


def _broker(raw: str) -> str:
    # Faust takes ';' or ',' between URLs, and later ones without the scheme; the tools'
    # aiokafka clients take host:port only: normalise to kafka://a:1;kafka://b:2 for both.
    urls = [u.strip() for u in re.split(r"[;,]", raw) if u.strip()]
    if not urls or not urls[0].startswith("kafka://"):
        raise ValueError("must look like kafka://host:port (several separated by ',' or ';')")
    hosts = [u.removeprefix("kafka://") for u in urls]
    if not all(_HOST_PORT.fullmatch(h) for h in hosts):
        raise ValueError("must look like kafka://host:port (several separated by ',' or ';')")
    return ";".join(f"kafka://{h}" for h in hosts)


def _web_tokens(raw: SecretStr) -> SecretStr:
    parse_entries(raw.get_secret_value(), "entry")  # the error names the entry, never the token
    return SecretStr(raw.get_secret_value().strip())


def _redis_url(raw: SecretStr) -> SecretStr:
    schemes = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
    if not raw.get_secret_value().startswith(schemes):
        raise ValueError(
            "must look like redis://[user:password@]host:port/db, rediss://..., or "
            "redis+cluster://host:port (a Redis Cluster: one node's address)"
        )
    return raw


_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _topic(raw: str) -> str:
    if not raw or len(raw) > 200 or not set(raw) <= _TOPIC_CHARS:
        raise ValueError("must be 1-200 characters of letters, digits, '.', '_' or '-'")
    return raw


def _tiers(raw: str) -> str:
    unknown = [t for t in raw.split(",") if t and t not in TIER_NAMES]
    if unknown:
        raise ValueError(f"unknown value tiers {unknown}; tiers: {', '.join(TIER_NAMES)}")
    return raw


def _date_ms(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw  # already milliseconds (a default or a constructor argument)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError("must be an ISO date such as 2000-01-01") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _device(raw: str) -> str:
    if raw not in {"auto", "cpu"} and not raw.startswith("cuda"):
        raise ValueError("must be auto, cpu, cuda or cuda:N")
    return raw


def _key(raw: SecretStr) -> SecretStr:
    if raw.get_secret_value() and len(raw.get_secret_value()) < MIN_SECRET_CHARS:
        raise ValueError(
            f"must be empty or at least {MIN_SECRET_CHARS} characters (`openssl rand -hex 32`)"
        )
    return raw


def _upper(raw: Any) -> Any:
    return raw.strip().upper() if isinstance(raw, str) else raw


def _lower(raw: Any) -> Any:
    return raw.strip().lower() if isinstance(raw, str) else raw


Positive = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Topic = Annotated[str, AfterValidator(_topic)]
KafkaProtocol = Annotated[
    Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"], BeforeValidator(_upper)
]
Mechanism = Annotated[Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], BeforeValidator(_upper)]
LogLevel = Annotated[
    Literal["debug", "info", "warning", "warn", "error", "critical", "crit"],
    BeforeValidator(_lower),
]

# Faust's `--loglevel` choices for each accepted RTP_LOG_LEVEL.
FAUST_LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARN",
    "warn": "WARN",
    "error": "ERROR",
    "critical": "CRIT",
    "crit": "CRIT",
}


def env(name: str, default: Any, help: str, *, secret: bool = False, shown: str = "") -> Any:
    """A setting read from the environment variable ``name``, documented by ``help``.

    ``secret`` keeps the raw value out of error messages; ``shown`` replaces the default in
    the README table where the stored form is not what a user writes.
    """
    extra: dict[str, str | bool] = {"env": name, "secret": secret, "shown": shown}
    return Field(default, description=help, json_schema_extra=extra)  # type: ignore[arg-type]


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _no_secret(value: SecretStr) -> bool:
    return not value.get_secret_value()


# -- sections ----------------------------------------------------------------------------------


class KafkaSettings(Section):
    app_id: Topic = env(
        "RTP_APP_ID", "profiles", "Faust app id: consumer group and internal topic prefix."
    )
    broker: Annotated[str, AfterValidator(_broker)] = env(
        "RTP_BROKER",
        "kafka://127.0.0.1:9092",
        "Kafka bootstrap URL(s), `kafka://host:port`, several separated by `,` or `;`.",
    )
    partitions: Positive = env("RTP_PARTITIONS", 4, "Partitions of the internal topics.")
    session_timeout_s: PositiveFloat = env("RTP_SESSION_TIMEOUT_S", 10.0, "Kafka group session.")
    security_protocol: KafkaProtocol = env(
        "RTP_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "Kafka security: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS).",
    )
    sasl_mechanism: Mechanism = env(
        "RTP_KAFKA_SASL_MECHANISM",
        "PLAIN",
        "SASL mechanism (SASL_* protocols): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
    )
    username: str = env("RTP_KAFKA_USERNAME", "", "SASL user (SASL_* protocols).")
    password: SecretStr = env(
        "RTP_KAFKA_PASSWORD",
        SecretStr(""),
        "SASL password (SASL_* protocols); never logged.",
        secret=True,
    )
    ca_file: str = env(
        "RTP_KAFKA_CA_FILE",
        "",
        "PEM CA bundle that signed the brokers' certificates (SSL, SASL_SSL); empty: the "
        "system's trust store.",
    )
    cert_file: str = env(
        "RTP_KAFKA_CERT_FILE", "", "Client certificate (PEM) for brokers that require mutual TLS."
    )
    key_file: str = env(
        "RTP_KAFKA_KEY_FILE",
        "",
        "Private key (PEM) of RTP_KAFKA_CERT_FILE; empty: inside the certificate file.",
    )
    key_password: SecretStr = env(
        "RTP_KAFKA_KEY_PASSWORD",
        SecretStr(""),
        "Password of an encrypted RTP_KAFKA_KEY_FILE; never logged.",
        secret=True,
    )

    @model_validator(mode="after")
    def _combinations(self) -> KafkaSettings:
        problems = kafka_problems(self)  # SASL without a password, TLS files without TLS, ...
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def broker_hosts(self) -> list[str]:
        """``host:port`` strings for plain aiokafka clients."""
        return [u.removeprefix("kafka://") for u in self.broker.split(";")]


class TopicSettings(Section):
    input: Topic = env(
        "RTP_INPUT_TOPIC", "site-events", "Topic the site-tracking producers write to."
    )
    routed: Topic = env(
        "RTP_ROUTED_TOPIC", "profiles-routed", "Internal topic: validated events by user."
    )
    profile: Topic = env(
        "RTP_PROFILE_TOPIC", "profile-updated", "Output: `profile_updated` events."
    )
    dlq: Topic = env(
        "RTP_DLQ_TOPIC", "site-events-dlq", "Output: dead letters with reason headers."
    )
    segment: Topic = env(
        "RTP_SEGMENT_TOPIC", "segment-changed", "Output: `segment_changed` events."
    )
    churn: Topic = env("RTP_CHURN_TOPIC", "churn-risk", "Output: `churn_risk` events.")
    recs: Topic = env("RTP_RECS_TOPIC", "recommendations", "Output: `recommendation` events.")
    value: Topic = env("RTP_VALUE_TOPIC", "value-changed", "Output: `value_changed` events.")
    sentiment: Topic = env(
        "RTP_SENTIMENT_TOPIC", "negative-reviews", "Output: `negative_review` alerts."
    )
    risk: Topic = env("RTP_RISK_TOPIC", "risk-flags", "Output: `risk_flag` events.")
    audience: Topic = env(
        "RTP_AUDIENCE_TOPIC", "audience-changed", "Output: `audience_changed` events."
    )
    merged: Topic = env(
        "RTP_MERGED_TOPIC",
        "profile-merged",
        "Output: `profile_merged` events (identity stitching: an anonymous profile merged).",
    )
    input_partitions: Positive = env(
        "RTP_INPUT_PARTITIONS",
        4,
        "Partitions of the input topic when `stream topics create` makes it.",
    )
    output_partitions: Annotated[int, Field(ge=0)] = env(
        "RTP_OUTPUT_PARTITIONS",
        0,
        "Partitions of the user-keyed output topics; 0: RTP_PARTITIONS. Kept when the owner "
        "partitions grow (`stream partitions grow`), so consumers keep each user's order.",
    )
    replication: Positive = env(
        "RTP_TOPIC_REPLICATION",
        1,
        "Replication factor of every topic the project creates (3 in production).",
    )
    min_insync: Positive = env(
        "RTP_TOPIC_MIN_INSYNC", 1, "`min.insync.replicas` of those topics (2 with replication 3)."
    )
    retention_hours: PositiveFloat = env(
        "RTP_TOPIC_RETENTION_HOURS",
        168.0,
        "Retention of the input, routed and dead-letter topics (user-keyed outputs compact).",
    )

    @model_validator(mode="after")
    def _insync(self) -> TopicSettings:
        if self.min_insync > self.replication:
            raise ValueError(
                f"RTP_TOPIC_MIN_INSYNC={self.min_insync} exceeds RTP_TOPIC_REPLICATION="
                f"{self.replication}: the broker would refuse every write"
            )
        return self


class RedisSettings(Section):
    url: Annotated[SecretStr, AfterValidator(_redis_url)] = env(
        "RTP_REDIS_URL",
        SecretStr("redis://127.0.0.1:6379/0"),
        "Redis URL (user, password, TLS via rediss://, Redis Cluster via redis+cluster://); "
        "never logged with its password.",
    )
    ca_file: str = env(
        "RTP_REDIS_CA_FILE",
        "",
        "PEM CA bundle that signed Redis's certificate (rediss:// URLs); empty: the system's "
        "trust store.",
    )
    cert_file: str = env(
        "RTP_REDIS_CERT_FILE",
        "",
        "Client certificate (PEM) for a Redis that requires mutual TLS (`tls-auth-clients`).",
    )
    key_file: str = env(
        "RTP_REDIS_KEY_FILE",
        "",
        "Private key (PEM, unencrypted) of RTP_REDIS_CERT_FILE; empty: inside the certificate.",
    )
    wait_replicas: Annotated[int, Field(ge=0)] = env(
        "RTP_REDIS_WAIT_REPLICAS",
        0,
        "Replicas that must hold each commit (WAIT) before its offsets count as done; 1 on a "
        "Redis Cluster or replicated Redis makes a failover lose nothing (README).",
    )
    wait_ms: Positive = env(
        "RTP_REDIS_WAIT_MS",
        1000,
        "How long a commit waits for RTP_REDIS_WAIT_REPLICAS; past it the batch is retried.",
    )

    @model_validator(mode="after")
    def _combinations(self) -> RedisSettings:
        problems = redis_problems(self.url.get_secret_value(), self.tls)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def tls(self) -> RedisTLS:
        """The TLS files for ``rediss://`` clients (:mod:`profiles.redis.client`)."""
        return RedisTLS(self.ca_file, self.cert_file, self.key_file)


class IngestSettings(Section):
    consumer: Literal["batch", "faust"] = env(
        "RTP_INGEST_CONSUMER",
        "batch",
        "batch: the input read in batches by its own consumer group (`<app id>-ingest`), "
        "off Faust's per-message path; faust: a Faust agent, as before.",
    )
    paused: bool = env(
        "RTP_INGEST_PAUSED",
        False,
        "Drain mode: apply the routed bundles but read no input (before `stream partitions grow`).",
    )
    batch_max: Positive = env("RTP_BATCH_MAX", 2000, "Most input messages per batch.")
    batch_within_s: PositiveFloat = env(
        "RTP_BATCH_WITHIN",
        0.05,
        "Seconds to wait to fill a batch; also the longest a fetch waits at the broker.",
    )
    bundle_max: Positive = env("RTP_BUNDLE_MAX", 64, "Most routed bundles per update batch.")
    update_chunk: Positive = env(
        "RTP_UPDATE_CHUNK",
        4000,
        "Events applied per Redis round trip: a bigger update batch is applied in parts "
        "(each user in one part), so that none holds the event loop for long.",
    )
    max_future_s: NonNegative = env("RTP_MAX_FUTURE_S", 300.0, "Tolerated clock skew ahead.")
    earliest_ms: Annotated[int, BeforeValidator(_date_ms)] = env(
        "RTP_EARLIEST",
        946_684_800_000,  # 2000-01-01
        "Events before this date are rejected.",
        shown="2000-01-01",
    )
    max_message_bytes: Positive = env("RTP_MAX_MESSAGE_BYTES", 65536, "Larger messages go to DLQ.")
    registry_framing: Literal["off", "accept"] = env(
        "RTP_REGISTRY_FRAMING",
        "off",
        "off, or accept: values in the schema-registry wire format (byte 0, schema id, JSON).",
    )
    max_request_bytes: Positive = env(
        "RTP_MAX_REQUEST_BYTES",
        1_000_000,
        "Producer's largest request (Faust `producer_max_request_size`); keep it at or below the "
        "broker's `message.max.bytes`. Must hold the largest dead letter (checked at start).",
    )

    @model_validator(mode="after")
    def _dead_letters_fit(self) -> IngestSettings:
        try:
            check_fits(self.max_message_bytes, self.max_request_bytes)
        except DeadLetterTooLarge as exc:
            raise ValueError(str(exc)) from exc
        return self


class ProfileSettings(Section):
    half_life_days: PositiveFloat = env("RTP_HALF_LIFE_DAYS", 30.0, "Half-life of tag interest.")
    lateness_s: NonNegative = env("RTP_LATENESS_S", 7 * 86400.0, "Allowed out-of-order lateness.")
    top_tags: Positive = env("RTP_TOP_TAGS", 50, "Tags kept per profile.")
    cache_users: Positive = env("RTP_CACHE_USERS", 20_000, "Profiles cached in worker memory.")


class EncoderSettings(Section):
    model: str = env("RTP_MODEL", "", "Encoder model directory or id; empty = all-MiniLM-L6-v2.")
    device: Annotated[str, AfterValidator(_device)] = env(
        "RTP_DEVICE", "auto", "Encoder device: auto, cpu, cuda, cuda:N."
    )
    batch: Positive = env("RTP_ENCODE_BATCH", 256, "Texts per model call.")
    max_tokens: Positive = env("RTP_MAX_TOKENS", 64, "Truncate texts to this many tokens.")
    vector_cache: Positive = env("RTP_VECTOR_CACHE", 200_000, "Text vectors cached in memory.")


class EmbeddingSettings(Section):
    enabled: bool = env("RTP_EMBEDDINGS", True, "Encode texts and keep embedding profiles.")
    emit_vector: bool = env(
        "RTP_EMIT_VECTOR", False, "Put the long-term vector in profile_updated."
    )
    short_half_life_min: PositiveFloat = env(
        "RTP_SHORT_HALF_LIFE_MIN", 30.0, "Half-life of the short-term (session) vector, minutes."
    )
    interests: Positive = env("RTP_INTERESTS", 5, "Interest vectors kept per user.")
    text_channel: bool = env(
        "RTP_TEXT_CHANNEL",
        True,
        "Mix a hashed word channel into vectors of texts the model cannot read (see README).",
    )
    vector_storage: Literal["f16", "i8", "f32"] = env(
        "RTP_VECTOR_STORAGE",
        "f32",
        "How profile vectors are stored: f32 (default: replay equals live), f16 (~45% less "
        "Redis memory; decisions near a threshold may depend on reloads), i8; every format loads.",
    )


class SegmentSettings(Section):
    enabled: bool = env("RTP_SEGMENTS", True, "Online segmentation (needs RTP_EMBEDDINGS).")
    k: Positive = env("RTP_SEGMENTS_K", 8, "Number of segments (k of k-means).")
    sync_s: PositiveFloat = env(
        "RTP_SEGMENT_SYNC_S",
        5.0,
        "Seconds between merges of a worker's statistics into the shared model.",
    )
    margin: NonNegative = env(
        "RTP_SEGMENT_MARGIN",
        0.1,
        "Hysteresis: move a user only if the new centre is this much closer.",
    )
    seed_users: Positive = env(
        "RTP_SEGMENT_SEED_USERS",
        1000,
        "Users seen before the first centres are seeded (k-means++).",
    )


class ChurnSettings(Section):
    enabled: bool = env("RTP_CHURN", True, "Churn risk: scores, sweep and `churn_risk` events.")
    clock: Literal["wall", "event"] = env(
        "RTP_CHURN_CLOCK",
        "wall",
        "Sweep time: `wall` (live) or `event` (latest event time seen: replays, back-tests).",
    )
    sweep_s: PositiveFloat = env("RTP_CHURN_SWEEP_S", 10.0, "Seconds between sweeps.")
    fit_s: PositiveFloat = env(
        "RTP_CHURN_FIT_S",
        600.0,
        "Seconds between refits of the population model (one worker fits, under a lock).",
    )
    horizon_days: PositiveFloat = env(
        "RTP_CHURN_HORIZON_DAYS", 30.0, "Churn risk = P(no purchase within this many days)."
    )


class ValueSettings(Section):
    enabled: bool = env(
        "RTP_VALUE",
        True,
        "Customer value: Gamma-Gamma spend, expected value, RFM tiers, `value_changed` events "
        "(fitted by the churn refit: needs RTP_CHURN).",
    )
    horizon_days: PositiveFloat = env(
        "RTP_VALUE_HORIZON_DAYS",
        365.0,
        "Expected purchases and value over this many days (90 days are always given too).",
    )
    margin: Annotated[float, Field(ge=0, le=1)] = env(
        "RTP_VALUE_MARGIN",
        0.1,
        "Hysteresis: an RFM score moves only when its value passes a cut by this fraction of it.",
    )


class SentimentSettings(Section):
    enabled: bool = env(
        "RTP_SENTIMENT",
        True,
        "Review sentiment from the text (VADER for English, a hashed linear head for Chinese): "
        "per user and per product, `negative_review` alerts.",
    )
    half_life_days: PositiveFloat = env(
        "RTP_SENTIMENT_HALF_LIFE_DAYS", 90.0, "Half-life of a user's decayed review sentiment."
    )
    item_half_life_days: PositiveFloat = env(
        "RTP_SENTIMENT_ITEM_HALF_LIFE_DAYS",
        30.0,
        "Half-life of a product's decayed review sentiment (event time).",
    )
    polar: Annotated[float, Field(gt=0, lt=1)] = env(
        "RTP_SENTIMENT_POLAR",
        0.3,
        "A review scoring at or below minus this is negative, at or above it positive.",
    )
    alert_score: Annotated[float, Field(ge=-1, lt=0)] = env(
        "RTP_SENTIMENT_ALERT_SCORE",
        -0.6,
        "`negative_review` for a review scoring at or below this from a valuable customer.",
    )
    alert_tiers: Annotated[str, AfterValidator(_tiers)] = env(
        "RTP_SENTIMENT_ALERT_TIERS",
        "champions,loyal,cannot_lose",
        "Valuable customers: these value tiers (comma-separated; RTP_VALUE) ...",
    )
    alert_min_spend: NonNegative = env(
        "RTP_SENTIMENT_ALERT_MIN_SPEND",
        500.0,
        "... or at least this much spent so far (0: every reviewer is valuable).",
    )


class RiskSettings(Section):
    enabled: bool = env(
        "RTP_RISK",
        True,
        "Risk flags: velocity and pattern rules and an anomaly score per user in event time, "
        "`risk_flag` events.",
    )
    exclude: Literal["none", "low", "medium", "high"] = env(
        "RTP_RISK_EXCLUDE",
        "none",
        "Users with an open risk flag of at least this severity get no recommendations and "
        "are in no audience (`none`: no one is left out).",
    )


class AudienceSettings(Section):
    enabled: bool = env(
        "RTP_AUDIENCES",
        True,
        "Audiences: membership of the applied rules, sweeps, `audience_changed` events, export.",
    )
    sweep_s: PositiveFloat = env(
        "RTP_AUDIENCE_SWEEP_S",
        10.0,
        "Seconds between audience sweeps; each also picks up newly applied definitions.",
    )
    require_consent: bool = env(
        "RTP_AUDIENCE_REQUIRE_CONSENT",
        False,
        "Only users whose latest `consent` was true are in audiences (opt-in); "
        "otherwise only `consent: false` keeps a user out (opt-out).",
    )
    snapshot_ttl_s: Positive = env(
        "RTP_AUDIENCE_SNAPSHOT_TTL_S",
        600,
        "Seconds an export snapshot (a frozen copy of an audience's members) is kept.",
    )
    dp_budget: PositiveFloat = env(
        "RTP_AUDIENCE_DP_BUDGET",
        1.0,
        "Total epsilon the noisy counts of one audience may spend per report name.",
    )


class RecommendSettings(Section):
    enabled: bool = env(
        "RTP_RECOMMEND",
        True,
        "Recommendations: item index, `recommendation` events, pull API (needs RTP_EMBEDDINGS).",
    )
    k: Positive = env("RTP_RECS_K", 10, "Items per recommendation list.")
    interval_s: NonNegative = env(
        "RTP_RECS_INTERVAL_S",
        600.0,
        "At most one list per user per this many seconds of event time.",
    )
    shift: NonNegative = env(
        "RTP_RECS_SHIFT",
        0.1,
        "Recompute when the long-term vector moved this far (cosine distance) since the last.",
    )
    w_vector: NonNegative = env("RTP_RECS_W_VECTOR", 0.6, "Blend weight: cosine.")
    w_tags: NonNegative = env("RTP_RECS_W_TAGS", 0.3, "Blend weight: tag Jaccard.")
    w_popularity: NonNegative = env("RTP_RECS_W_POPULARITY", 0.1, "Blend weight: popularity.")
    diversity: Annotated[float, Field(ge=0, le=1)] = env(
        "RTP_RECS_DIVERSITY",
        0.3,
        "0 = plain top k by score; 1 = spread evenly over the user's interests.",
    )
    popularity_half_life_days: PositiveFloat = env(
        "RTP_POPULARITY_HALF_LIFE_DAYS", 7.0, "Half-life of item popularity (event time)."
    )
    catalog_poll_s: PositiveFloat = env(
        "RTP_CATALOG_POLL_S",
        1.0,
        "Seconds between reads of catalog changes and popularity into the worker's index.",
    )


class ExperimentSettings(Section):
    name: str = env(
        "RTP_EXPERIMENT",
        "",
        "Experiment name, also the salt of the arm hash (empty: no experiment). Users are "
        "assigned to arms by a hash of it and their id; a new name reshuffles everyone.",
    )
    arms: str = env(
        "RTP_EXPERIMENT_ARMS",
        "treatment:0.9,holdout:0.1",
        "Arms and their shares (`name:share,...`, summing to 1). Arms named `holdout...` get "
        "no personal recommendations (what they get instead: RTP_EXPERIMENT_HOLDOUT).",
    )
    control: Literal["none", "popular"] = env(
        "RTP_EXPERIMENT_HOLDOUT",
        "none",
        "What holdout arms are shown: `none` (no pushed or pulled list; what they would have "
        "got is kept for attribution) or `popular` (the popularity list a cold user gets, "
        "pushed and pulled, marked `control: popular`; conversions count against it), to "
        "measure personalisation against popularity rather than against nothing.",
    )
    window_s: PositiveFloat = env(
        "RTP_ATTRIBUTION_WINDOW_S",
        7 * 86400.0,
        "A purchase of an item recommended to the user at most this long before (event time) "
        "counts as a conversion of that recommendation, once.",
    )

    @model_validator(mode="after")
    def _arms(self) -> ExperimentSettings:
        if self.name and not re.match(r"^[A-Za-z0-9_.-]{1,64}$", self.name):
            raise ValueError(f"RTP_EXPERIMENT={self.name!r}: use 1-64 of [A-Za-z0-9_.-]")
        try:
            parse_arms(self.arms)
        except ValueError as exc:
            raise ValueError(f"RTP_EXPERIMENT_ARMS: {exc}") from None
        return self


class TogetherSettings(Section):
    enabled: bool = env(
        "RTP_TOGETHER",
        True,
        "Frequently bought together: co-purchase and co-view counts per item pair, "
        "`/items/{id}/bought-together`, `rules`, complements in the recommendation blend.",
    )
    half_life_days: PositiveFloat = env(
        "RTP_TOGETHER_HALF_LIFE_DAYS", 30.0, "Half-life of the pair counts (event time)."
    )
    max_items: Annotated[int, Field(ge=2)] = env(
        "RTP_TOGETHER_MAX_ITEMS",
        20,
        "Distinct items of a session counted per kind (bought, viewed); later ones add no pairs.",
    )
    session_gap_s: PositiveFloat = env(
        "RTP_TOGETHER_SESSION_GAP_S",
        1800.0,
        "Events without a `session_id` belong to one session while less than this apart.",
    )
    views: bool = env(
        "RTP_TOGETHER_VIEWS",
        True,
        "Count co-views (clicks, carts) too; about 99% of the pair updates on typical traffic.",
    )
    neighbours: Positive = env(
        "RTP_TOGETHER_NEIGHBOURS",
        50,
        "Neighbours kept per item and kind (the largest co-counts; the rest are trimmed).",
    )
    min_count: NonNegative = env(
        "RTP_TOGETHER_MIN_COUNT",
        2.0,
        "Support floor: pairs seen together in fewer (decayed) sessions are not scored.",
    )
    cache_s: NonNegative = env(
        "RTP_TOGETHER_CACHE_S",
        60.0,
        "Seconds a worker keeps an item's neighbours and the marginals for the blend (0: read "
        "them for every batch with purchases).",
    )
    w_recs: NonNegative = env(
        "RTP_TOGETHER_W_RECS",
        0.3,
        "Blend weight of complements (after a purchase: its items' pairs, by lift); 0: off.",
    )


class PrivacySettings(Section):
    pseudonymize: bool = env(
        "RTP_PSEUDONYMIZE",
        False,
        "Replace user ids by keyed hashes (HMAC-SHA256) at ingestion; needs RTP_PSEUDONYM_KEY.",
    )
    pseudonym_key: Annotated[SecretStr, AfterValidator(_key)] = env(
        "RTP_PSEUDONYM_KEY",
        SecretStr(""),
        "Secret of the keyed hashes (pseudonyms, erasure markers, receipts); empty: markers use "
        "a random secret kept in Redis. Same on every worker; never change it once data exists.",
        secret=True,
    )
    identify_traits: str = env(
        "RTP_IDENTIFY_TRAITS",
        "",
        "Comma-separated identify traits kept as profile attributes (identity stitching); "
        "others are dropped. Empty: none.",
    )
    identify_pii: bool = env(
        "RTP_IDENTIFY_PII",
        False,
        "Keep personal traits (email, phone, name, address, ...) when listed in "
        "RTP_IDENTIFY_TRAITS; hashed when RTP_PSEUDONYMIZE is on. Off: never stored.",
    )

    @property
    def kept_traits(self) -> frozenset[str]:
        """RTP_IDENTIFY_TRAITS as a set of names."""
        return frozenset(n.strip() for n in self.identify_traits.split(",") if n.strip())

    @model_validator(mode="after")
    def _key_needed(self) -> PrivacySettings:
        if self.pseudonymize and _no_secret(self.pseudonym_key):
            raise ValueError(
                "RTP_PSEUDONYMIZE=true needs RTP_PSEUDONYM_KEY, the secret of the pseudonyms "
                f"(at least {MIN_SECRET_CHARS} characters)"
            )
        return self

    @property
    def key(self) -> str:
        """The pseudonym secret in clear, for the hashing code only."""
        return self.pseudonym_key.get_secret_value()


class WebSettings(Section):
    port: Positive = env("RTP_WEB_PORT", 6066, "Worker HTTP port (API, health, metrics).")
    host: str = env(
        "RTP_WEB_HOST", "127.0.0.1", "Worker HTTP bind address (0.0.0.0 in containers)."
    )
    tokens: Annotated[SecretStr, AfterValidator(_web_tokens)] = env(
        "RTP_WEB_TOKENS",
        SecretStr(""),
        "API bearer tokens, comma-separated: `TOKEN` (read scope) or `read+ops:TOKEN`; "
        "never logged.",
        secret=True,
    )
    tokens_file: str = env(
        "RTP_WEB_TOKENS_FILE",
        "",
        "File of API tokens, one entry a line (`#` comments); re-read when it changes.",
    )
    open: bool = env(
        "RTP_WEB_OPEN",
        False,
        "No API authentication at all (a laptop); without it and without tokens the API is closed.",
    )
    open_ops: bool = env(
        "RTP_WEB_OPEN_OPS",
        True,
        "`/health` and `/metrics` without a token; false: they need the `ops` scope.",
    )

    @model_validator(mode="after")
    def _tokens(self) -> WebSettings:
        problems = []
        if self.tokens_file:
            try:
                read_file(self.tokens_file)
            except TokenError as exc:
                problems.append(f"RTP_WEB_TOKENS_FILE: {exc}")
        if self.open and (self.tokens.get_secret_value() or self.tokens_file):
            problems.append(
                "RTP_WEB_OPEN=true turns authentication off, yet RTP_WEB_TOKENS(_FILE) is set: "
                "unset one of them"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def token_list(self) -> str:
        """The inline tokens in clear, for the token checker only."""
        return self.tokens.get_secret_value()


class WorkerSettings(Section):
    log_level: LogLevel = env(
        "RTP_LOG_LEVEL",
        "info",
        "Worker log level: debug, info, warning, error or critical (`-l` on the command line "
        "wins).",
    )
    data_dir: str = env(
        "RTP_DATA_DIR", ".dev/faust", "Faust's local data directory (no state is kept there)."
    )
    crash_exit_s: NonNegative = env(
        "RTP_CRASH_EXIT_S",
        30.0,
        "Exit (status 70) when an agent or service stays crashed this long; 0 = never.",
    )


class DevSettings(Section):
    dir: str = env(
        "RTP_DEV_DIR",
        ".dev",
        "Local services (`python -m stream dev`, the demo): pid files, logs and Redis data. "
        "Their ports are those of RTP_BROKER and RTP_REDIS_URL.",
    )


# -- the model ---------------------------------------------------------------------------------

_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("rtp_env", default=None)


class Settings(BaseSettings):
    """Everything the worker and the tools need; immutable once built.

    ``Settings()`` reads the process environment; ``Settings.from_env(mapping)`` another
    mapping and turns validation errors into one :class:`SettingsError`.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    profiles: ProfileSettings = Field(default_factory=ProfileSettings)
    encoder: EncoderSettings = Field(default_factory=EncoderSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    segments: SegmentSettings = Field(default_factory=SegmentSettings)
    churn: ChurnSettings = Field(default_factory=ChurnSettings)
    value: ValueSettings = Field(default_factory=ValueSettings)
    sentiment: SentimentSettings = Field(default_factory=SentimentSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    audiences: AudienceSettings = Field(default_factory=AudienceSettings)
    recommend: RecommendSettings = Field(default_factory=RecommendSettings)
    together: TogetherSettings = Field(default_factory=TogetherSettings)
    experiment: ExperimentSettings = Field(default_factory=ExperimentSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    web: WebSettings = Field(default_factory=WebSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    dev: DevSettings = Field(default_factory=DevSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _RtpEnvSource(settings_cls))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``RTP_*`` variable; raise one :class:`SettingsError` listing all problems."""
        source = os.environ if env is None else env
        token = _ENV.set(source)
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsError(_describe(exc, source)) from None
        finally:
            _ENV.reset(token)

    @model_validator(mode="after")
    def _needs(self) -> Settings:
        x = self.experiment
        if (
            x.name
            and x.control == "popular"
            and not (self.embedding.enabled and self.recommend.enabled)
        ):
            raise ValueError(
                "RTP_EXPERIMENT_HOLDOUT=popular needs recommendations (RTP_EMBEDDINGS and "
                "RTP_RECOMMEND on): the control list comes from their item index"
            )
        return self

    def replace(self, section: str, **changes: Any) -> Settings:
        """A copy with some fields of one section changed (validated again)."""
        current: Section = getattr(self, section)
        updated = type(current).model_validate({**current.model_dump(), **changes})
        return self.model_copy(update={section: updated})

    @property
    def profile(self) -> ProfileConfig:
        """The profile maths settings, derived from the ``profiles`` section."""
        p = self.profiles
        return ProfileConfig(
            half_life_ms=int(p.half_life_days * 86_400_000),
            lateness_ms=int(p.lateness_s * 1000),
            top_tags=p.top_tags,
        )


class _RtpEnvSource(PydanticBaseSettingsSource):
    """The one reader of ``RTP_*`` variables: flat names into their sections."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads whole sections

    def __call__(self) -> dict[str, Any]:
        source = _ENV.get()
        if source is None:
            source = os.environ
        values: dict[str, dict[str, str]] = {}
        for section, name, info in _fields():
            raw = source.get(_extra(info)["env"])
            if raw is not None:
                values.setdefault(section, {})[name] = raw
        return values


def _fields() -> Iterator[tuple[str, str, FieldInfo]]:
    """(section, field name, field) of every setting, in table order."""
    for section, outer in Settings.model_fields.items():
        model = outer.default_factory
        assert isinstance(model, type) and issubclass(model, Section)
        for name, info in model.model_fields.items():
            yield section, name, info


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    assert isinstance(extra, dict)
    return extra


def _describe(exc: ValidationError, source: Mapping[str, str]) -> str:
    by_loc = {(section, name): info for section, name, info in _fields()}
    problems: list[str] = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = tuple(str(part) for part in error["loc"][:2])
        info = by_loc.get((loc[0], loc[1])) if len(loc) == 2 else None
        if info is None:  # a section's own check: its lines already name their variables
            problems.extend(message.splitlines())
            continue
        name = _extra(info)["env"]
        raw = source.get(name, "")
        shown = "<secret>" if _extra(info)["secret"] else repr(redact_url(raw))
        problems.append(f"{name}={shown}: {message}")
    return "invalid settings:\n  " + "\n  ".join(problems)


def settings_table() -> str:
    """Markdown table of every setting with its default, for the README."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for _, _, info in _fields():
        extra = _extra(info)
        default = info.default
        if isinstance(default, SecretStr):
            default = redact_url(default.get_secret_value())
        rows.append(f"| `{extra['env']}` | `{extra['shown'] or default}` | {info.description} |")
    return "\n".join(rows)


def env_paths() -> dict[str, tuple[str, str]]:
    """Every ``RTP_*`` variable the settings read, in table order: its (section, field)."""
    return {_extra(info)["env"]: (section, name) for section, name, info in _fields()}


def value_of(settings: Settings, name: str) -> Any:
    """The value behind the variable ``name`` (a secret in clear: for tests and tools)."""
    section, field = env_paths()[name]
    value = getattr(getattr(settings, section), field)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def faust_argv(argv: list[str], level: str) -> list[str]:
    """``argv`` for Faust's command line with ``RTP_LOG_LEVEL`` as ``--loglevel`` for the
    ``worker`` command (the tools keep Faust's quiet default), unless ``-l`` names a level."""
    named = any(a in ("-l", "--loglevel") or a.startswith("--loglevel=") for a in argv[1:])
    if named or "worker" not in argv[1:]:
        return argv
    return [argv[0], f"--loglevel={FAUST_LEVELS[level]}", *argv[1:]]


TABLE_START = "<!-- settings table: generated by `python -m stream.settings README.md` -->"
TABLE_END = "<!-- end of settings table -->"


def with_table(readme: str) -> str:
    """``readme`` with the text between the table markers replaced by :func:`settings_table`."""
    head, start, rest = readme.partition(TABLE_START)
    _, end, tail = rest.partition(TABLE_END)
    if not start or not end:
        raise ValueError(f"the settings table markers are missing: {TABLE_START} ... {TABLE_END}")
    return f"{head}{TABLE_START}\n{settings_table()}\n{TABLE_END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """``python -m stream.settings [README.md]``: print the table, or rewrite it in the file."""
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stdout.write(settings_table() + "\n")
        return 0
    path = Path(args[0])
    path.write_text(with_table(path.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
