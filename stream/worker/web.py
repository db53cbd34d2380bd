"""HTTP endpoints on each worker's web port: health, counters, profile lookup."""

from __future__ import annotations

from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from profiles.core.profile import Profile
from profiles.pipeline.downstream import TOP_TAGS_OUT
from profiles.recommend.blend import Recommendation
from stream.settings import Settings
from stream.worker.runtime import Runtime


def profile_view(profile: Profile, settings: Settings) -> dict[str, Any]:
    """The public JSON shape of a profile: no raw text, no offsets."""
    return {
        "user_id": profile.user_id,
        "version": profile.version,
        "first_ts": profile.first_ts,
        "last_ts": profile.last_ts,
        "counts": profile.counts,
        "rfm": profile.rfm(),
        "items_bought": profile.items_bought,
        "top_tags": profile.top_tags(TOP_TAGS_OUT * 2, settings.profile.half_life_ms),
        "embedding": _embedding_view(profile),
        "segment": profile.segment,
        "churn": profile.churn,
    }


def _embedding_view(profile: Profile) -> dict[str, Any] | None:
    """Model, dimension and interests; vectors only on request (they are large)."""
    if profile.embedding is None and profile.embedding_blob:
        state = orjson.loads(profile.embedding_blob)
        return {
            "model": state["model"],
            "dim": state["dim"],
            "interests": len(state["interests"]["clusters"]),
        }
    return None if profile.embedding is None else profile.embedding.summary()


def register(app: faust.App, settings: Settings, runtime: Runtime) -> None:
    def stored_id(user_id: str) -> str:
        return runtime.pseudonyms(user_id) if runtime.pseudonyms else user_id

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        """Ready once Redis answered and this worker owns partitions, while nothing crashed
        and no dependency is down; 503 with ``problems`` (what is wrong) otherwise."""
        ready, body = runtime.health_report()
        return web.json(body, status=200 if ready else 503)

    @app.page("/stats")
    async def stats(web: View, request: Request) -> Response:
        return web.json(
            {
                **runtime.stats.as_dict(),
                "encoder": runtime.encoder_stats(),
                "segments": runtime.segment_stats(),
                "recommendations": runtime.recs_stats(),
            }
        )

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        """Prometheus exposition format."""
        return web.bytes(runtime.metrics.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/segments")
    async def segments(web: View, request: Request) -> Response:
        """Segment summaries: size, top tags, mean RFM, representative users."""
        from profiles.segments.report import segment_report

        report = await segment_report(runtime.store, settings.profile.half_life_ms)
        return web.json(report)

    @app.page("/users/{user_id}")
    async def user(web: View, request: Request, user_id: str) -> Response:
        # The clear id is accepted; with RTP_PSEUDONYMIZE the profile is stored by pseudonym.
        profile = await runtime.store.get(stored_id(user_id))
        if profile is None:
            return web.json({"error": "unknown user", "user_id": user_id}, status=404)
        view = profile_view(profile, settings)
        as_of = request.query.get("as_of")
        if as_of is not None and runtime.churn is not None:
            if not as_of.isdigit():
                return web.json({"error": "as_of must be epoch milliseconds"}, status=400)
            from profiles.churn.risk import score

            previous = profile.churn["level"] if profile.churn else None
            view["churn"] = score(
                profile,
                max(int(as_of), profile.last_ts or 0),
                runtime.churn.params,
                runtime.churn.config,
                previous_level=previous,
            ).to_dict()
        return web.json(view)

    @app.page("/users/{user_id}/recommendations")
    async def recommendations(web: View, request: Request, user_id: str) -> Response:
        """A fresh list from the stored profile and this worker's item index (``?k=``), with
        the last list pushed downstream."""
        raw_k = request.query.get("k", str(settings.recs_k))
        if not raw_k.isdigit() or not 1 <= int(raw_k) <= MAX_K:
            return web.json({"error": f"k must be an integer from 1 to {MAX_K}"}, status=400)
        try:
            found = await runtime.recommend_for(stored_id(user_id), int(raw_k))
        except LookupError as exc:
            return web.json({"error": str(exc)}, status=503)
        if found is None:
            return web.json({"error": "unknown user", "user_id": user_id}, status=404)
        profile, items = found
        return web.json(recommendations_view(profile, items))


#: Most items one pull may ask for.
MAX_K = 200


def recommendations_view(profile: Profile, items: list[Recommendation]) -> dict[str, Any]:
    """The public JSON shape of a pull: ranked items with reasons, and the last pushed list."""
    return {
        "user_id": profile.user_id,
        "profile_version": profile.version,
        "ts": profile.last_ts,
        "items": [
            {"product_id": r.product_id, "rank": i, "score": round(r.score, 6), "reason": r.reason}
            for i, r in enumerate(items, start=1)
        ],
        "last_pushed": profile.recs,
    }
