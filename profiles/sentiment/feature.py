"""Review sentiment as a profile feature: field ``sn``, per-product counters, alerts.

Every review text of a batch is scored once in :meth:`SentimentFeature.prepare` (in a thread
when they are long or many: VADER is pure Python); the learner folds each applied review into the
user's decayed state; :meth:`SentimentFeature.compute` adds the batch's reviews to the
per-product counters (``rtp:sent:{<partition>}``, fenced by source offset like popularity)
and emits ``negative_review`` for a strongly negative review from a valuable customer.
The review text itself is never stored: only its score.

The user's state lives in the profile hash only, so an erasure (which deletes the hash)
removes it; the product counters hold sums over reviewers, no user id.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from profiles.core.ownership import owner
from profiles.core.profile import EventLearner, Profile, Tag
from profiles.pipeline.feature import (
    Batch,
    CountsAdd,
    Emit,
    Feature,
    Fields,
    FieldValue,
    Stats,
    UserResult,
)
from profiles.recommend.popularity import Contribution
from profiles.sentiment.scorer import SentimentScorer
from profiles.sentiment.state import SentimentState, item_fields
from profiles.value.population import spend_of

__all__ = [
    "COUNTER",
    "SCORES",
    "THREAD_CHARS",
    "Alert",
    "SentimentFeature",
    "SentimentFields",
    "alert_event",
]

#: The batch's review scores by text, in :attr:`Batch.extra`.
SCORES = "sentiment"
#: Name of the per-product counters (``CountsAdd.counter``).
COUNTER = "sent"
#: Reviews applied in this attempt, in :attr:`Profile.parts` (never stored).
_NEW = "sentiment_new"
#: Batches with fewer characters of review text are scored on the loop (a thread hop costs
#: more); about 3 ms of VADER at most (~1.2 µs a character for long English texts).
THREAD_CHARS = 2500


@dataclass(frozen=True, slots=True)
class Alert:
    profile: Profile
    review: dict[str, Any]
    score: float
    summary: dict[str, Any]
    tier: str | None
    spend: float
    model_version: str


class SentimentFields(Fields):
    names = ("sn",)

    def decode(self, profile: Profile, values: Sequence[bytes | None]) -> None:
        raw = values[0]
        try:
            profile.parts["sentiment"] = None if raw is None else orjson.loads(raw)
        except orjson.JSONDecodeError:
            profile.parts["sentiment"] = None

    def encode(self, profile: Profile) -> dict[str, FieldValue]:
        state = profile.parts.get("sentiment")
        return {} if state is None else {"sn": orjson.dumps(state)}


class SentimentFeature(Feature):
    name = "sentiment"
    fields = SentimentFields()

    def __init__(
        self,
        scorer: SentimentScorer,
        partitions: int,
        *,
        half_life_ms: int = 90 * 86_400_000,
        item_half_life_ms: int = 30 * 86_400_000,
        polar: float = 0.3,
        alert_score: float = -0.6,
        alert_tiers: Collection[str] = ("champions", "loyal", "cannot_lose"),
        alert_min_spend: float = 500.0,
    ) -> None:
        self.scorer = scorer
        self.partitions = partitions
        self.half_life_ms = half_life_ms
        self.item_half_life_ms = item_half_life_ms
        self.polar = polar
        self.alert_score = alert_score
        self.alert_tiers = frozenset(alert_tiers)
        self.alert_min_spend = alert_min_spend

    async def prepare(self, batch: Batch, stats: Stats) -> None:
        texts = [r.event["text"] for r in batch.records if r.event["type"] == "review"]
        if not texts:
            batch.extra[SCORES] = {}
            return
        started = time.perf_counter()
        if sum(map(len, texts)) < THREAD_CHARS:
            batch.extra[SCORES] = self.scorer.scores(texts)
        else:
            batch.extra[SCORES] = await asyncio.to_thread(self.scorer.scores, texts)
        stats.seconds["sentiment"] = stats.seconds.get("sentiment", 0.0) + (
            time.perf_counter() - started
        )
        stats.counts["reviews_scored"] = stats.counts.get("reviews_scored", 0) + len(texts)

    def attach(self, profile: Profile, stats: Stats) -> None:
        profile.parts[_NEW] = []

    def learner(self, batch: Batch) -> EventLearner:
        scores: dict[str, float] = batch.extra.get(SCORES, {})

        def learn(
            profile: Profile, event: dict[str, Any], ts: int, weight: float, tags: Sequence[Tag]
        ) -> None:
            if event["type"] != "review":
                return
            score = self._score(scores, event["text"])
            state = SentimentState.from_dict(profile.parts.get("sentiment"))
            state.add(score, int(event["rating"]), ts, self.half_life_ms, self.polar)
            profile.parts["sentiment"] = state.to_dict()
            profile.parts.setdefault(_NEW, []).append((event, score))

        return learn

    def _score(self, scores: dict[str, float], text: str) -> float:
        found = scores.get(text)
        return found if found is not None else round(self.scorer.score(text), 4)

    async def compute(self, batch: Batch, users: Sequence[UserResult], stats: Stats) -> None:
        scores: dict[str, float] = batch.extra.get(SCORES, {})
        if batch.attempt == 1:
            batch.counts += self._items(users, scores)
        for user in users:
            fresh = user.profile.parts.pop(_NEW, None) or []
            if not user.write:
                continue
            for event, score in fresh:
                alert = self._alert(user.profile, event, score)
                if alert is not None:
                    build = functools.partial(alert_event, alert)
                    user.emits.append(
                        Emit("sentiment", "negative_review", user.user_id, build, alert)
                    )

    def _items(self, users: Sequence[UserResult], scores: dict[str, float]) -> list[CountsAdd]:
        """Every review of the batch (applied now or before: the store's fences decide)."""
        out: dict[int, list[Contribution]] = defaultdict(list)
        for user in users:
            entries = out[owner(user.user_id, self.partitions)]
            for r in user.outcome.counted:
                event = r.event
                if event["type"] != "review":
                    continue
                score = self._score(scores, event["text"])
                ts = int(event["ts"])
                for name, w in item_fields(event["product_id"], score, self.polar):
                    entries.append((r.source.key, r.offset, ts, name, w))
        return [CountsAdd(p, e, self.item_half_life_ms, COUNTER) for p, e in out.items() if e]

    def _alert(self, profile: Profile, event: dict[str, Any], score: float) -> Alert | None:
        if score > self.alert_score:
            return None
        value = profile.parts.get("value") or {}
        tier = value.get("tier")
        spend = spend_of(profile)
        if tier not in self.alert_tiers and spend < self.alert_min_spend:
            return None
        state = SentimentState.from_dict(profile.parts.get("sentiment"))
        return Alert(
            profile, event, score, state.summary(), tier, round(spend, 2), self.scorer.version()
        )

    def describe(self, profile: Profile, event: dict[str, Any]) -> None:
        state = profile.parts.get("sentiment")
        if state is not None:
            summary = SentimentState.from_dict(state).summary()
            event["sentiment"] = {
                "score": summary["score"],
                "negative_share": summary["negative_share"],
                "reviews": summary["reviews"],
                "disagreement": summary["disagreement"],
            }


def alert_event(alert: Alert, now_ms: int) -> dict[str, Any]:
    """The ``negative_review`` event; its id repeats for a replay of the same review."""
    review, profile = alert.review, alert.profile
    return {
        "type": "negative_review",
        "schema_version": 1,
        "event_id": f"{profile.user_id}:{review['event_id']}:negative_review",
        "user_id": profile.user_id,
        "review_event_id": review["event_id"],
        "product_id": review["product_id"],
        "rating": review["rating"],
        "score": alert.score,
        "reviewed_at": int(review["ts"]),
        "tier": alert.tier,
        "spend": alert.spend,
        "sentiment": {
            "score": alert.summary["score"],
            "negative_share": alert.summary["negative_share"],
            "reviews": alert.summary["reviews"],
        },
        "model_version": alert.model_version,
        "processed_at": now_ms,
    }
