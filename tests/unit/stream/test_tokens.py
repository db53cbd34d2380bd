"""API bearer tokens (stream/tokens.py): entries, scopes, files, constant-time lookup, the
guard's answers, and the settings that configure them."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import pytest

from stream import tokens
from stream.settings import Settings, SettingsError
from stream.tokens import OPS, READ, Guard, TokenError, TokenSet, bearer, parse_entries

A = "a" * 32
B = "b1b2b3b4b5b6b7b8b9b0"
C = "c-c.c_c~c+c/c0c1c2=="


def test_entries_default_to_read_and_take_scopes() -> None:
    assert parse_entries(f"{A}, ops:{B}\n read+ops:{C}") == [
        (A, frozenset({READ})),
        (B, frozenset({OPS})),
        (C, frozenset({READ, OPS})),
    ]
    assert parse_entries("  ") == []


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("short", "at least 16"),
        ("admin:" + A, "unknown scope 'admin'"),
        ("read:" + "x" * 15, "at least 16"),
        ("read:" + "é" * 20, "letters, digits"),
        ("read:" + "a" * 10 + '"' + "a" * 10, "letters, digits"),
    ],
)
def test_bad_entries_are_refused_without_echoing_them(entry: str, says: str) -> None:
    with pytest.raises(TokenError) as refused:
        parse_entries(entry, "RTP_WEB_TOKENS")
    assert says in str(refused.value) and "RTP_WEB_TOKENS #1" in str(refused.value)
    token = entry.rpartition(":")[2]
    assert token not in str(refused.value)


def test_bearer_header_parsing() -> None:
    assert bearer(None) is None
    assert bearer(f"Bearer {A}") == A
    assert bearer(f"bearer   {A} ") == A
    assert bearer(f"Basic {A}") == ""
    assert bearer("Bearer") == ""
    assert bearer("Bearer two words") == ""


def test_lookup_compares_every_token_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stored digest is compared with hmac.compare_digest, on equal-length digests,
    whether the token matches the first, the last or none: no early exit, no length leak."""
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", counting)
    found = TokenSet(f"{A},ops:{B},read+ops:{C}")
    for presented, expected in ((A, {READ}), (C, {READ, OPS}), ("z" * 40, None), ("z", None)):
        calls.clear()
        scopes = found.scopes(presented)
        assert (None if scopes is None else set(scopes)) == expected
        assert calls == [(32, 32)] * 3


def test_file_tokens_are_reread_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# ops team\n{A}\nops:{B}  # prometheus\n\n")
    found = TokenSet("", str(path), recheck_s=0.0)
    assert found.scopes(A) == {READ} and found.scopes(B) == {OPS} and len(found) == 2
    path.write_text(f"read+ops:{C}\n")
    os.utime(path, ns=(1, 1))  # a new stamp, even within the file system's time resolution
    found.refresh()
    assert found.scopes(A) is None and found.scopes(C) == {READ, OPS}
    # A broken edit drops the file's tokens (fail closed) and says why; inline ones remain.
    both = TokenSet(B, str(path), recheck_s=0.0)
    path.write_text("read:tooshort\n")
    os.utime(path, ns=(2, 2))
    both.refresh()
    assert both.scopes(C) is None and both.scopes(B) == {READ}
    assert both.file_error is not None and "line 1" in both.file_error


def test_guard_answers() -> None:
    guard = Guard(TokenSet(f"{A},ops:{B}"))
    assert guard.check("/health", None) is None and guard.check("/metrics", None) is None
    missing = guard.check("/stats", None)
    assert missing is not None and missing.status == 401
    assert missing.challenge.startswith("Bearer realm=")
    wrong = guard.check("/users/u1", f"Bearer {C}")
    assert wrong is not None and wrong.status == 401 and 'error="invalid_token"' in wrong.challenge
    other_scheme = guard.check("/users/u1", f"Basic {A}")
    assert other_scheme is not None and other_scheme.status == 401
    scope = guard.check("/segments", f"Bearer {B}")
    assert scope is not None and scope.status == 403 and "insufficient_scope" in scope.challenge
    assert guard.check("/segments", f"Bearer {A}") is None
    # Faust's own pages and unknown paths need the read scope too.
    assert guard.check("/router", None) is not None and guard.check("/nope", None) is not None


def test_guard_ops_closed_and_open_mode() -> None:
    closed_ops = Guard(TokenSet(f"{A},ops:{B}"), open_ops=False)
    denied = closed_ops.check("/metrics", f"Bearer {A}")
    assert denied is not None and denied.status == 403
    assert closed_ops.check("/metrics", f"Bearer {B}") is None
    assert closed_ops.check("/health", None) is not None
    open_all = Guard(TokenSet(), open_all=True)
    assert open_all.check("/users/u", None) is None and "OPEN" in open_all.describe()


def test_no_tokens_means_closed() -> None:
    guard = Guard(TokenSet())
    denied = guard.check("/users/u", None)
    assert denied is not None and denied.status == 401 and "RTP_WEB_TOKENS" in denied.message
    assert guard.check("/health", None) is None
    assert "closed" in guard.describe()


def test_settings(tmp_path: Path) -> None:
    settings = Settings.from_env({"RTP_WEB_TOKENS": f"{A}, ops:{B}"})
    assert A not in repr(settings) and B not in repr(settings)
    assert not settings.web.open and settings.web.open_ops
    with pytest.raises(SettingsError) as bad:
        Settings.from_env({"RTP_WEB_TOKENS": "read:short-one"})
    assert "RTP_WEB_TOKENS=<secret>" in str(bad.value) and "short-one" not in str(bad.value)
    with pytest.raises(SettingsError, match=r"RTP_WEB_TOKENS_FILE: .*cannot be read"):
        Settings.from_env({"RTP_WEB_TOKENS_FILE": str(tmp_path / "absent")})
    path = tmp_path / "tokens"
    path.write_text("ops:tooshort\n")
    with pytest.raises(SettingsError, match="line 1: a token needs at least 16"):
        Settings.from_env({"RTP_WEB_TOKENS_FILE": str(path)})
    with pytest.raises(SettingsError, match="RTP_WEB_OPEN=true turns authentication off"):
        Settings.from_env({"RTP_WEB_OPEN": "1", "RTP_WEB_TOKENS": A})
    path.write_text(f"{A}\n")
    assert tokens.first_with(READ, "", str(path)) == A
    assert tokens.first_with(READ, f"ops:{B}", "") is None


@pytest.mark.parametrize(
    ("raw", "broker", "hosts"),
    [
        ("kafka://a:9092", "kafka://a:9092", ["a:9092"]),
        ("kafka://a:1,b:2", "kafka://a:1;kafka://b:2", ["a:1", "b:2"]),
        ("kafka://a:1, kafka://b:2", "kafka://a:1;kafka://b:2", ["a:1", "b:2"]),
        (
            "kafka://a:1;b:2,kafka://c:3",
            "kafka://a:1;kafka://b:2;kafka://c:3",
            ["a:1", "b:2", "c:3"],
        ),
    ],
)
def test_broker_lists_with_commas_or_semicolons(raw: str, broker: str, hosts: list[str]) -> None:
    settings = Settings.from_env({"RTP_BROKER": raw})
    assert settings.kafka.broker == broker and settings.kafka.broker_hosts == hosts


@pytest.mark.parametrize("raw", ["a:1", "kafka://", "kafka://a b:1", "kafka://a:1,b/x:2"])
def test_bad_broker_lists(raw: str) -> None:
    with pytest.raises(SettingsError, match="RTP_BROKER"):
        Settings.from_env({"RTP_BROKER": raw})
