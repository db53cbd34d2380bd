"""``python -m stream demo``: everything on loopback, and a live view of it working."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Group
from rich.live import Live
from rich.table import Table

from profiles.redis.store import RedisStore
from stream.cli.dlq import dlq_counts
from stream.devtools.dev import local_services, start_local
from stream.settings import FAUST_LEVELS, Settings


def start_worker(
    settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """The real worker, as its own process (as in production), logging to a file."""
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "stream", "worker", "-l", FAUST_LEVELS[settings.worker.log_level]],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RTP_WEB_PORT": str(settings.web.port), **(extra_env or {})},
        start_new_session=True,  # Ctrl-C reaches us; we stop the worker in order
    )


def demo_token(settings: Settings) -> tuple[str | None, dict[str, str]]:
    """The token the demo asks its worker with, and the environment that makes it valid.

    A configured 'read' token if there is one; else a fresh one for this demo only (the API
    stays closed to anyone without it); none with RTP_WEB_OPEN=true."""
    from stream.tokens import READ, first_with

    if settings.web.open:
        return None, {}
    token = first_with(READ, settings.web.token_list, settings.web.tokens_file)
    if token is not None:
        return token, {}
    token = secrets.token_hex(16)
    tokens = ",".join(t for t in (settings.web.token_list, f"read+ops:{token}") if t)
    return token, {"RTP_WEB_TOKENS": tokens}


def how_to_query(settings: Settings, token: str | None) -> str:
    """A curl line for the demo's worker (the token shown: it lives as long as the demo)."""
    auth = f"-H 'Authorization: Bearer {token}' " if token else ""
    return f"curl -s {auth}http://127.0.0.1:{settings.web.port}/users/<user id>"


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM lets Faust leave the consumer group cleanly (no session-timeout wait)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _stats(
    session: aiohttp.ClientSession, port: int, token: str | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with session.get(
            f"http://127.0.0.1:{port}/stats",
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=1),
        ) as resp:
            return dict(await resp.json())
    except (aiohttp.ClientError, TimeoutError):
        return {}


async def _segment_sizes(store: RedisStore, stats: dict[str, Any]) -> list[tuple[int, int]]:
    from profiles.redis import keys

    ids = stats.get("segments", {}).get("ids", [])
    return [(sid, int(await store.client.scard(keys.segment_members(sid)))) for sid in ids]


async def _sample_users(store: RedisStore, n: int) -> list[str]:
    found: list[str] = []
    async for key in store.client.scan_iter(match="rtp:p:*", count=500):
        found.append(key.decode().split("{", 1)[1].rstrip("}"))
        if len(found) >= 50:
            break
    return sorted(found)[:n]


def _pushed(profile: Any, n: int = 2) -> list[str]:
    """The first items of the user's last pushed recommendation list."""
    return list((profile.recs or {}).get("items", [])[:n])


async def _titles(store: RedisStore, product_ids: list[str]) -> dict[str, str]:
    """Short titles to show instead of product ids."""
    out = {}
    for pid in dict.fromkeys(product_ids):
        item = await store.get_item(pid)
        if item is not None:
            title = str(item.get("title", pid))
            out[pid] = title if len(title) <= 18 else title[:17] + "…"
    return out


