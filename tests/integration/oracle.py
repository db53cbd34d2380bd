"""Recompute profiles offline from the input log with the same pure code the worker runs."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from profiles.core.config import ProfileConfig
from profiles.core.partition import InputPartition
from profiles.core.profile import Profile, Record, apply
from profiles.core.stitch import merge
from profiles.redis import keys
from profiles.tags.event_tags import event_tags
from profiles.tags.extractor import TagExtractor
from schemas.validate import Limits, Rejected, decode
from tests.integration.harness import Consumed, produce, read_topic


def replay_log(
    topic: str, log: list[Consumed], epochs: Sequence[list[Consumed]] = ()
) -> tuple[dict[str, dict[str, Any]], dict[str, list[Record]]]:
    """The input log decoded as the worker sees it: (catalog by product, records by user).

    ``epochs``: logs of the same topic after its offsets started again (re-created), in order;
    the worker fences their records under ``<topic>#<n>:<partition>`` (stream.worker.epochs).
    """
    items: dict[str, dict[str, Any]] = {}
    by_user: dict[str, list[Record]] = defaultdict(list)
    for epoch, part in enumerate([log, *epochs]):
        for msg in sorted(part, key=lambda m: (m.partition, m.offset)):
            event = decode(msg.value, Limits(), now_ms=int(time.time() * 1000))
            if isinstance(event, Rejected):
                continue
            if event["type"] == "product":
                items[event["product_id"]] = event
                continue
            if event["type"] == "identify":  # a link, no event of a profile (replay_links)
                continue
            event.pop("anonymous_id", None)  # a call with both ids: the user's event
            by_user[event["user_id"]].append(
                Record(InputPartition(topic, msg.partition, epoch), msg.offset, event)
            )
    return items, by_user


def replay_links(log: list[Consumed]) -> dict[str, str]:
    """The links of the input log (anonymous profile id -> user id), the first of each
    anonymous id in log order (the test traffic links each anonymous id to one user)."""
    links: dict[str, str] = {}
    for msg in sorted(log, key=lambda m: (m.partition, m.offset)):
        event = decode(msg.value, Limits(), now_ms=int(time.time() * 1000))
        if not isinstance(event, Rejected) and "anonymous_id" in event:
            links.setdefault(event["anonymous_id"], event["user_id"])
    return links


def expected_profiles(
    topic: str,
    log: list[Consumed],
    config: ProfileConfig,
    epochs: Sequence[list[Consumed]] = (),
) -> dict[str, bytes]:
    """Profile blobs as the worker must have stored them (producer keyed by user)."""
    tagger = TagExtractor()
    items, by_user = replay_log(topic, log, epochs)
    out = {}
    for user, records in by_user.items():
        profile = Profile(user)
        apply(profile, records, config, lambda e: event_tags(e, tagger, items))
        out[user] = profile.to_bytes()
    return out


async def stored_profiles(client: aioredis.Redis, users: list[str]) -> dict[str, bytes | None]:
    pipe = client.pipeline(transaction=False)
    for user in users:
        pipe.hget(keys.profile(user), "d")
    return dict(zip(users, await pipe.execute(), strict=True))


#: What a check may raise while the worker (or this test's own loop) is too busy to answer
#: in time: "not yet", not a failure; the deadline still bounds the wait.
TRANSIENT = (TimeoutError, aiohttp.ClientError)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if await check():
                return
        except TRANSIENT as exc:
            last = exc
        await asyncio.sleep(0.3)
    raise AssertionError(f"not reached within {timeout}s (last transient error: {last!r})")


def diff(expected: dict[str, bytes], stored: dict[str, bytes | None]) -> list[str]:
    """Users whose stored profile differs from the offline one (for assertion messages)."""
    bad = []
    for user, blob in expected.items():
        if stored.get(user) != blob:
            got = stored.get(user)
            want = orjson.loads(blob)
            have = orjson.loads(got) if got else None
            fields = sorted(k for k in want if have is None or want[k] != have.get(k))
            detail = {
                k: (want[k], have.get(k) if have else None)
                for k in fields
                if k in ("counts", "first_ts", "last_ts", "fences")
            }
            bad.append(f"{user}: {fields} {detail}")
    return bad


async def until_stored(
    client: aioredis.Redis, expected: dict[str, bytes], timeout: float = 120.0
) -> None:
    """Wait until Redis holds exactly the ``expected`` profile blobs; else fail the test with
    the first users that differ."""
    users = sorted(expected)

    async def matches() -> bool:
        return not diff(expected, await stored_profiles(client, users))

    try:
        await eventually(matches, timeout=timeout)
    except AssertionError:
        pytest.fail(f"profiles differ: {diff(expected, await stored_profiles(client, users))[:5]}")


async def until_offline_profiles(
    brokers: str,
    topic: str,
    count: int,
    client: aioredis.Redis,
    config: ProfileConfig,
    timeout: float = 120.0,
) -> list[str]:
    """Read the input log back (``count`` messages), compute the offline profiles and wait
    until Redis equals them (:func:`until_stored`); returns the users, sorted."""
    log = await read_topic(brokers, topic, lambda got: len(got) >= count)
    expected = expected_profiles(topic, log, config)
    await until_stored(client, expected, timeout)
    return sorted(expected)


async def produce_until_offline_profiles(
    brokers: str,
    topic: str,
    events: Sequence[dict[str, Any]],
    client: aioredis.Redis,
    config: ProfileConfig,
    timeout: float = 120.0,
) -> list[str]:
    """Produce ``events`` keyed by user, then :func:`until_offline_profiles`."""
    await produce(brokers, topic, events, key=lambda e: str(e["user_id"]).encode())
    return await until_offline_profiles(brokers, topic, len(events), client, config, timeout)


# -- identity stitching (profiles/core/stitch.py) ------------------------------------------------


def expected_stitched(
    by_user: dict[str, list[Record]],
    links: dict[str, str],
    config: ProfileConfig,
    tagger: Callable[[dict[str, Any]], Any],
) -> dict[str, Profile]:
    """Profiles once every link (anonymous profile id -> user id) is merged.

    Offline, an anonymous id's events all go to its own profile, merged into the user's at the
    end; live, the seal falls anywhere in the stream and the later events are forwarded to the
    user. Both give the same :func:`behaviour` (sums, min/max, anchored tag sums), which is what
    a comparison must use: fences and id windows differ by where the seal fell.
    """
    out: dict[str, Profile] = {}
    for owner, records in by_user.items():
        profile = Profile(owner)
        apply(profile, sorted(records, key=lambda r: (r.source.key, r.offset)), config, tagger)
        out[owner] = profile
    for anon, user in sorted(links.items()):
        if anon in out:
            merge(out.setdefault(user, Profile(user)), out.pop(anon), config)
    return out


def behaviour(profile: Profile, config: ProfileConfig) -> dict[str, Any]:
    """What stitching must preserve exactly (tags rounded: summed in another order)."""
    as_of = profile.last_ts
    tags = profile.top_tags(config.top_tags, config.half_life_ms, as_of)
    return {
        "counts": dict(sorted(profile.counts.items())),
        "rfm": profile.rfm(),
        "items_bought": profile.items_bought,
        "span": (profile.first_ts, profile.last_ts),
        "purchased": sorted(profile.purchased),
        "tags": {tag: round(score, 6) for tag, score in tags},
        "merged": sorted(profile.merged),
    }
