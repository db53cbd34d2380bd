"""One frozen settings object, built once from environment variables, passed down.

Every setting has an ``RTP_`` environment variable; ``Settings.from_env()`` parses
and validates them all and raises :class:`SettingsError` naming every bad one.
The README's settings table is generated from :data:`FIELDS` (``make settings-doc``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from profiles.core.config import ProfileConfig
from profiles.core.privacy import MIN_SECRET_CHARS
from profiles.redis.client import RedisTLS
from stream.security import MECHANISMS, PROTOCOLS, redact_url, redact_value, settings_problems


class SettingsError(ValueError):
    """One or more settings are invalid; the message lists each with its fix."""


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError("must be zero or a positive number")
    return value


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be one of true/false/1/0/yes/no")


def _broker(raw: str) -> str:
    urls = [u.strip() for u in raw.split(";") if u.strip()]
    if not urls or not all(u.startswith("kafka://") for u in urls):
        raise ValueError("must look like kafka://host:port (several separated by ';')")
    return ";".join(urls)


def _redis_url(raw: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must look like redis://[user:password@]host:port/db or rediss://...")
    return raw


def _topic(raw: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not raw or len(raw) > 200 or not set(raw) <= allowed:
        raise ValueError("must be 1-200 characters of letters, digits, '.', '_' or '-'")
    return raw


def _date_ms(raw: str) -> int:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError("must be an ISO date such as 2000-01-01") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _clock(raw: str) -> str:
    if raw not in {"wall", "event"}:
        raise ValueError("must be wall or event")
    return raw


def _unit_interval(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be a number from 0 to 1")
    return value


def _device(raw: str) -> str:
    if raw not in {"auto", "cpu"} and not raw.startswith("cuda"):
        raise ValueError("must be auto, cpu, cuda or cuda:N")
    return raw


def _secret(raw: str) -> str:
    if raw and len(raw) < MIN_SECRET_CHARS:
        raise ValueError(
            f"must be empty or at least {MIN_SECRET_CHARS} characters (`openssl rand -hex 32`)"
        )
    return raw


def _kafka_protocol(raw: str) -> str:
    value = raw.strip().upper()
    if value not in PROTOCOLS:
        raise ValueError(f"must be one of {', '.join(PROTOCOLS)}")
    return value


def _sasl_mechanism(raw: str) -> str:
    value = raw.strip().upper()
    if value not in MECHANISMS:
        raise ValueError(f"must be one of {', '.join(MECHANISMS)}")
    return value


@dataclass(frozen=True)
class Field:
    """How one setting is read from the environment and documented."""

    env: str
    attr: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False  # never echoed in error messages


FIELDS: tuple[Field, ...] = (
    Field(
        "RTP_APP_ID", "app_id", _topic, "Faust app id: consumer group and internal topic prefix."
    ),
    Field("RTP_BROKER", "broker", _broker, "Kafka bootstrap URL(s), `kafka://host:port`."),
    Field(
        "RTP_REDIS_URL", "redis_url", _redis_url, "Redis URL (user, password, TLS via rediss://)."
    ),
    Field("RTP_INPUT_TOPIC", "input_topic", _topic, "Topic the site-tracking producers write to."),
    Field("RTP_ROUTED_TOPIC", "routed_topic", _topic, "Internal topic: validated events by user."),
    Field("RTP_PROFILE_TOPIC", "profile_topic", _topic, "Output: `profile_updated` events."),
    Field("RTP_DLQ_TOPIC", "dlq_topic", _topic, "Output: dead letters with reason headers."),
    Field("RTP_PARTITIONS", "partitions", _positive_int, "Partitions of the internal topics."),
    Field("RTP_BATCH_MAX", "batch_max", _positive_int, "Most input messages per batch."),
    Field(
        "RTP_BATCH_WITHIN", "batch_within_s", _positive_float, "Seconds to wait to fill a batch."
    ),
    Field("RTP_BUNDLE_MAX", "bundle_max", _positive_int, "Most routed bundles per update batch."),
    Field("RTP_HALF_LIFE_DAYS", "half_life_days", _positive_float, "Half-life of tag interest."),
    Field("RTP_LATENESS_S", "lateness_s", _non_negative_float, "Allowed out-of-order lateness."),
    Field("RTP_MAX_FUTURE_S", "max_future_s", _non_negative_float, "Tolerated clock skew ahead."),
    Field("RTP_EARLIEST", "earliest_ms", _date_ms, "Events before this date are rejected."),
    Field(
        "RTP_MAX_MESSAGE_BYTES", "max_message_bytes", _positive_int, "Larger messages go to DLQ."
    ),
    Field("RTP_TOP_TAGS", "top_tags", _positive_int, "Tags kept per profile."),
    Field("RTP_CACHE_USERS", "cache_users", _positive_int, "Profiles cached in worker memory."),
    Field("RTP_WEB_PORT", "web_port", _positive_int, "Worker HTTP port (API, health, metrics)."),
    Field("RTP_WEB_HOST", "web_host", str, "Worker HTTP bind address (0.0.0.0 in containers)."),
    Field("RTP_SESSION_TIMEOUT_S", "session_timeout_s", _positive_float, "Kafka group session."),
    Field("RTP_MODEL", "model", str, "Encoder model directory or id; empty = all-MiniLM-L6-v2."),
    Field("RTP_DEVICE", "device", _device, "Encoder device: auto, cpu, cuda, cuda:N."),
    Field("RTP_LOG_LEVEL", "log_level", str, "Worker log level."),
    Field(
        "RTP_DATA_DIR", "data_dir", str, "Faust's local data directory (no state is kept there)."
    ),
    Field("RTP_EMIT_VECTOR", "emit_vector", _bool, "Put the long-term vector in profile_updated."),
    Field("RTP_EMBEDDINGS", "embeddings", _bool, "Encode texts and keep embedding profiles."),
    Field("RTP_ENCODE_BATCH", "encode_batch", _positive_int, "Texts per model call."),
    Field("RTP_MAX_TOKENS", "max_tokens", _positive_int, "Truncate texts to this many tokens."),
    Field(
        "RTP_TEXT_CHANNEL",
        "text_channel",
        _bool,
        "Mix a hashed word channel into vectors of texts the model cannot read (see README).",
    ),
    Field(
        "RTP_SHORT_HALF_LIFE_MIN",
        "short_half_life_min",
        _positive_float,
        "Half-life of the short-term (session) vector, minutes.",
    ),
    Field("RTP_INTERESTS", "interests", _positive_int, "Interest vectors kept per user."),
    Field("RTP_VECTOR_CACHE", "vector_cache", _positive_int, "Text vectors cached in memory."),
    Field("RTP_SEGMENTS", "segments", _bool, "Online segmentation (needs RTP_EMBEDDINGS)."),
    Field("RTP_SEGMENTS_K", "segments_k", _positive_int, "Number of segments (k of k-means)."),
    Field(
        "RTP_SEGMENT_SYNC_S",
        "segment_sync_s",
        _positive_float,
        "Seconds between merges of a worker's statistics into the shared model.",
    ),
    Field(
        "RTP_SEGMENT_MARGIN",
        "segment_margin",
        _non_negative_float,
        "Hysteresis: move a user only if the new centre is this much closer.",
    ),
    Field(
        "RTP_SEGMENT_SEED_USERS",
        "segment_seed_users",
        _positive_int,
        "Users seen before the first centres are seeded (k-means++).",
    ),
    Field("RTP_SEGMENT_TOPIC", "segment_topic", _topic, "Output: `segment_changed` events."),
    Field("RTP_CHURN", "churn", _bool, "Churn risk: scores, sweep and `churn_risk` events."),
    Field(
        "RTP_CHURN_CLOCK",
        "churn_clock",
        _clock,
        "Sweep time: `wall` (live) or `event` (latest event time seen: replays, back-tests).",
    ),
    Field("RTP_CHURN_SWEEP_S", "churn_sweep_s", _positive_float, "Seconds between sweeps."),
    Field(
        "RTP_CHURN_FIT_S",
        "churn_fit_s",
        _positive_float,
        "Seconds between refits of the population model (one worker fits, under a lock).",
    ),
    Field("RTP_CHURN_TOPIC", "churn_topic", _topic, "Output: `churn_risk` events."),
    Field(
        "RTP_RECOMMEND",
        "recommend",
        _bool,
        "Recommendations: item index, `recommendation` events, pull API (needs RTP_EMBEDDINGS).",
    ),
    Field("RTP_RECS_K", "recs_k", _positive_int, "Items per recommendation list."),
    Field(
        "RTP_RECS_INTERVAL_S",
        "recs_interval_s",
        _non_negative_float,
        "At most one list per user per this many seconds of event time.",
    ),
    Field(
        "RTP_RECS_SHIFT",
        "recs_shift",
        _non_negative_float,
        "Recompute when the long-term vector moved this far (cosine distance) since the last.",
    ),
    Field("RTP_RECS_W_VECTOR", "recs_w_vector", _non_negative_float, "Blend weight: cosine."),
    Field("RTP_RECS_W_TAGS", "recs_w_tags", _non_negative_float, "Blend weight: tag Jaccard."),
    Field(
        "RTP_RECS_W_POPULARITY",
        "recs_w_popularity",
        _non_negative_float,
        "Blend weight: popularity.",
    ),
    Field(
        "RTP_RECS_DIVERSITY",
        "recs_diversity",
        _unit_interval,
        "0 = plain top k by score; 1 = spread evenly over the user's interests.",
    ),
    Field(
        "RTP_POPULARITY_HALF_LIFE_DAYS",
        "popularity_half_life_days",
        _positive_float,
        "Half-life of item popularity (event time).",
    ),
    Field(
        "RTP_CATALOG_POLL_S",
        "catalog_poll_s",
        _positive_float,
        "Seconds between reads of catalog changes and popularity into the worker's index.",
    ),
    Field("RTP_RECS_TOPIC", "recs_topic", _topic, "Output: `recommendation` events."),
    Field(
        "RTP_PSEUDONYMIZE",
        "pseudonymize",
        _bool,
        "Replace user ids by keyed hashes (HMAC-SHA256) at ingestion; needs RTP_PSEUDONYM_KEY.",
    ),
    Field(
        "RTP_PSEUDONYM_KEY",
        "pseudonym_key",
        _secret,
        "Secret of the keyed hashes (pseudonyms, erasure markers, receipts); empty: markers use "
        "a random secret kept in Redis. Same on every worker; never change it once data exists.",
        secret=True,
    ),
    Field(
        "RTP_KAFKA_SECURITY_PROTOCOL",
        "kafka_security_protocol",
        _kafka_protocol,
        "Kafka security: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS).",
    ),
    Field(
        "RTP_KAFKA_SASL_MECHANISM",
        "kafka_sasl_mechanism",
        _sasl_mechanism,
        "SASL mechanism (SASL_* protocols): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
    ),
    Field("RTP_KAFKA_USERNAME", "kafka_username", str, "SASL user (SASL_* protocols)."),
    Field(
        "RTP_KAFKA_PASSWORD",
        "kafka_password",
        str,
        "SASL password (SASL_* protocols); never logged.",
        secret=True,
    ),
    Field(
        "RTP_KAFKA_CA_FILE",
        "kafka_ca_file",
        str,
        "PEM CA bundle that signed the brokers' certificates (SSL, SASL_SSL); empty: the "
        "system's trust store.",
    ),
    Field(
        "RTP_KAFKA_CERT_FILE",
        "kafka_cert_file",
        str,
        "Client certificate (PEM) for brokers that require mutual TLS.",
    ),
    Field(
        "RTP_KAFKA_KEY_FILE",
        "kafka_key_file",
        str,
        "Private key (PEM) of RTP_KAFKA_CERT_FILE; empty: inside the certificate file.",
    ),
    Field(
        "RTP_KAFKA_KEY_PASSWORD",
        "kafka_key_password",
        str,
        "Password of an encrypted RTP_KAFKA_KEY_FILE; never logged.",
        secret=True,
    ),
    Field(
        "RTP_REDIS_CA_FILE",
        "redis_ca_file",
        str,
        "PEM CA bundle that signed Redis's certificate (rediss:// URLs); empty: the system's "
        "trust store.",
    ),
    Field(
        "RTP_REDIS_CERT_FILE",
        "redis_cert_file",
        str,
        "Client certificate (PEM) for a Redis that requires mutual TLS (`tls-auth-clients`).",
    ),
    Field(
        "RTP_REDIS_KEY_FILE",
        "redis_key_file",
        str,
        "Private key (PEM, unencrypted) of RTP_REDIS_CERT_FILE; empty: inside the certificate.",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Everything the worker and the tools need; immutable once built."""

    app_id: str = "profiles"
    broker: str = "kafka://127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    input_topic: str = "site-events"
    routed_topic: str = "profiles-routed"
    profile_topic: str = "profile-updated"
    dlq_topic: str = "site-events-dlq"
    partitions: int = 4
    batch_max: int = 2000
    batch_within_s: float = 0.05
    bundle_max: int = 64
    half_life_days: float = 30.0
    lateness_s: float = 7 * 86400.0
    max_future_s: float = 300.0
    earliest_ms: int = 946_684_800_000  # 2000-01-01
    max_message_bytes: int = 65536
    top_tags: int = 50
    cache_users: int = 20_000
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    session_timeout_s: float = 10.0
    model: str = ""
    device: str = "auto"
    log_level: str = "info"
    data_dir: str = ".dev/faust"
    emit_vector: bool = False
    embeddings: bool = True
    encode_batch: int = 256
    max_tokens: int = 64
    text_channel: bool = True
    short_half_life_min: float = 30.0
    interests: int = 5
    vector_cache: int = 200_000
    segments: bool = True
    segments_k: int = 8
    segment_sync_s: float = 5.0
    segment_margin: float = 0.1
    segment_seed_users: int = 1000
    segment_topic: str = "segment-changed"
    churn: bool = True
    churn_clock: str = "wall"
    churn_sweep_s: float = 10.0
    churn_fit_s: float = 600.0
    churn_topic: str = "churn-risk"
    recommend: bool = True
    recs_k: int = 10
    recs_interval_s: float = 600.0
    recs_shift: float = 0.1
    recs_w_vector: float = 0.6
    recs_w_tags: float = 0.3
    recs_w_popularity: float = 0.1
    recs_diversity: float = 0.3
    popularity_half_life_days: float = 7.0
    catalog_poll_s: float = 1.0
    recs_topic: str = "recommendations"
    pseudonymize: bool = False
    pseudonym_key: str = field(default="", repr=False)
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_username: str = ""
    kafka_password: str = field(default="", repr=False)
    kafka_ca_file: str = ""
    kafka_cert_file: str = ""
    kafka_key_file: str = ""
    kafka_key_password: str = field(default="", repr=False)
    redis_ca_file: str = ""
    redis_cert_file: str = ""
    redis_key_file: str = ""
    profile: ProfileConfig = field(default_factory=ProfileConfig)

    def __post_init__(self) -> None:
        if self.pseudonymize and not self.pseudonym_key:
            raise SettingsError(
                "invalid settings:\n  RTP_PSEUDONYMIZE=true needs RTP_PSEUDONYM_KEY, the secret "
                f"of the pseudonyms (at least {MIN_SECRET_CHARS} characters)"
            )
        # The profile math settings derive from the flat ones, so they can't drift.
        derived = ProfileConfig(
            half_life_ms=int(self.half_life_days * 86_400_000),
            lateness_ms=int(self.lateness_s * 1000),
            top_tags=self.top_tags,
        )
        if self.profile != derived:
            object.__setattr__(self, "profile", derived)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every ``RTP_*`` variable; raise one :class:`SettingsError` listing all problems."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in FIELDS:
            raw = source.get(spec.env)
            if raw is None:
                continue
            try:
                values[spec.attr] = spec.parse(raw)
            except ValueError as exc:
                shown = "<secret>" if spec.secret else repr(redact_url(raw))
                problems.append(f"{spec.env}={shown}: {exc}")
        if problems:
            raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
        settings = replace(cls(), **{**values, **overrides})
        problems = settings_problems(settings)  # combinations: SASL without a password, ...
        if problems:
            raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
        return settings

    def __repr__(self) -> str:
        """All settings, but no secret: passwords and keys as ``***``, URLs without them."""
        shown = ", ".join(
            f"{f.name}={redact_value(f.name, getattr(self, f.name))!r}"
            for f in fields(self)
            if f.repr
        )
        return f"{type(self).__name__}({shown})"

    @property
    def redis_tls(self) -> RedisTLS:
        """The TLS files for ``rediss://`` clients (:mod:`profiles.redis.client`)."""
        return RedisTLS(self.redis_ca_file, self.redis_cert_file, self.redis_key_file)

    @property
    def broker_hosts(self) -> list[str]:
        """``host:port`` strings for plain aiokafka clients."""
        return [u.removeprefix("kafka://") for u in self.broker.split(";")]


def settings_table() -> str:
    """Markdown table of every setting with its default, for the README."""
    defaults = Settings()
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for spec in FIELDS:
        default = getattr(defaults, spec.attr)
        if spec.attr == "earliest_ms":
            default = "2000-01-01"
        rows.append(f"| `{spec.env}` | `{default}` | {spec.help} |")
    return "\n".join(rows)


def setting_names() -> list[str]:
    """Attribute names of all settings (used by tests to keep docs honest)."""
    return [f.name for f in fields(Settings) if f.name != "profile"]