def _view(
    stats: dict[str, Any],
    rate: float,
    dead: dict[str, int],
    users: list[Any],
    produced: int,
    settings: Settings,
    segment_sizes: list[tuple[int, int]],
    titles: dict[str, str],
    query: str = "",
) -> Group:
    pipeline = Table(title="pipeline", show_header=False, min_width=50, caption=query or None)
    pipeline.add_row("generated events sent", f"{produced}")
    pipeline.add_row("consumed by worker", f"{stats.get('consumed', 0)}")
    pipeline.add_row("events/s", f"{rate:,.0f}")
    lag = stats.get("lag", {})
    pipeline.add_row(
        "consumer lag (messages)", " ".join(f"{t}: {n}" for t, n in lag.items()) or "-"
    )
    pipeline.add_row("applied to profiles", f"{stats.get('applied', 0)}")
    pipeline.add_row("profile_updated sent", f"{stats.get('profiles_emitted', 0)}")
    recs = stats.get("recommendations", {})
    if recs.get("enabled"):
        pipeline.add_row("recommendation lists sent", f"{recs.get('recommendations', 0)}")
        pipeline.add_row("items in the index", f"{recs.get('items', 0)}")
    pipeline.add_row("update batch (encode + commit)", f"{stats.get('last_commit_ms', 0):.1f} ms")
    dead_total = sum(dead.values())
    pipeline.add_row("dead-lettered", f"{dead_total}")
    for reason, n in sorted(dead.items(), key=lambda kv: -kv[1]):
        pipeline.add_row(f"  {reason}", f"{n}")
    people = Table(title="sample users (event time)")
    for col in ("user", "events", "orders", "spend", "segment", "churn", "top tags", "recommended"):
        people.add_column(col)
    half_life = settings.profile.half_life_ms
    for p in users:
        spend = ", ".join(f"{c / 100:.0f} {cur}" for cur, c in p.spend_cents.items())
        tags = ", ".join(t for t, _ in p.top_tags(5, half_life))
        churn = f"{p.churn['level']} {p.churn['risk']:.2f}" if p.churn else "-"
        segment = "-" if p.segment is None else f"S{p.segment}"
        pushed = "; ".join(titles.get(pid, pid) for pid in _pushed(p)) or "-"
        people.add_row(
            p.user_id,
            str(sum(p.counts.values())),
            str(p.orders),
            spend,
            segment,
            churn,
            tags,
            pushed,
        )
    seg = stats.get("segments", {})
    sizes = Table(title="segments (shared model v{})".format(seg.get("model_version", "-")))
    for col in ("segment", "users"):
        sizes.add_column(col)
    for sid, n in segment_sizes:
        sizes.add_row(f"S{sid}", str(n))
    if not segment_sizes:
        sizes.add_row("-", "seeding: waiting for enough users" if seg.get("enabled") else "off")
    return Group(pipeline, sizes, people)


DEMO_REFUND_P = 0.05
DEMO_REMOVAL_P = 0.05


async def run_demo(
    settings: Settings,
    rate: float,
    bad_share: float,
    duration: float | None,
    fmt: str = "ours",
) -> None:
    from stream.devtools.produce import Plan, send_events
    from stream.simulation.generator import TrafficConfig, TrafficGenerator
    from stream.simulation.segment import render

    services = local_services(settings)
    await asyncio.to_thread(start_local, services, settings.redis.url.get_secret_value())
    state = Path(settings.dev.dir)
    token, worker_env = demo_token(settings)
    worker = start_worker(settings, state / "worker.log", worker_env)
    query = how_to_query(settings, token)
    print(f"worker API: {query}")
    store = RedisStore.from_url(settings.redis.url.get_secret_value(), tls=settings.redis.tls)
    # A few refunds and cart removals, so the demo's profiles show corrections too.
    gen = TrafficGenerator(TrafficConfig(refund_p=DEMO_REFUND_P, removal_p=DEMO_REMOVAL_P))
    produced = 0

    def events() -> Iterator[dict[str, Any]]:
        nonlocal produced
        for event in itertools.chain(gen.catalog(), gen.live(lambda: int(time.time() * 1000))):
            produced += 1
            yield render(event) if fmt == "segment" else event

    async def produce() -> None:
        await send_events(settings, events(), Plan(rate=rate, bad_share=bad_share), quiet=True)

    producer = asyncio.create_task(produce())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    ended_at = None if duration is None else time.monotonic() + duration
    last = (time.monotonic(), 0)
    try:
        async with aiohttp.ClientSession() as http:
            with Live(refresh_per_second=2) as live:
                users: list[str] = []
                while not stop.is_set() and (ended_at is None or time.monotonic() < ended_at):
                    if worker.poll() is not None:
                        raise SystemExit(
                            f"worker exited ({worker.returncode}); see {state}/worker.log"
                        )
                    stats = await _stats(http, settings.web.port, token)
                    now, consumed = time.monotonic(), int(stats.get("consumed", 0))
                    rate_now = (consumed - last[1]) / max(now - last[0], 1e-6)
                    last = (now, consumed)
                    if len(users) < 4:
                        users = await _sample_users(store, 4)
                    profiles = [p for p in [await store.get(u) for u in users] if p]
                    dead = dict(await dlq_counts(settings, timeout=0.5))
                    sizes = await _segment_sizes(store, stats)
                    titles = await _titles(store, [pid for p in profiles for pid in _pushed(p)])
                    live.update(
                        _view(
                            stats,
                            rate_now,
                            dead,
                            profiles,
                            produced,
                            settings,
                            sizes,
                            titles,
                            query,
                        )
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=1.0)
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await producer
        await asyncio.to_thread(stop_worker, worker)
        await store.close()
        await asyncio.to_thread(services.down)
        print("demo stopped: worker, broker and Redis are down.")
