"""Bearer tokens of the worker's HTTP API: parsing, constant-time lookup, and who may see what.

A token entry is ``TOKEN`` (read scope) or ``SCOPES:TOKEN`` with SCOPES one or more of
:data:`SCOPES` joined by ``+`` (``read+ops:4f1c...``). ``RTP_WEB_TOKENS`` holds entries separated
by commas or white space; ``RTP_WEB_TOKENS_FILE`` one entry per line (``#`` starts a comment),
re-read when the file changes, so a token is added or revoked without a restart.

Only SHA-256 digests of the tokens are kept, and a presented token is compared with every one
of them by :func:`hmac.compare_digest`, without stopping at a match: the time taken says
neither how much of a token was right nor which token matched.

No settings import here: :mod:`stream.settings` and :mod:`stream.security` use this module.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from dataclasses import dataclass

READ = "read"  # profiles, recommendations, segments, /stats: personal or business data
OPS = "ops"  # /health and /metrics, when RTP_WEB_OPEN_OPS=false
SCOPES: tuple[str, ...] = (READ, OPS)
#: Paths of the ops scope; every other path (Faust's own pages too) needs the read scope.
OPS_PATHS = frozenset({"/health", "/metrics"})
MIN_TOKEN_CHARS = 16
log = logging.getLogger(__name__)
REALM = "realtime-profiles"

# RFC 6750's b64token: what may follow "Bearer " in an Authorization header.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")


class TokenError(ValueError):
    """A token entry that cannot be used; the message says which and why (never the token)."""


def parse_entries(
    text: str, where: str = "entry", lines: bool = False
) -> list[tuple[str, frozenset[str]]]:
    """``(token, scopes)`` for each entry of ``text``: separated by commas or white space, or
    with ``lines`` one per line with ``#`` comments (a file)."""
    if lines:
        chunks = [
            (f"{where} line {n}", line.split("#", 1)[0].strip())
            for n, line in enumerate(text.splitlines(), start=1)
        ]
    else:
        chunks = [
            (f"{where} #{n}", part)
            for n, part in enumerate(re.split(r"[\s,]+", text.strip()), start=1)
        ]
    return [_entry(label, chunk) for label, chunk in chunks if chunk]


