"""Kafka and Redis security from the settings: TLS, SASL, and keeping secrets out of logs.

* :func:`broker_credentials` gives Faust's ``broker_credentials`` (the worker's consumer and
  producer); :func:`kafka_client_kwargs` gives the same as keyword arguments for the raw
  aiokafka clients of the tools (``produce``, ``lag``, ``dlq``, the demo). Both build on
  :func:`kafka_ssl_context`, so the worker and the tools trust the same CA.
* :func:`settings_problems` checks the combinations ``Settings.from_env`` cannot check one
  variable at a time (SASL without a password, a CA file that does not exist, ...).
* :func:`redact_url` and :func:`is_secret_name` keep passwords and keys out of log lines,
  error messages and ``repr(settings)``.

Redis needs no translation here: the URL carries user, password and ``rediss://``, and
:class:`profiles.redis.client.RedisTLS` the CA and client certificate files.
"""

from __future__ import annotations

import os
import re
import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from stream.settings import Settings

PROTOCOLS: tuple[str, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
REDACTED = "***"

# Words of setting names and URL query parameters whose values are secrets: anywhere in
# the name, or (the second set) as its last word, so `pseudonym_key` is one, `key_file` not.
_SECRET_WORDS = frozenset({"password", "passwd", "pwd", "secret", "credentials"})
_SECRET_LAST_WORDS = frozenset({"key", "token", "apikey"})


def uses_tls(protocol: str) -> bool:
    return protocol in ("SSL", "SASL_SSL")


def uses_sasl(protocol: str) -> bool:
    return protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for the brokers (None without TLS): verifies the broker's certificate
    and host name against ``RTP_KAFKA_CA_FILE`` (or the system store), and presents the
    client certificate when one is configured."""
    if not uses_tls(settings.kafka_security_protocol):
        return None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=settings.kafka_ca_file or None
    )
    if settings.kafka_cert_file:
        context.load_cert_chain(
            settings.kafka_cert_file,
            settings.kafka_key_file or None,
            # Never None: OpenSSL would then prompt on the terminal for an encrypted key.
            password=settings.kafka_key_password or _no_password,
        )
    return context


def _no_password() -> str:
    return ""


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's ``broker_credentials``: SASL (over TLS or not), TLS alone, or None."""
    import faust

    protocol = settings.kafka_security_protocol
    context = kafka_ssl_context(settings)
    if uses_sasl(protocol):
        return faust.SASLCredentials(
            username=settings.kafka_username,
            password=settings.kafka_password,
            ssl_context=context,  # with a context Faust speaks SASL_SSL, else SASL_PLAINTEXT
            mechanism=settings.kafka_sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for ``AIOKafkaProducer``/``AIOKafkaConsumer``/admin clients."""
    protocol = settings.kafka_security_protocol
    out: dict[str, Any] = {"security_protocol": protocol}
    context = kafka_ssl_context(settings)
    if context is not None:
        out["ssl_context"] = context
    if uses_sasl(protocol):
        out["sasl_mechanism"] = settings.kafka_sasl_mechanism
        out["sasl_plain_username"] = settings.kafka_username
        out["sasl_plain_password"] = settings.kafka_password
    return out


def settings_problems(settings: Settings) -> list[str]:
    """What is wrong with the security settings taken together, one line per problem."""
    return _kafka_problems(settings) + _redis_problems(settings) + _web_problems(settings)


def _kafka_problems(s: Settings) -> list[str]:
    problems: list[str] = []
    protocol = s.kafka_security_protocol
    where = f"with RTP_KAFKA_SECURITY_PROTOCOL={protocol}"
    credentials = (
        ("RTP_KAFKA_USERNAME", s.kafka_username),
        ("RTP_KAFKA_PASSWORD", s.kafka_password),
    )
    for env, value in credentials:
        if uses_sasl(protocol) and not value:
            problems.append(f"{env}: required {where} (SASL {s.kafka_sasl_mechanism})")
        elif not uses_sasl(protocol) and value:
            problems.append(
                f"{env} is set but is not sent {where}: use SASL_SSL (or SASL_PLAINTEXT)"
            )
    tls_files = (
        ("RTP_KAFKA_CA_FILE", s.kafka_ca_file),
        ("RTP_KAFKA_CERT_FILE", s.kafka_cert_file),
        ("RTP_KAFKA_KEY_FILE", s.kafka_key_file),
    )
    if not uses_tls(protocol):
        for env, value in (*tls_files, ("RTP_KAFKA_KEY_PASSWORD", s.kafka_key_password)):
            if value:
                problems.append(f"{env} is set but TLS is off {where}: use SSL or SASL_SSL")
        return problems
    file_problems = _file_problems(tls_files)
    if s.kafka_key_file and not s.kafka_cert_file:
        file_problems.append("RTP_KAFKA_KEY_FILE is set without RTP_KAFKA_CERT_FILE")
    if s.kafka_key_password and not s.kafka_cert_file:
        file_problems.append("RTP_KAFKA_KEY_PASSWORD is set without RTP_KAFKA_CERT_FILE")
    if not file_problems:
        try:
            kafka_ssl_context(s)
        except (ssl.SSLError, OSError, ValueError) as exc:
            file_problems.append(f"RTP_KAFKA_CA_FILE/CERT_FILE/KEY_FILE cannot be loaded: {exc}")
    return problems + file_problems


def _redis_problems(s: Settings) -> list[str]:
    tls_files = (
        ("RTP_REDIS_CA_FILE", s.redis_ca_file),
        ("RTP_REDIS_CERT_FILE", s.redis_cert_file),
        ("RTP_REDIS_KEY_FILE", s.redis_key_file),
    )
    if not s.redis_url.startswith("rediss://"):
        return [
            f"{env} is set but RTP_REDIS_URL does not use TLS: write rediss://..."
            for env, value in tls_files
            if value
        ]
    problems = _file_problems(tls_files)
    if s.redis_key_file and not s.redis_cert_file:
        problems.append("RTP_REDIS_KEY_FILE is set without RTP_REDIS_CERT_FILE")
    if not problems:
        try:  # what redis-py will do at connect time, so a bad file fails now, by name
            context = ssl.create_default_context(cafile=s.redis_ca_file or None)
            if s.redis_cert_file:
                context.load_cert_chain(
                    s.redis_cert_file, s.redis_key_file or None, password=_no_password
                )
        except (ssl.SSLError, OSError, ValueError) as exc:
            problems.append(f"RTP_REDIS_CA_FILE/CERT_FILE/KEY_FILE cannot be loaded: {exc}")
    return problems


def _web_problems(s: Settings) -> list[str]:
    """The API's tokens: a file that can be read and parsed, and no contradiction with open."""
    from stream.tokens import TokenError, read_file

    problems = []
    if s.web_tokens_file:
        try:
            read_file(s.web_tokens_file)
        except TokenError as exc:
            problems.append(f"RTP_WEB_TOKENS_FILE: {exc}")
    if s.web_open and (s.web_tokens or s.web_tokens_file):
        problems.append(
            "RTP_WEB_OPEN=true turns authentication off, yet RTP_WEB_TOKENS(_FILE) is set: "
            "unset one of them"
        )
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


def redact_value(name: str, value: Any) -> Any:
    """How a setting is shown: secrets as ``***`` (when set), URLs without credentials."""
    if is_secret_name(name) and value:
        return REDACTED
    if isinstance(value, str):
        return redact_url(value)
    return value
