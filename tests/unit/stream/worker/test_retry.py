"""An agent's batch survives outages and poison: stream.worker.retry."""

from __future__ import annotations

from typing import Any

import redis.exceptions

from profiles.core.config import ProfileConfig
from profiles.core.profile import Record
from profiles.pipeline.store import Commit, CommitResult, MemoryStore
from profiles.pipeline.updater import BatchUpdater
from stream.worker import retry
from tests.unit.profiles.pipeline.test_updater import Words, click


class Flaky(MemoryStore):
    """A store that is unreachable for its first ``outages`` commits."""

    def __init__(self, outages: int) -> None:
        super().__init__()
        self.outages = outages

    async def commit(self, commit: Commit) -> CommitResult:
        if self.outages:
            self.outages -= 1
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        return await super().commit(commit)


class Touchy(Words):
    """A tagger with a bug that one title triggers."""

    def text(self, text: str) -> tuple[tuple[str, float], ...]:
        if "boom" in text:
            raise KeyError("boom")
        return super().text(text)


async def test_an_outage_is_waited_out_and_applies_everything_once(monkeypatch: Any) -> None:
    monkeypatch.setattr(retry, "MAX_DELAY_S", 0.01)
    store = Flaky(outages=3)
    seen: list[str] = []
    updater = BatchUpdater(store, ProfileConfig(), Words(), clock=lambda: 1.0)
    records = [Record("in:0", i, click(i, f"u{i % 2}", title="tea cup")) for i in range(6)]
    result = await retry.apply_batch(updater, records, lambda e: seen.append(type(e).__name__))
    assert seen == ["ConnectionError"] * 3
    assert result.applied == 6 and result.dead == []
    profiles = {u: (await store.get(u)) for u in ("u0", "u1")}
    assert {u: p.counts if p else None for u, p in profiles.items()} == {
        "u0": {"click": 3},
        "u1": {"click": 3},
    }


async def test_a_poison_user_is_dead_lettered_and_the_others_applied() -> None:
    store = MemoryStore()
    updater = BatchUpdater(store, ProfileConfig(), Touchy(), clock=lambda: 1.0)
    good = [Record("in:0", i, click(i, "ok", title="tea cup")) for i in range(3)]
    bad = [Record("in:0", 3, click(3, "bad", title="boom box"))]
    result = await retry.apply_batch(updater, [*good, *bad])
    assert result.applied == 3
    assert [(d.record.offset, d.reason) for d in result.dead] == [(3, "internal_error")]
    assert result.dead[0].detail == "KeyError: 'boom'"
    ok = await store.get("ok")
    assert ok is not None and ok.counts == {"click": 3}
    assert await store.get("bad") is None