def _entry(label: str, chunk: str) -> tuple[str, frozenset[str]]:
    scopes_part, colon, token = chunk.rpartition(":")
    if not colon:
        scopes_part, token = READ, chunk
    scopes = frozenset(s.strip().lower() for s in scopes_part.split("+"))
    unknown = sorted(scopes - set(SCOPES))
    if unknown:
        raise TokenError(f"{label}: unknown scope {unknown[0]!r} (scopes: {', '.join(SCOPES)})")
    if not _TOKEN.fullmatch(token):
        raise TokenError(
            f"{label}: a token is letters, digits and - . _ ~ + / (then = padding) only"
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenError(
            f"{label}: a token needs at least {MIN_TOKEN_CHARS} characters (`openssl rand -hex 32`)"
        )
    return token, scopes


def read_file(path: str) -> list[tuple[str, frozenset[str]]]:
    """The entries of a token file; :class:`TokenError` if it is missing, unreadable or bad."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"{path!r} cannot be read: {exc.__class__.__name__}") from exc
    return parse_entries(text, where=path, lines=True)


def first_with(scope: str, inline: str = "", path: str = "") -> str | None:
    """A configured token with ``scope`` (for a tool asking its own workers), or None."""
    entries = parse_entries(inline, "RTP_WEB_TOKENS") + (read_file(path) if path else [])
    return next((token for token, scopes in entries if scope in scopes), None)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when there is none.
    A header in another scheme, or a malformed one, gives ``""`` (present but not valid)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
        return ""
    return token


class TokenSet:
    """The valid tokens and their scopes, from the setting and (re-read on change) the file."""

    def __init__(self, inline: str = "", path: str = "", recheck_s: float = 1.0) -> None:
        self._inline = [(_digest(t), s) for t, s in parse_entries(inline, "RTP_WEB_TOKENS")]
        self._path = path
        self._recheck_s = recheck_s
        self._file: list[tuple[bytes, frozenset[str]]] = []
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")
        self.file_error: str | None = None
        if path:
            self._load()

    def _load(self) -> None:
        """Read the file if it changed; a bad or missing file counts as no file tokens (a
        half-edited file must not keep a revoked token valid)."""
        self._checked = time.monotonic()
        try:
            info = os.stat(self._path)
            stamp = (info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = None
        if stamp is not None and stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._file = [(_digest(t), s) for t, s in read_file(self._path)]
            self.file_error = None
        except TokenError as exc:
            if exc.args[0] != self.file_error:
                log.error("API tokens file not used (no token of it is valid now): %s", exc)
            self._file, self.file_error = [], str(exc)

    def refresh(self) -> None:
        """Re-read the file if it changed, at most once per ``recheck_s``."""
        if self._path and time.monotonic() - self._checked >= self._recheck_s:
            self._load()

    def __len__(self) -> int:
        return len(self._inline) + len(self._file)

    def count(self, scope: str) -> int:
        return sum(scope in s for _, s in (*self._inline, *self._file))

    def scopes(self, token: str) -> frozenset[str] | None:
        """The scopes of ``token``, None if it is not one of ours (constant time: every
        stored digest is compared, whatever matched before)."""
        presented = _digest(token)
        found: frozenset[str] | None = None
        for digest, scopes in (*self._inline, *self._file):
            if hmac.compare_digest(presented, digest):
                found = scopes
        return found


@dataclass(frozen=True)
class Denial:
    """Why a request is refused: HTTP status, ``WWW-Authenticate`` value and a message."""

    status: int
    challenge: str
    message: str


class Guard:
    """Which scope each path needs, and whether a request's ``Authorization`` grants it."""

    def __init__(self, tokens: TokenSet, open_all: bool = False, open_ops: bool = True) -> None:
        self.tokens, self.open_all, self.open_ops = tokens, open_all, open_ops

    def scope_for(self, path: str) -> str | None:
        """The scope ``path`` needs, or None when it is open."""
        if self.open_all:
            return None
        if path.rstrip("/") in OPS_PATHS or path in OPS_PATHS:
            return None if self.open_ops else OPS
        return READ

    def check(self, path: str, authorization: str | None) -> Denial | None:
        """None if the request may go on; else how to refuse it (before any work)."""
        scope = self.scope_for(path)
        if scope is None:
            return None
        self.tokens.refresh()
        token = bearer(authorization)
        if token is None:
            message = (
                "authentication required: send 'Authorization: Bearer <token>'"
                if len(self.tokens)
                else "authentication required, and this worker has no tokens: set "
                "RTP_WEB_TOKENS or RTP_WEB_TOKENS_FILE (or RTP_WEB_OPEN=true on a laptop)"
            )
            return Denial(401, f'Bearer realm="{REALM}", scope="{scope}"', message)
        granted = self.tokens.scopes(token) if token else None
        if granted is None:
            return Denial(
                401,
                f'Bearer realm="{REALM}", error="invalid_token", '
                'error_description="unknown or malformed token"',
                "invalid token",
            )
        if scope not in granted:
            return Denial(
                403,
                f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"',
                f"this token lacks the {scope!r} scope",
            )
        return None

    def describe(self) -> str:
        """One line for the worker's log: how the API is protected."""
        if self.open_all:
            return "OPEN: no authentication (RTP_WEB_OPEN=true; for a laptop only)"
        ops = "/health and /metrics open" if self.open_ops else "/health and /metrics need 'ops'"
        if not len(self.tokens):
            return f"closed: no tokens (set RTP_WEB_TOKENS or RTP_WEB_TOKENS_FILE); {ops}"
        return (
            f"bearer tokens: {self.tokens.count(READ)} with 'read', "
            f"{self.tokens.count(OPS)} with 'ops'; {ops}"
        )
