"""``python -m stream reembed``: the catalog and the user vectors under the configured model.

Run it after changing ``RTP_MODEL`` (before or while the workers restart with it); see
``profiles/embedding/reembed.py`` for the rule and README "Choosing a model".
"""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from profiles.embedding.reembed import Report, reembed
from profiles.redis.catalog import RedisCatalog
from profiles.redis.store import RedisStore
from profiles.redis.tier import RedisVectorTier
from profiles.redis.vectors import RedisVectorStore
from profiles.tags.extractor import TagExtractor
from stream.settings import Settings
from stream.worker.compose import load_embedder


async def run(settings: Settings, chunk: int, dry_run: bool) -> Report:
    url = settings.redis.url.get_secret_value()
    tier = RedisVectorTier(url, tls=settings.redis.tls)
    # The secret names erasure markers (read by load): as every other reader of profiles.
    store = RedisStore.from_url(url, settings.privacy.key, tls=settings.redis.tls)
    console = Console(stderr=True)
    try:
        console.print(f"loading {settings.encoder.model} ...")
        embedder = await asyncio.to_thread(load_embedder, settings, tier)
        tagger = TagExtractor()
        await asyncio.to_thread(tagger.warm_up)
        columns = (
            TextColumn("{task.description:8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as bar:
            tasks = {name: bar.add_task(name, total=None) for name in ("catalog", "users")}

            def progress(stage: str, done: int, total: int | None) -> None:
                bar.update(tasks[stage], completed=done, total=total)

            return await reembed(
                embedder,
                RedisCatalog(store.client),
                store,
                RedisVectorStore(store.client),
                tagger,
                settings.profile.kind_weights.get("purchase", 1.0),
                progress,
                chunk=chunk,
                dry_run=dry_run,
            )
    finally:
        await store.close()
        tier.close()


def summary(report: Report, dry_run: bool) -> str:
    verb = "would be" if dry_run else ""
    lines = [
        f"model {report.model}: {report.items} catalog texts encoded or found in the cache",
        f"{report.users} profiles read in {report.seconds:.1f} s:",
        f"  {report.current} already on this model or without vectors (untouched)",
        f"  {report.rebuilt} {verb or 'were'} rebuilt from their purchases",
        f"  {report.dropped} {verb or 'were'} dropped (no purchase left in the catalog: the "
        "next event starts them afresh)",
    ]
    if report.raced:
        lines.append(f"  {report.raced} written by a worker meanwhile (kept as the worker wrote)")
    if dry_run:
        lines.append("dry run: no profile was written (the catalog vectors are cached)")
    return "\n".join(lines)
