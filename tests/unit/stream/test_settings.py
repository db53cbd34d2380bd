"""The settings model: old defaults kept, every variable parsed, every problem named at once,
secrets hidden, the README table generated, RTP_LOG_LEVEL reaching Faust."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stream.settings import (
    FAUST_LEVELS,
    Settings,
    SettingsError,
    env_paths,
    faust_argv,
    settings_table,
    value_of,
    with_table,
)
from tests.certs import Certs, encrypt_key, make_certs

ROOT = Path(__file__).resolve().parents[3]

# The defaults of the hand-written dataclass this model replaced (behaviour must not change).
OLD_DEFAULTS: dict[str, Any] = {
    "RTP_APP_ID": "profiles",
    "RTP_BROKER": "kafka://127.0.0.1:9092",
    "RTP_REDIS_URL": "redis://127.0.0.1:6379/0",
    "RTP_INPUT_TOPIC": "site-events",
    "RTP_ROUTED_TOPIC": "profiles-routed",
    "RTP_PROFILE_TOPIC": "profile-updated",
    "RTP_DLQ_TOPIC": "site-events-dlq",
    "RTP_PARTITIONS": 4,
    "RTP_BATCH_MAX": 2000,
    "RTP_BATCH_WITHIN": 0.05,
    "RTP_BUNDLE_MAX": 64,
    "RTP_HALF_LIFE_DAYS": 30.0,
    "RTP_LATENESS_S": 604800.0,
    "RTP_MAX_FUTURE_S": 300.0,
    "RTP_EARLIEST": 946_684_800_000,
    "RTP_MAX_MESSAGE_BYTES": 65536,
    "RTP_TOP_TAGS": 50,
    "RTP_CACHE_USERS": 20000,
    "RTP_WEB_PORT": 6066,
    "RTP_WEB_HOST": "127.0.0.1",
    "RTP_SESSION_TIMEOUT_S": 10.0,
    "RTP_MODEL": "",
    "RTP_DEVICE": "auto",
    "RTP_LOG_LEVEL": "info",
    "RTP_DATA_DIR": ".dev/faust",
    "RTP_EMIT_VECTOR": False,
    "RTP_EMBEDDINGS": True,
    "RTP_ENCODE_BATCH": 256,
    "RTP_MAX_TOKENS": 64,
    "RTP_SHORT_HALF_LIFE_MIN": 30.0,
    "RTP_INTERESTS": 5,
    "RTP_VECTOR_CACHE": 200000,
    "RTP_SEGMENTS": True,
    "RTP_SEGMENTS_K": 8,
    "RTP_SEGMENT_SYNC_S": 5.0,
    "RTP_SEGMENT_MARGIN": 0.1,
    "RTP_SEGMENT_SEED_USERS": 1000,
    "RTP_SEGMENT_TOPIC": "segment-changed",
    "RTP_CHURN": True,
    "RTP_CHURN_CLOCK": "wall",
    "RTP_CHURN_SWEEP_S": 10.0,
    "RTP_CHURN_FIT_S": 600.0,
    "RTP_CHURN_TOPIC": "churn-risk",
    "RTP_RECOMMEND": True,
    "RTP_RECS_K": 10,
    "RTP_RECS_INTERVAL_S": 600.0,
    "RTP_RECS_SHIFT": 0.1,
    "RTP_RECS_W_VECTOR": 0.6,
    "RTP_RECS_W_TAGS": 0.3,
    "RTP_RECS_W_POPULARITY": 0.1,
    "RTP_RECS_DIVERSITY": 0.3,
    "RTP_POPULARITY_HALF_LIFE_DAYS": 7.0,
    "RTP_CATALOG_POLL_S": 1.0,
    "RTP_RECS_TOPIC": "recommendations",
    "RTP_PSEUDONYMIZE": False,
    "RTP_PSEUDONYM_KEY": "",
    "RTP_IDENTIFY_TRAITS": "",
    "RTP_IDENTIFY_PII": False,
    "RTP_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "RTP_KAFKA_SASL_MECHANISM": "PLAIN",
    "RTP_KAFKA_USERNAME": "",
    "RTP_KAFKA_PASSWORD": "",
    "RTP_KAFKA_CA_FILE": "",
    "RTP_KAFKA_CERT_FILE": "",
    "RTP_KAFKA_KEY_FILE": "",
    "RTP_KAFKA_KEY_PASSWORD": "",
    "RTP_REDIS_CA_FILE": "",
    "RTP_REDIS_CERT_FILE": "",
    "RTP_REDIS_KEY_FILE": "",
    "RTP_DEV_DIR": ".dev",  # read by the dev tools before, now a setting
    # Added with `stream topics` (production topic layout).
    "RTP_MAX_REQUEST_BYTES": 1_000_000,  # added with the dead-letter bounds
    "RTP_CHURN_HORIZON_DAYS": 30.0,  # added with the churn probability
    "RTP_INGEST_PAUSED": False,  # added with growing the owner partitions
    "RTP_OUTPUT_PARTITIONS": 0,
    "RTP_REDIS_WAIT_REPLICAS": 0,  # added with Redis Cluster
    "RTP_REDIS_WAIT_MS": 1000,
    "RTP_REGISTRY_FRAMING": "off",  # added with Segment-spec ingestion
    "RTP_WEB_TOKENS": "",  # added with API authentication
    "RTP_WEB_TOKENS_FILE": "",
    "RTP_WEB_OPEN": False,
    "RTP_WEB_OPEN_OPS": True,
    "RTP_CRASH_EXIT_S": 30.0,  # added with crash visibility
    "RTP_TEXT_CHANNEL": True,  # added with the Chinese text channel
    "RTP_VECTOR_STORAGE": "f32",  # added with compact vector storage (issue 15)
    "RTP_INPUT_PARTITIONS": 4,
    "RTP_TOPIC_REPLICATION": 1,
    "RTP_TOPIC_MIN_INSYNC": 1,
    "RTP_TOPIC_RETENTION_HOURS": 168.0,
    "RTP_INGEST_CONSUMER": "batch",  # added with the batch ingest consumer
    "RTP_UPDATE_CHUNK": 4000,
    "RTP_VALUE": True,  # added with customer value
    "RTP_VALUE_HORIZON_DAYS": 365.0,
    "RTP_VALUE_MARGIN": 0.1,
    "RTP_VALUE_TOPIC": "value-changed",
    "RTP_SENTIMENT": True,  # added with review sentiment
    "RTP_SENTIMENT_HALF_LIFE_DAYS": 90.0,
    "RTP_SENTIMENT_ITEM_HALF_LIFE_DAYS": 30.0,
    "RTP_SENTIMENT_POLAR": 0.3,
    "RTP_SENTIMENT_ALERT_SCORE": -0.6,
    "RTP_SENTIMENT_ALERT_TIERS": "champions,loyal,cannot_lose",
    "RTP_SENTIMENT_ALERT_MIN_SPEND": 500.0,
    "RTP_SENTIMENT_TOPIC": "negative-reviews",
    "RTP_EXPERIMENT": "",  # added with experiments
    "RTP_EXPERIMENT_ARMS": "treatment:0.9,holdout:0.1",
    "RTP_ATTRIBUTION_WINDOW_S": 604800.0,
    "RTP_EXPERIMENT_HOLDOUT": "none",
    "RTP_RISK": True,  # added with risk flags
    "RTP_RISK_EXCLUDE": "none",
    "RTP_RISK_TOPIC": "risk-flags",
    "RTP_AUDIENCES": True,  # added with audiences
    "RTP_AUDIENCE_SWEEP_S": 10.0,
    "RTP_AUDIENCE_REQUIRE_CONSENT": False,
    "RTP_AUDIENCE_SNAPSHOT_TTL_S": 600,
    "RTP_AUDIENCE_DP_BUDGET": 1.0,
    "RTP_AUDIENCE_TOPIC": "audience-changed",
    "RTP_MERGED_TOPIC": "profile-merged",  # added with identity stitching (issue 17)
    "RTP_TOGETHER": True,  # added with frequently bought together (issue 20)
    "RTP_TOGETHER_HALF_LIFE_DAYS": 30.0,
    "RTP_TOGETHER_MAX_ITEMS": 20,
    "RTP_TOGETHER_SESSION_GAP_S": 1800.0,
    "RTP_TOGETHER_VIEWS": True,
    "RTP_TOGETHER_NEIGHBOURS": 50,
    "RTP_TOGETHER_MIN_COUNT": 2.0,
    "RTP_TOGETHER_W_RECS": 0.3,
    "RTP_TOGETHER_CACHE_S": 60.0,
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_defaults_equal_the_old_ones() -> None:
    defaults = Settings.from_env({})
    assert set(env_paths()) == set(OLD_DEFAULTS)
    assert {name: value_of(defaults, name) for name in OLD_DEFAULTS} == OLD_DEFAULTS
    profile = defaults.profile
    assert (profile.half_life_ms, profile.lateness_ms, profile.top_tags) == (
        30 * 86_400_000,
        7 * 86_400_000,
        50,
    )
    assert defaults.kafka.broker_hosts == ["127.0.0.1:9092"]


def every_variable(certs: Certs, tmp_path: Path) -> dict[str, tuple[str, Any]]:
    """Each variable with a non-default value as written, and the value it must parse to."""
    key = encrypt_key(certs.client_key, tmp_path / "client-enc.key", "key-pw-9")
    ca, cert, plain_key = str(certs.ca), str(certs.client_cert), str(certs.client_key)
    tokens = tmp_path / "tokens"
    tokens.write_text("# rotated monthly\nread:" + "f" * 24 + "\n")
    return {
        "RTP_APP_ID": ("shop-profiles", "shop-profiles"),
        "RTP_BROKER": (" kafka://a:1 ; kafka://b:2 ", "kafka://a:1;kafka://b:2"),
        "RTP_REDIS_URL": ("rediss://u:pw@r:6380/3", "rediss://u:pw@r:6380/3"),
        "RTP_INPUT_TOPIC": ("in", "in"),
        "RTP_ROUTED_TOPIC": ("routed", "routed"),
        "RTP_PROFILE_TOPIC": ("prof", "prof"),
        "RTP_DLQ_TOPIC": ("dead", "dead"),
        "RTP_PARTITIONS": ("12", 12),
        "RTP_BATCH_MAX": ("10", 10),
        "RTP_BATCH_WITHIN": ("0.5", 0.5),
        "RTP_BUNDLE_MAX": ("3", 3),
        "RTP_HALF_LIFE_DAYS": ("2.5", 2.5),
        "RTP_LATENESS_S": ("0", 0.0),
        "RTP_MAX_FUTURE_S": ("1", 1.0),
        "RTP_EARLIEST": ("2001-01-01", 978_307_200_000),
        "RTP_MAX_MESSAGE_BYTES": ("1000", 1000),
        "RTP_TOP_TAGS": ("7", 7),
        "RTP_CACHE_USERS": ("9", 9),
        "RTP_WEB_PORT": ("8080", 8080),
        "RTP_WEB_HOST": ("0.0.0.0", "0.0.0.0"),
        "RTP_SESSION_TIMEOUT_S": ("30", 30.0),
        "RTP_MODEL": ("/models/x", "/models/x"),
        "RTP_DEVICE": ("cuda:1", "cuda:1"),
        "RTP_LOG_LEVEL": ("DEBUG", "debug"),
        "RTP_DATA_DIR": ("/tmp/faust", "/tmp/faust"),
        "RTP_EMIT_VECTOR": ("yes", True),
        "RTP_EMBEDDINGS": ("0", False),
        "RTP_ENCODE_BATCH": ("32", 32),
        "RTP_MAX_TOKENS": ("128", 128),
        "RTP_SHORT_HALF_LIFE_MIN": ("5", 5.0),
        "RTP_INTERESTS": ("3", 3),
        "RTP_VECTOR_CACHE": ("100", 100),
        "RTP_SEGMENTS": ("off", False),
        "RTP_SEGMENTS_K": ("4", 4),
        "RTP_SEGMENT_SYNC_S": ("2", 2.0),
        "RTP_SEGMENT_MARGIN": ("0", 0.0),
        "RTP_SEGMENT_SEED_USERS": ("50", 50),
        "RTP_SEGMENT_TOPIC": ("seg", "seg"),
        "RTP_CHURN": ("false", False),
        "RTP_CHURN_CLOCK": ("event", "event"),
        "RTP_CHURN_SWEEP_S": ("1", 1.0),
        "RTP_CHURN_FIT_S": ("60", 60.0),
        "RTP_CHURN_TOPIC": ("churn", "churn"),
        "RTP_RECOMMEND": ("no", False),
        "RTP_RECS_K": ("20", 20),
        "RTP_RECS_INTERVAL_S": ("0", 0.0),
        "RTP_RECS_SHIFT": ("0.2", 0.2),
        "RTP_RECS_W_VECTOR": ("1", 1.0),
        "RTP_RECS_W_TAGS": ("0", 0.0),
        "RTP_RECS_W_POPULARITY": ("0.5", 0.5),
        "RTP_RECS_DIVERSITY": ("1", 1.0),
        "RTP_POPULARITY_HALF_LIFE_DAYS": ("3", 3.0),
        "RTP_CATALOG_POLL_S": ("0.25", 0.25),
        "RTP_RECS_TOPIC": ("recs", "recs"),
        "RTP_PSEUDONYMIZE": ("true", True),
        "RTP_PSEUDONYM_KEY": ("k" * 32, "k" * 32),
        "RTP_IDENTIFY_TRAITS": ("plan, country", "plan, country"),
        "RTP_IDENTIFY_PII": ("true", True),
        "RTP_KAFKA_SECURITY_PROTOCOL": ("sasl_ssl", "SASL_SSL"),
        "RTP_KAFKA_SASL_MECHANISM": ("scram-sha-512", "SCRAM-SHA-512"),
        "RTP_KAFKA_USERNAME": ("alice", "alice"),
        "RTP_KAFKA_PASSWORD": ("kafka-pw-1", "kafka-pw-1"),
        "RTP_KAFKA_CA_FILE": (ca, ca),
        "RTP_KAFKA_CERT_FILE": (cert, cert),
        "RTP_KAFKA_KEY_FILE": (str(key), str(key)),
        "RTP_KAFKA_KEY_PASSWORD": ("key-pw-9", "key-pw-9"),
        "RTP_REDIS_CA_FILE": (ca, ca),
        "RTP_REDIS_CERT_FILE": (cert, cert),
        "RTP_REDIS_KEY_FILE": (plain_key, plain_key),
        "RTP_DEV_DIR": ("/tmp/dev", "/tmp/dev"),
        "RTP_MAX_REQUEST_BYTES": ("2000000", 2_000_000),
        "RTP_CHURN_HORIZON_DAYS": ("90", 90.0),
        "RTP_INGEST_PAUSED": ("true", True),
        "RTP_OUTPUT_PARTITIONS": ("2", 2),
        "RTP_REDIS_WAIT_REPLICAS": ("1", 1),
        "RTP_REDIS_WAIT_MS": ("250", 250),
        "RTP_REGISTRY_FRAMING": ("accept", "accept"),
        "RTP_INGEST_CONSUMER": ("faust", "faust"),
        "RTP_UPDATE_CHUNK": ("500", 500),
        "RTP_WEB_OPEN_OPS": ("false", False),
        "RTP_WEB_TOKENS": ("read+ops:" + "t" * 24, "read+ops:" + "t" * 24),
        "RTP_WEB_TOKENS_FILE": (str(tokens), str(tokens)),
        "RTP_CRASH_EXIT_S": ("0", 0.0),
        "RTP_TEXT_CHANNEL": ("false", False),
        "RTP_VECTOR_STORAGE": ("f16", "f16"),
        "RTP_INPUT_PARTITIONS": ("12", 12),
        "RTP_TOPIC_REPLICATION": ("3", 3),
        "RTP_TOPIC_MIN_INSYNC": ("2", 2),
        "RTP_TOPIC_RETENTION_HOURS": ("24", 24.0),
        "RTP_VALUE": ("false", False),
        "RTP_VALUE_HORIZON_DAYS": ("90", 90.0),
        "RTP_VALUE_MARGIN": ("0.2", 0.2),
        "RTP_VALUE_TOPIC": ("value", "value"),
        "RTP_SENTIMENT": ("off", False),
        "RTP_SENTIMENT_HALF_LIFE_DAYS": ("10", 10.0),
        "RTP_SENTIMENT_ITEM_HALF_LIFE_DAYS": ("7", 7.0),
        "RTP_SENTIMENT_POLAR": ("0.5", 0.5),
        "RTP_SENTIMENT_ALERT_SCORE": ("-0.8", -0.8),
        "RTP_SENTIMENT_ALERT_TIERS": ("champions", "champions"),
        "RTP_SENTIMENT_ALERT_MIN_SPEND": ("0", 0.0),
        "RTP_SENTIMENT_TOPIC": ("neg", "neg"),
        "RTP_EXPERIMENT": ("x1", "x1"),
        "RTP_EXPERIMENT_ARMS": ("a:0.5,holdout:0.5", "a:0.5,holdout:0.5"),
        "RTP_ATTRIBUTION_WINDOW_S": ("3600", 3600.0),
        "RTP_RISK": ("false", False),
        "RTP_RISK_EXCLUDE": ("medium", "medium"),
        "RTP_RISK_TOPIC": ("risk", "risk"),
        "RTP_AUDIENCES": ("false", False),
        "RTP_AUDIENCE_SWEEP_S": ("2.5", 2.5),
        "RTP_AUDIENCE_REQUIRE_CONSENT": ("true", True),
        "RTP_AUDIENCE_SNAPSHOT_TTL_S": ("60", 60),
        "RTP_AUDIENCE_DP_BUDGET": ("3", 3.0),
        "RTP_AUDIENCE_TOPIC": ("aud", "aud"),
        "RTP_MERGED_TOPIC": ("merged", "merged"),
        "RTP_TOGETHER": ("false", False),
        "RTP_TOGETHER_HALF_LIFE_DAYS": ("7", 7.0),
        "RTP_TOGETHER_MAX_ITEMS": ("5", 5),
        "RTP_TOGETHER_SESSION_GAP_S": ("600", 600.0),
        "RTP_TOGETHER_VIEWS": ("false", False),
        "RTP_TOGETHER_NEIGHBOURS": ("10", 10),
        "RTP_TOGETHER_MIN_COUNT": ("1", 1.0),
        "RTP_TOGETHER_W_RECS": ("0", 0.0),
        "RTP_TOGETHER_CACHE_S": ("0", 0.0),
    }


def test_every_variable_parses(certs: Certs, tmp_path: Path) -> None:
    cases = every_variable(certs, tmp_path)
    # RTP_WEB_OPEN contradicts the tokens set here (refused together), and the popularity
    # control needs the RTP_EMBEDDINGS turned off here: each checked on its own.
    assert set(cases) == set(env_paths()) - {"RTP_WEB_OPEN", "RTP_EXPERIMENT_HOLDOUT"}
    assert Settings.from_env({"RTP_WEB_OPEN": "true"}).web.open is True
    held = Settings.from_env({"RTP_EXPERIMENT": "x", "RTP_EXPERIMENT_HOLDOUT": "popular"})
    assert held.experiment.control == "popular"
    settings = Settings.from_env({name: raw for name, (raw, _) in cases.items()})
    for name, (_, expected) in cases.items():
        assert value_of(settings, name) == expected, name
        assert value_of(settings, name) != OLD_DEFAULTS[name], name  # really changed
    assert settings.kafka.broker_hosts == ["a:1", "b:2"]
    assert settings.profile.top_tags == 7


def test_bad_values_are_all_reported_together_by_name() -> None:
    bad = {
        "RTP_PARTITIONS": "0",
        "RTP_BATCH_MAX": "many",
        "RTP_BATCH_WITHIN": "-1",
        "RTP_BROKER": "localhost:9092",
        "RTP_INPUT_TOPIC": "bad topic",
        "RTP_EARLIEST": "yesterday",
        "RTP_EMBEDDINGS": "maybe",
        "RTP_CHURN_CLOCK": "sundial",
        "RTP_INGEST_CONSUMER": "librdkafka",
        "RTP_DEVICE": "tpu",
        "RTP_RECS_DIVERSITY": "1.5",
        "RTP_SENTIMENT_ALERT_TIERS": "champions,vips",
        "RTP_LOG_LEVEL": "loud",
        "RTP_KAFKA_SASL_MECHANISM": "GSSAPI",
        "RTP_PSEUDONYMIZE": "true",  # a combination: needs RTP_PSEUDONYM_KEY
        "RTP_REDIS_CA_FILE": "/ca.pem",  # a combination: TLS files on a redis:// URL
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(bad)
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid settings:"
    assert len(lines) == 1 + len(bad)
    for name in bad:
        assert sum(line.strip().startswith(name) for line in lines) == 1, name
    assert "Traceback" not in str(caught.value)


def test_secrets_are_neither_printed_nor_echoed(certs: Certs) -> None:
    settings = Settings.from_env(
        {
            "RTP_REDIS_URL": "redis://worker:redis-Secret-pw@r:6379/0",
            "RTP_PSEUDONYM_KEY": "pseudonym-Secret-key-1",
            "RTP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "RTP_KAFKA_USERNAME": "alice",
            "RTP_KAFKA_PASSWORD": "kafka-Secret-pw",
            "RTP_KAFKA_CA_FILE": str(certs.ca),
        }
    )
    secrets = ("redis-Secret-pw", "pseudonym-Secret-key-1", "kafka-Secret-pw")
    for text in (repr(settings), str(settings), repr(settings.kafka), str(settings.model_dump())):
        assert not any(secret in text for secret in secrets)
    assert "alice" in repr(settings)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {"RTP_PSEUDONYM_KEY": "short-Secret", "RTP_REDIS_URL": "http://u:url-Secret@h/0"}
        )
    message = str(caught.value)
    assert "RTP_PSEUDONYM_KEY=<secret>" in message and "RTP_REDIS_URL='http://***@h/0'" in message
    assert "short-Secret" not in message and "url-Secret" not in message


def test_the_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert with_table(readme) == readme, "run `make settings-doc` to regenerate the table"
    table = settings_table()
    assert all(f"| `{name}` |" in table for name in env_paths())
    assert "| `RTP_EARLIEST` | `2000-01-01` |" in table


def test_replace_validates_the_changed_section() -> None:
    settings = Settings.from_env({})
    moved = settings.replace("topics", input="other")
    assert moved.topics.input == "other" and settings.topics.input == "site-events"
    with pytest.raises(ValueError, match="1-200 characters"):
        settings.replace("topics", input="no spaces")


@pytest.mark.parametrize(
    ("raw", "faust"),
    [("debug", "DEBUG"), ("INFO", "INFO"), ("warning", "WARN"), ("error", "ERROR")],
)
def test_log_level_reaches_the_worker(raw: str, faust: str) -> None:
    level = Settings.from_env({"RTP_LOG_LEVEL": raw}).worker.log_level
    assert FAUST_LEVELS[level] == faust
    argv = faust_argv(["stream", "worker"], level)
    assert argv == ["stream", f"--loglevel={faust}", "worker"]
    # What Faust's own command line makes of it: the level its worker runs at.
    from faust.cli.base import DEFAULT_LOGLEVEL, State, cli

    state = cli.make_context("stream", argv[1:]).find_object(State)
    assert (state.loglevel or DEFAULT_LOGLEVEL) == faust  # as faust's AppCommand.loglevel
    # An explicit -l on the command line wins over RTP_LOG_LEVEL.
    explicit = ["stream", "worker", "-l", "error"]
    assert faust_argv(explicit, level) == explicit
    # It is the worker's level: the tools keep Faust's quiet default.
    assert faust_argv(["stream", "dlq"], level) == ["stream", "dlq"]


def test_vector_storage_reaches_the_embedding_config() -> None:
    from stream.worker.compose import embedding_config

    assert embedding_config(Settings.from_env({}), "m", 8).storage == "f32"
    compact = Settings.from_env({"RTP_VECTOR_STORAGE": "f16"})
    assert embedding_config(compact, "m", 8).storage == "f16"
    with pytest.raises(SettingsError, match="RTP_VECTOR_STORAGE"):
        Settings.from_env({"RTP_VECTOR_STORAGE": "f64"})


def test_experiment_settings_are_checked_and_reach_the_features() -> None:
    from stream.worker.compose import experiment_config

    assert experiment_config(Settings.from_env({})) is None  # no name: no experiment
    on = experiment_config(Settings.from_env({"RTP_EXPERIMENT": "x1"}))
    assert on is not None and on.holdout == ("holdout",) and on.window_ms == 7 * 86_400_000
    with pytest.raises(SettingsError, match=r"RTP_EXPERIMENT_ARMS: .*sum to 1"):
        Settings.from_env({"RTP_EXPERIMENT": "x1", "RTP_EXPERIMENT_ARMS": "a:0.5,b:0.4"})
    with pytest.raises(SettingsError, match="RTP_EXPERIMENT="):
        Settings.from_env({"RTP_EXPERIMENT": "no spaces"})
