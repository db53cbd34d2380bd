"""The guides' snippets (docs/producers.md, docs/consumers.md) run as written against the real
embedded broker, a real worker and Redis; only the broker address, topic names and consumer
group are substituted, and idempotence is off (the embedded broker has no producer ids, as
the producer guide says)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from profiles.redis import keys
from tests.integration.harness import ROOT, Names, Worker, produce, read_topic
from tests.integration.oracle import eventually

pytestmark = pytest.mark.integration

GUIDES = ("producers.md", "consumers.md")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
_MARK = re.compile(r"\A# guide: (\w+)\n")


def snippets(guide: str) -> dict[str, tuple[str, str]]:
    """Marked snippets of one guide: name -> (language, code)."""
    out: dict[str, tuple[str, str]] = {}
    for lang, body in _FENCE.findall((ROOT / "docs" / guide).read_text("utf-8")):
        mark = _MARK.match(body)
        if lang in ("python", "bash"):
            # Every code block is meant to run, so an unmarked one is an error.
            assert mark, f"{guide}: unmarked {lang} block:\n{body[:200]}"
        if mark:
            assert mark.group(1) not in out, f"{guide}: two snippets named {mark.group(1)}"
            out[mark.group(1)] = (lang, body)
    return out


def test_guides_have_their_snippets() -> None:
    found = {guide: set(snippets(guide)) for guide in GUIDES}
    assert found == {
        "producers.md": {"produce", "segment", "erase", "validate"},
        "consumers.md": {"consume"},
    }


def _substitute(code: str, brokers: str, names: Names, group: str) -> str:
    return (
        code.replace('"127.0.0.1:9092"', repr(brokers))
        .replace('"site-events"', repr(names.input))
        .replace('"profile-updated"', repr(names.profiles))
        .replace('"guide-example"', repr(group))
        # Tansu has no producer ids; the guide says to switch idempotence off for it.
        .replace("IDEMPOTENT = True", "IDEMPOTENT = False")
    )


async def _run(lang: str, code: str, timeout: float = 180.0) -> str:
    argv = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euc", code]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode()
    assert proc.returncode == 0, text
    return text


async def test_validate_snippet_prints_reasons() -> None:
    lang, code = snippets("producers.md")["validate"]
    out = await _run(lang, code)
    assert "4 events, 2 valid, 2 invalid" in out
    assert "invalid_json" in out and "unmapped_segment_event" in out
    assert "search 2" in out


async def test_produce_then_consume_with_dedup_and_tombstone(
    worker: Worker, brokers: str, names: Names, redis_client: aioredis.Redis
) -> None:
    prod = snippets("producers.md")
    cons = snippets("consumers.md")

    def code(snippet: tuple[str, str], group: str = "") -> tuple[str, str]:
        return snippet[0], _substitute(snippet[1], brokers, names, group)

    async def has(user: str) -> bool:
        return bool(await redis_client.exists(keys.profile(user)))

    # Our events and a Segment call both land as profiles.
    await _run(*code(prod["produce"]))
    await _run(*code(prod["segment"]))
    await eventually(lambda: has("u-guide-1"), timeout=120)
    await eventually(lambda: has("u-guide-2"), timeout=120)

    # A re-sent output (what a worker crash between commits does) for the consumer to skip.
    first = await read_topic(
        brokers, names.profiles, lambda got: any(c.key == b"u-guide-2" for c in got), timeout=120
    )
    again = next(c for c in first if c.key == b"u-guide-2")
    assert again.value is not None
    await produce(brokers, names.profiles, [orjson.loads(again.value)], key=lambda _: again.key)

    await _run(*code(prod["erase"]))

    async def gone() -> bool:
        return not await has("u-guide-1")

    await eventually(gone, timeout=120)
    await read_topic(
        brokers,
        names.profiles,
        lambda got: any(c.key == b"u-guide-1" and c.value is None for c in got),
        timeout=120,
    )

    out = await _run(*code(cons["consume"], f"guide-{uuid.uuid4().hex[:8]}"))
    lines = out.splitlines()
    assert "tombstone u-guide-1" in lines, out
    assert any(line.startswith("profile u-guide-1 version ") for line in lines), out
    assert any(line.startswith("profile u-guide-2 version 1 ") for line in lines), out
    assert sum(line.startswith("profile u-guide-2 ") for line in lines) == 1, out
    # u-guide-1 was erased, so only u-guide-2 is left; the re-sent copy was skipped.
    assert lines[-1] == "done: 1 users, 1 duplicates skipped", out
