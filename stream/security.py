"""Kafka and Redis security from the settings: TLS, SASL, and keeping secrets out of logs.

* :func:`broker_credentials` gives Faust's ``broker_credentials`` (the worker's consumer and
  producer); :func:`kafka_client_kwargs` gives the same as keyword arguments for the raw
  aiokafka clients of the tools (``produce``, ``lag``, ``dlq``, the demo). Both build on
  :func:`kafka_ssl_context`, so the worker and the tools trust the same CA.
* :func:`kafka_problems` and :func:`redis_problems` check the combinations that cannot be
  checked one variable at a time (SASL without a password, a CA file that does not exist, ...);
  the settings sections run them as their validators.
* :func:`redact_url` and :func:`is_secret_name` keep passwords and keys out of log lines
  and error messages (the settings hold secrets as ``SecretStr``).

This module does not import :mod:`stream.settings` (which imports it): the functions take any
object with the Kafka section's attributes (:class:`KafkaSecurity`).

Redis needs no translation here: the URL carries user, password and ``rediss://``, and
:class:`profiles.redis.client.RedisTLS` the CA and client certificate files.
"""

from __future__ import annotations

import os
import re
import ssl
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT
    from pydantic import SecretStr

    from profiles.redis.client import RedisTLS

PROTOCOLS: tuple[str, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
REDACTED = "***"

# Words of setting names and URL query parameters whose values are secrets: anywhere in
# the name, or (the second set) as its last word, so `pseudonym_key` is one, `key_file` not.
_SECRET_WORDS = frozenset({"password", "passwd", "pwd", "secret", "credentials"})
_SECRET_LAST_WORDS = frozenset({"key", "token", "apikey"})


class KafkaSecurity(Protocol):
    """What the Kafka clients need of the settings (``settings.kafka``)."""

    @property
    def security_protocol(self) -> str: ...
    @property
    def sasl_mechanism(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> SecretStr: ...
    @property
    def ca_file(self) -> str: ...
    @property
    def cert_file(self) -> str: ...
    @property
    def key_file(self) -> str: ...
    @property
    def key_password(self) -> SecretStr: ...


def uses_tls(protocol: str) -> bool:
    return protocol in ("SSL", "SASL_SSL")


def uses_sasl(protocol: str) -> bool:
    return protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def kafka_ssl_context(kafka: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context for the brokers (None without TLS): verifies the broker's certificate
    and host name against ``RTP_KAFKA_CA_FILE`` (or the system store), and presents the
    client certificate when one is configured."""
    if not uses_tls(kafka.security_protocol):
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=kafka.ca_file or None)
    if kafka.cert_file:
        context.load_cert_chain(
            kafka.cert_file,
            kafka.key_file or None,
            # Never None: OpenSSL would then prompt on the terminal for an encrypted key.
            password=kafka.key_password.get_secret_value() or _no_password,
        )
    return context


def _no_password() -> str:
    return ""


def broker_credentials(kafka: KafkaSecurity) -> CredentialsT | None:
    """Faust's ``broker_credentials``: SASL (over TLS or not), TLS alone, or None."""
    import faust

    protocol = kafka.security_protocol
    context = kafka_ssl_context(kafka)
    if uses_sasl(protocol):
        return faust.SASLCredentials(
            username=kafka.username,
            password=kafka.password.get_secret_value(),
            ssl_context=context,  # with a context Faust speaks SASL_SSL, else SASL_PLAINTEXT
            mechanism=kafka.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def kafka_client_kwargs(kafka: KafkaSecurity) -> dict[str, Any]:
    """Security keyword arguments for ``AIOKafkaProducer``/``AIOKafkaConsumer``/admin clients."""
    protocol = kafka.security_protocol
    out: dict[str, Any] = {"security_protocol": protocol}
    context = kafka_ssl_context(kafka)
    if context is not None:
        out["ssl_context"] = context
    if uses_sasl(protocol):
        out["sasl_mechanism"] = kafka.sasl_mechanism
        out["sasl_plain_username"] = kafka.username
        out["sasl_plain_password"] = kafka.password.get_secret_value()
    return out


def kafka_problems(s: KafkaSecurity) -> list[str]:
    """What is wrong with the Kafka security settings taken together, one line per problem."""
    problems: list[str] = []
    protocol = s.security_protocol
    where = f"with RTP_KAFKA_SECURITY_PROTOCOL={protocol}"
    credentials = (
        ("RTP_KAFKA_USERNAME", s.username),
        ("RTP_KAFKA_PASSWORD", s.password.get_secret_value()),
    )
    for env, value in credentials:
        if uses_sasl(protocol) and not value:
            problems.append(f"{env}: required {where} (SASL {s.sasl_mechanism})")
        elif not uses_sasl(protocol) and value:
            problems.append(
                f"{env} is set but is not sent {where}: use SASL_SSL (or SASL_PLAINTEXT)"
            )
    tls_files = (
        ("RTP_KAFKA_CA_FILE", s.ca_file),
        ("RTP_KAFKA_CERT_FILE", s.cert_file),
        ("RTP_KAFKA_KEY_FILE", s.key_file),
    )
    if not uses_tls(protocol):
        for env, value in (
            *tls_files,
            ("RTP_KAFKA_KEY_PASSWORD", s.key_password.get_secret_value()),
        ):
            if value:
                problems.append(f"{env} is set but TLS is off {where}: use SSL or SASL_SSL")
        return problems
    file_problems = _file_problems(tls_files)
    if s.key_file and not s.cert_file:
        file_problems.append("RTP_KAFKA_KEY_FILE is set without RTP_KAFKA_CERT_FILE")
    if s.key_password.get_secret_value() and not s.cert_file:
        file_problems.append("RTP_KAFKA_KEY_PASSWORD is set without RTP_KAFKA_CERT_FILE")
    if not file_problems:
        try:
            kafka_ssl_context(s)
        except (ssl.SSLError, OSError, ValueError) as exc:
            file_problems.append(f"RTP_KAFKA_CA_FILE/CERT_FILE/KEY_FILE cannot be loaded: {exc}")
    return problems + file_problems


def redis_problems(url: str, tls: RedisTLS) -> list[str]:
    """What is wrong with the Redis TLS settings taken together, one line per problem."""
    tls_files = (
        ("RTP_REDIS_CA_FILE", tls.ca_file),
        ("RTP_REDIS_CERT_FILE", tls.cert_file),
        ("RTP_REDIS_KEY_FILE", tls.key_file),
    )
    if not url.startswith(("rediss://", "rediss+cluster://")):
        return [
            f"{env} is set but RTP_REDIS_URL does not use TLS: write rediss://..."
            for env, value in tls_files
            if value
        ]
    problems = _file_problems(tls_files)
    if tls.key_file and not tls.cert_file:
        problems.append("RTP_REDIS_KEY_FILE is set without RTP_REDIS_CERT_FILE")
    if not problems:
        try:  # what redis-py will do at connect time, so a bad file fails now, by name
            context = ssl.create_default_context(cafile=tls.ca_file or None)
            if tls.cert_file:
                context.load_cert_chain(tls.cert_file, tls.key_file or None, password=_no_password)
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.append(f"RTP_REDIS_CA_FILE/CERT_FILE/KEY_FILE cannot be loaded: {exc}")
    return problems


def _file_problems(files: tuple[tuple[str, str], ...]) -> list[str]:
    problems = []
    for env, path in files:
        if not path:
            continue
        if not os.path.isfile(path):
            problems.append(f"{env}={path!r}: no such file")
        elif not os.access(path, os.R_OK):
            problems.append(f"{env}={path!r}: not readable by this user")
    return problems


def is_secret_name(name: str) -> bool:
    """Whether a setting or URL parameter named ``name`` holds a secret (password, key)."""
    words = re.split(r"[^a-z0-9]+", name.lower())
    return bool(_SECRET_WORDS.intersection(words)) or words[-1] in _SECRET_LAST_WORDS


def redact_url(url: str) -> str:
    """``url`` with its credentials replaced by ``***``: user info and secret query values.

    Everything up to the *last* ``@`` is treated as user info, so a password that itself
    contains ``@``, ``/`` or ``#`` (unescaped) is hidden whole. Text that is not a URL is
    returned as it is.
    """
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    if "@" in rest:
        rest = f"{REDACTED}@{rest.rsplit('@', 1)[1]}"
    if "?" in rest:
        base, query = rest.split("?", 1)
        pairs = []
        for pair in query.split("&"):
            name, eq, _ = pair.partition("=")
            pairs.append(f"{name}={REDACTED}" if eq and is_secret_name(name) else pair)
        rest = f"{base}?{'&'.join(pairs)}"
    return f"{scheme}://{rest}"
