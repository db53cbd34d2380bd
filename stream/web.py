"""HTTP endpoints on each worker's web port: health, counters, profile lookup."""

from __future__ import annotations

from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from profiles.downstream import TOP_TAGS_OUT
from profiles.profile import Profile
from stream.runtime import Runtime
from stream.settings import Settings


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
    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        """Ready once Redis answered and this worker owns partitions."""
        ready = runtime.ready and runtime.stats.assigned > 0
        return web.json(
            {"alive": True, "ready": ready, "assigned": runtime.stats.assigned},
            status=200 if ready else 503,
        )

    @app.page("/stats")
    async def stats(web: View, request: Request) -> Response:
        return web.json(
            {
                **runtime.stats.as_dict(),
                "encoder": runtime.encoder_stats(),
                "segments": runtime.segment_stats(),
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
        profile = await runtime.store.get(user_id)
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
