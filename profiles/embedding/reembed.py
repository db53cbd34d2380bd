"""Re-embedding after a model change (a shop switches ``RTP_MODEL``).

Vectors name their model, so a worker never mixes two: on load it discards another model's
vectors and starts the user afresh (``EmbeddingFeature.attach``). Left alone, that makes the
switch slow and lossy: every catalog text is encoded again by the first worker that meets it,
and a user's interest vectors restart from nothing at their next event. This pass does both
ahead of the workers, with one rule for users:

* **catalog**: every live item's text is encoded with the new model into the shared vector
  cache (Redis), so the workers' item indexes load without encoding;
* **users with vectors of another model** are *rebuilt* from the evidence their profile
  keeps, the products they bought (``Profile.purchased``, newest last, as purchases at the
  user's last purchase time), or, with no such evidence in the catalog, their vectors are
  *dropped* (marked stale by absence: the next event starts them under the new model);
* users already on the new model are left alone, so a second run changes nothing and an
  interrupted run resumes where it stopped.

Each write is version-checked: a user a running worker wrote meanwhile keeps the worker's
state (which is already of the new model, if that worker runs it).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from profiles.core.profile import Profile
from profiles.embedding.embedder import Embedder
from profiles.embedding.profile import EmbeddingProfile
from profiles.embedding.text import item_text
from profiles.tags.event_tags import TextTagger, event_tags

#: (stage, done, total or None) -> None; stages: "catalog", "users".
Progress = Callable[[str, int, int | None], None]


class Catalog(Protocol):
    async def all_ids(self, chunk: int = 5000) -> list[str]: ...
    async def items(self, product_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...


class Profiles(Protocol):
    async def load(
        self, user_ids: Collection[str], item_ids: Collection[str]
    ) -> tuple[dict[str, Profile], dict[str, dict[str, Any]]]: ...


class Vectors(Protocol):
    async def count(self) -> int: ...
    def users(self, chunk: int = 500) -> AsyncIterator[list[str]]: ...
    async def set_vectors(self, updates: Sequence[tuple[Profile, bytes | None]]) -> set[str]: ...


@dataclass(slots=True)
class Report:
    model: str
    items: int = 0  # catalog texts encoded (or found in the cache) for the new model
    users: int = 0  # profiles read
    current: int = 0  # already on the new model (or without vectors): untouched
    rebuilt: int = 0
    dropped: int = 0
    raced: int = 0  # written by a worker meanwhile: left as the worker wrote them
    seconds: float = 0.0


async def reembed(
    embedder: Embedder,
    catalog: Catalog,
    profiles: Profiles,
    vectors: Vectors,
    tagger: TextTagger,
    purchase_weight: float,
    progress: Progress | None = None,
    chunk: int = 500,
    dry_run: bool = False,
) -> Report:
    """Encode the catalog with ``embedder``'s model and rebuild or drop other models' user
    vectors (``dry_run``: count what would change, write nothing to profiles)."""
    started = time.perf_counter()
    report = Report(embedder.config.model_id)
    say = progress or (lambda stage, done, total: None)
    ids = await catalog.all_ids()
    for at in range(0, len(ids), chunk):
        entries = await catalog.items(ids[at : at + chunk])
        texts = [
            item_text(e["title"], e["category"])
            for e in entries.values()
            if not e.get("discontinued")
        ]
        await embedder.vectors(texts)  # into the shared cache, under the new model's id
        report.items += len(texts)
        say("catalog", min(at + chunk, len(ids)), len(ids))
    total = await vectors.count()
    async for users in vectors.users(chunk):
        loaded, _ = await profiles.load(users, ())
        updates = await _rebuild(embedder, catalog, tagger, purchase_weight, loaded, report)
        if not dry_run:
            report.raced += len(await vectors.set_vectors(updates))
        report.users += len(loaded)
        say("users", report.users, max(total, report.users))
    report.seconds = time.perf_counter() - started
    return report


async def _rebuild(
    embedder: Embedder,
    catalog: Catalog,
    tagger: TextTagger,
    weight: float,
    loaded: dict[str, Profile],
    report: Report,
) -> list[tuple[Profile, bytes | None]]:
    config = embedder.config
    stale: list[Profile] = []
    for profile in loaded.values():
        if profile.embedding_blob is None:
            report.current += 1
            continue
        _, changed = EmbeddingProfile.load(profile.embedding_blob, config)
        if changed:
            stale.append(profile)
        else:
            report.current += 1
    bought = sorted({pid for p in stale for pid in p.purchased})
    entries = await catalog.items(bought) if bought else {}
    live = {pid: e for pid, e in entries.items() if not e.get("discontinued")}
    texts = {pid: item_text(e["title"], e["category"]) for pid, e in live.items()}
    found = await embedder.vectors(list(texts.values())) if texts else {}
    updates: list[tuple[Profile, bytes | None]] = []
    for profile in stale:
        evidence = [pid for pid in profile.purchased if texts.get(pid) in found]
        if not evidence:
            updates.append((profile, None))
            report.dropped += 1
            continue
        fresh = EmbeddingProfile(config)
        ts = profile.last_purchase_ts or profile.last_ts or 0
        for pid in evidence:
            item = live[pid]
            event = {"type": "click", "product_id": pid, **item}  # the item as its tags see it
            fresh.learn_one(found[texts[pid]], weight, ts, event_tags(event, tagger, {}))
        updates.append((profile, fresh.to_bytes()))
        report.rebuilt += 1
    return updates
