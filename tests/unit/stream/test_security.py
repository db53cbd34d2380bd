"""stream/security.py and the security settings: what each protocol gives the clients, which
combinations are refused (and how), and that no secret is shown."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import AuthProtocol, SASLMechanism
from pydantic import SecretStr

from profiles.redis.client import RedisTLS, async_client, sync_client
from stream.security import (
    broker_credentials,
    is_secret_name,
    kafka_client_kwargs,
    redact_url,
)
from stream.settings import Settings, SettingsError
from tests.certs import Certs, encrypt_key, make_certs

PASSWORD = "kafka-Secret-pw-1"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def env_for(protocol: str, certs: Certs, mechanism: str = "PLAIN") -> dict[str, str]:
    env = {"RTP_KAFKA_SECURITY_PROTOCOL": protocol}
    if protocol.startswith("SASL"):
        env |= {
            "RTP_KAFKA_SASL_MECHANISM": mechanism,
            "RTP_KAFKA_USERNAME": "alice",
            "RTP_KAFKA_PASSWORD": PASSWORD,
        }
    if protocol.endswith("SSL"):
        env["RTP_KAFKA_CA_FILE"] = str(certs.ca)
    return env


def trusts(context: ssl.SSLContext, certs: Certs) -> bool:
    """Whether ``context`` trusts the test CA (and so will accept the test broker)."""
    return any("'rtp-test-ca'" in str(c["subject"]) for c in context.get_ca_certs())


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    settings = Settings.from_env({})
    assert kafka_client_kwargs(settings.kafka) == {"security_protocol": "PLAINTEXT"}
    assert broker_credentials(settings.kafka) is None


def test_ssl_verifies_the_broker_with_the_given_ca(certs: Certs) -> None:
    settings = Settings.from_env(env_for("SSL", certs))
    kwargs = kafka_client_kwargs(settings.kafka)
    assert set(kwargs) == {"security_protocol", "ssl_context"}
    assert kwargs["security_protocol"] == "SSL"
    context = kwargs["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert trusts(context, certs)
    credentials = broker_credentials(settings.kafka)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials.protocol is AuthProtocol.SSL and trusts(credentials.context, certs)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_gives_the_same_to_faust_and_to_aiokafka(
    certs: Certs, protocol: str, mechanism: str
) -> None:
    settings = Settings.from_env(env_for(protocol, certs, mechanism.lower()))
    kwargs = kafka_client_kwargs(settings.kafka)
    assert kwargs["security_protocol"] == protocol
    assert kwargs["sasl_mechanism"] == mechanism
    assert kwargs["sasl_plain_username"] == "alice"
    assert kwargs["sasl_plain_password"] == PASSWORD
    assert ("ssl_context" in kwargs) == (protocol == "SASL_SSL")

    credentials = broker_credentials(settings.kafka)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol is AuthProtocol(protocol)
    assert credentials.mechanism is SASLMechanism(mechanism)
    assert PASSWORD not in repr(credentials)
    # What Faust's own driver hands its consumer and producer from these credentials.
    faust_kwargs = dict(credentials_to_aiokafka_auth(credentials))
    faust_context = faust_kwargs.pop("ssl_context")
    ours = dict(kwargs)
    our_context = ours.pop("ssl_context", None)
    assert faust_kwargs == ours
    assert (faust_context is None) == (our_context is None)
    if faust_context is not None:
        assert trusts(faust_context, certs)


def test_mutual_tls_loads_the_client_certificate_and_an_encrypted_key(
    certs: Certs, tmp_path: Path
) -> None:
    locked = encrypt_key(certs.client_key, tmp_path / "client-enc.key", "key-pw-9")
    env = env_for("SASL_SSL", certs) | {
        "RTP_KAFKA_CERT_FILE": str(certs.client_cert),
        "RTP_KAFKA_KEY_FILE": str(locked),
        "RTP_KAFKA_KEY_PASSWORD": "key-pw-9",
    }
    settings = Settings.from_env(env)
    assert isinstance(kafka_client_kwargs(settings.kafka)["ssl_context"], ssl.SSLContext)
    with pytest.raises(SettingsError, match="cannot be loaded") as wrong:
        Settings.from_env(env | {"RTP_KAFKA_KEY_PASSWORD": "not-it-77"})
    assert "not-it-77" not in str(wrong.value)
    with pytest.raises(SettingsError, match="cannot be loaded"):  # encrypted, no password
        Settings.from_env({k: v for k, v in env.items() if k != "RTP_KAFKA_KEY_PASSWORD"})


def problems(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    return str(caught.value)


def test_misconfigurations_are_refused_by_name(certs: Certs, tmp_path: Path) -> None:
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("hello\n")
    cases = {
        "RTP_KAFKA_SECURITY_PROTOCOL='SASL'": {"RTP_KAFKA_SECURITY_PROTOCOL": "SASL"},
        "RTP_KAFKA_SASL_MECHANISM='GSSAPI'": {"RTP_KAFKA_SASL_MECHANISM": "GSSAPI"},
        "RTP_KAFKA_PASSWORD: required with RTP_KAFKA_SECURITY_PROTOCOL=SASL_SSL": {
            **env_for("SASL_SSL", certs),
            "RTP_KAFKA_PASSWORD": "",
        },
        "RTP_KAFKA_USERNAME: required with RTP_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT": {
            "RTP_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "RTP_KAFKA_PASSWORD": PASSWORD,
        },
        "RTP_KAFKA_PASSWORD is set but is not sent with RTP_KAFKA_SECURITY_PROTOCOL=PLAINTEXT": {
            "RTP_KAFKA_USERNAME": "alice",
            "RTP_KAFKA_PASSWORD": PASSWORD,
        },
        "RTP_KAFKA_CA_FILE is set but TLS is off": {
            **env_for("SASL_PLAINTEXT", certs),
            "RTP_KAFKA_CA_FILE": str(certs.ca),
        },
        "RTP_KAFKA_CA_FILE='/no/such/ca.pem': no such file": {
            **env_for("SSL", certs),
            "RTP_KAFKA_CA_FILE": "/no/such/ca.pem",
        },
        "cannot be loaded": {**env_for("SSL", certs), "RTP_KAFKA_CA_FILE": str(not_pem)},
        "RTP_KAFKA_KEY_FILE is set without RTP_KAFKA_CERT_FILE": {
            **env_for("SSL", certs),
            "RTP_KAFKA_KEY_FILE": str(certs.client_key),
        },
        "RTP_REDIS_CA_FILE is set but RTP_REDIS_URL does not use TLS": {
            "RTP_REDIS_CA_FILE": str(certs.ca),
        },
        "RTP_REDIS_CA_FILE='/no/such/ca.pem': no such file": {
            "RTP_REDIS_URL": "rediss://h:6380/0",
            "RTP_REDIS_CA_FILE": "/no/such/ca.pem",
        },
        "RTP_REDIS_KEY_FILE is set without RTP_REDIS_CERT_FILE": {
            "RTP_REDIS_URL": "rediss://h:6380/0",
            "RTP_REDIS_KEY_FILE": str(certs.client_key),
        },
    }
    for expected, env in cases.items():
        message = problems(env)
        assert expected in message, (expected, message)
        assert PASSWORD not in message


def test_every_problem_is_listed_at_once(certs: Certs) -> None:
    message = problems(
        {
            "RTP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "RTP_KAFKA_CA_FILE": "/no/ca.pem",
            "RTP_REDIS_CERT_FILE": str(certs.client_cert),
        }
    )
    for name in ("RTP_KAFKA_USERNAME", "RTP_KAFKA_PASSWORD", "RTP_KAFKA_CA_FILE", "RTP_REDIS"):
        assert name in message


def test_good_tls_settings_pass(certs: Certs) -> None:
    env = env_for("SASL_SSL", certs, "SCRAM-SHA-512") | {
        "RTP_KAFKA_CERT_FILE": str(certs.client_cert),
        "RTP_KAFKA_KEY_FILE": str(certs.client_key),
        "RTP_REDIS_URL": "rediss://worker:pw@redis.internal:6380/0",
        "RTP_REDIS_CA_FILE": str(certs.ca),
        "RTP_REDIS_CERT_FILE": str(certs.client_cert),
        "RTP_REDIS_KEY_FILE": str(certs.client_key),
    }
    settings = Settings.from_env(env)
    assert settings.redis.tls == RedisTLS(
        str(certs.ca), str(certs.client_cert), str(certs.client_key)
    )


def test_settings_never_show_secrets(certs: Certs) -> None:
    base = Settings.from_env(
        env_for("SASL_SSL", certs)
        | {
            "RTP_REDIS_URL": "rediss://worker:redis-Secret-pw@redis:6380/2",
            "RTP_PSEUDONYM_KEY": "k" * 40,
        }
    )
    # Unvalidated copy: a key password without a certificate would be refused.
    kafka = base.kafka.model_copy(update={"key_password": SecretStr("key-Secret-pw")})
    settings = base.model_copy(update={"kafka": kafka})
    for text in (repr(settings), str(settings), f"{settings}", str(settings.model_dump())):
        for secret in (PASSWORD, "redis-Secret-pw", "key-Secret-pw", "k" * 40):
            assert secret not in text
    shown = repr(settings)
    assert "url=SecretStr('**********')" in shown
    assert "username='alice'" in shown and "max_tokens=64" in shown
    # A URL that fails to parse is shown without its password too.
    message = problems({"RTP_REDIS_URL": "http://worker:redis-Secret-pw@redis:6379/0"})
    assert "RTP_REDIS_URL" in message and "redis-Secret-pw" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://worker:pw@h:6379/1", "redis://***@h:6379/1"),
        ("rediss://:pw@h:6380/0", "rediss://***@h:6380/0"),
        ("redis://u:p@ss/w#rd@h:1/0", "redis://***@h:1/0"),  # unescaped @ / # in a password
        ("redis://h:1/0?password=pw&db=2", "redis://h:1/0?password=***&db=2"),
        ("redis://h/0?ssl_keyfile_password=pw", "redis://h/0?ssl_keyfile_password=***"),
        ("kafka://broker:9092", "kafka://broker:9092"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_secret_names() -> None:
    secret = ["kafka_password", "kafka_key_password", "pseudonym_key", "api_key", "auth_token"]
    plain = ["kafka_key_file", "redis_ca_file", "max_tokens", "top_tags", "ssl_keyfile"]
    assert all(is_secret_name(n) for n in secret)
    assert not any(is_secret_name(n) for n in plain)


async def test_redis_clients_get_the_tls_files(certs: Certs) -> None:
    tls = RedisTLS(str(certs.ca), str(certs.client_cert), str(certs.client_key))
    assert tls.options("redis://h:6379/0") == {}  # TLS files apply to rediss:// only
    blocking = sync_client("rediss://:pw@h:6380/0", tls)
    asyncio_client = async_client("rediss://:pw@h:6380/0", tls)
    for client in (blocking, asyncio_client):
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["ssl_ca_certs"] == str(certs.ca)
        assert kwargs["ssl_certfile"] == str(certs.client_cert)
        assert kwargs["ssl_keyfile"] == str(certs.client_key)
        assert kwargs["ssl_cert_reqs"] == "required" and kwargs["ssl_check_hostname"] is True
    blocking.close()
    await asyncio_client.aclose()
