"""HTTP endpoints on each worker's web port: health, counters, profile lookup.

Every request passes :func:`auth_middleware` first (aiohttp middleware, so Faust's own pages
and unknown paths too): no handler runs, nothing is read from Redis, before the token is
checked. Query parameters are parsed by the strict functions below: anything else than what
they accept is a 400 with a message, never a 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import faust
from aiohttp import web as aioweb
from faust.web import Request, Response, View

from profiles.core.profile import Profile
from profiles.embedding.codec import unpack
from profiles.pipeline.downstream import TOP_TAGS_OUT
from profiles.recommend.blend import Recommendation
from stream.settings import Settings
from stream.tokens import Guard, TokenSet
from stream.worker.metrics import encoder_stats
from stream.worker.runtime import Runtime

log = logging.getLogger(__name__)

#: Most items one pull may ask for.
MAX_K = 200
#: Latest ``as_of`` accepted: 9999-12-31T23:59:59.999Z, so any answer is a valid date.
MAX_EPOCH_MS = 253_402_300_799_999
#: Longest user id the event schemas allow.
MAX_USER_ID = 128
# ASCII digits only: str.isdigit() and int() also take '²', '٣' and '1_000'.
_DIGITS = re.compile(r"[0-9]{1,20}")


class BadParameter(ValueError):
    """A query parameter or path part that cannot be used: answered 400 with this message."""


def parse_int(name: str, raw: str, low: int, high: int, what: str = "an integer") -> int:
    """``raw`` as a decimal integer in ``[low, high]``; :class:`BadParameter` otherwise.

    At most 20 ASCII digits are read, so a 5,000-digit value costs nothing and cannot reach
    ``int()``'s digit limit or a C integer conversion."""
    if not _DIGITS.fullmatch(raw):
        raise BadParameter(f"{name} must be {what} from {low} to {high}, as ASCII digits")
    value = int(raw)
    if not low <= value <= high:
        raise BadParameter(f"{name} must be {what} from {low} to {high}")
    return value


def parse_as_of(raw: str) -> int:
    return parse_int("as_of", raw, 0, MAX_EPOCH_MS, "epoch milliseconds")


def parse_k(raw: str) -> int:
    return parse_int("k", raw, 1, MAX_K)


def query_params(query: Mapping[str, str], allowed: tuple[str, ...]) -> dict[str, str]:
    """The query as one value per name; an unknown or repeated name is a :class:`BadParameter`."""
    out: dict[str, str] = {}
    for name, value in query.items():
        if name not in allowed:
            accepted = ", ".join(allowed) or "none"
            raise BadParameter(f"unknown query parameter {name!r} (accepted: {accepted})")
        if name in out:
            raise BadParameter(f"query parameter {name!r} given more than once")
        out[name] = value
    return out


def check_user_id(user_id: str) -> str:
    if not 1 <= len(user_id) <= MAX_USER_ID:
        raise BadParameter(f"a user id has 1 to {MAX_USER_ID} characters")
    return user_id


def guard_for(settings: Settings) -> Guard:
    tokens = TokenSet(settings.web.token_list, settings.web.tokens_file)
    return Guard(tokens, open_all=settings.web.open, open_ops=settings.web.open_ops)


Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]


def auth_middleware(guard: Guard) -> Callable[[aioweb.Request, Handler], Awaitable[Any]]:
    """aiohttp middleware refusing a request before its handler runs (401/403, RFC 6750)."""

    @aioweb.middleware
    async def authenticate(request: aioweb.Request, handler: Handler) -> aioweb.StreamResponse:
        denial = guard.check(request.path, request.headers.get("Authorization"))
        if denial is not None:
            return aioweb.json_response(
                {"error": denial.message},
                status=denial.status,
                headers={"WWW-Authenticate": denial.challenge, "Cache-Control": "no-store"},
            )
        return await handler(request)

    return authenticate


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
        "value": profile.parts.get("value"),
    }


def _embedding_view(profile: Profile) -> dict[str, Any] | None:
    """Model, dimension and interests; vectors only on request (they are large)."""
    if profile.embedding is None and profile.embedding_blob:
        state, _ = unpack(profile.embedding_blob)  # any stored format; no estimators built
        return {
            "model": state["model"],
            "dim": state["dim"],
            "interests": len(state["interests"]["clusters"]),
        }
    return None if profile.embedding is None else profile.embedding.summary()


def register(app: faust.App, settings: Settings, runtime: Runtime, guard: Guard) -> None:
    """The pages; ``guard`` is the one :func:`auth_middleware` of ``app`` checks with."""

    @app.task  # type: ignore[untyped-decorator]
    async def announce_protection() -> None:
        """How the API is protected, once the worker's logging is set up."""
        level = logging.WARNING if settings.web.open else logging.INFO
        log.log(
            level, "HTTP API on %s:%s: %s", settings.web.host, settings.web.port, guard.describe()
        )
        if guard.tokens.file_error:
            log.error("RTP_WEB_TOKENS_FILE not used: %s", guard.tokens.file_error)

    def stored_id(user_id: str) -> str:
        return runtime.pseudonyms(user_id) if runtime.pseudonyms else user_id

    def bad(web: View, exc: BadParameter) -> Response:
        return web.json({"error": str(exc)}, status=400)

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        """Ready once Redis answered and this worker owns partitions, while nothing crashed
        and no dependency is down; 503 with ``problems`` (what is wrong) otherwise."""
        ready, body = runtime.health_report()
        return web.json(body, status=200 if ready else 503)

    @app.page("/stats")
    async def stats(web: View, request: Request) -> Response:
        try:
            query_params(request.query, ())
        except BadParameter as exc:
            return bad(web, exc)
        return web.json(
            {
                **runtime.stats.as_dict(),
                "encoder": encoder_stats(runtime.models.embedder),
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

        try:
            query_params(request.query, ())
        except BadParameter as exc:
            return bad(web, exc)
        report = await segment_report(runtime.store, settings.profile.half_life_ms)
        return web.json(report)

    # {user_id:[^/]+}, not {user_id}: aiohttp's default pattern excludes '{' and '}', which
    # user ids may hold. aiohttp matches the still-escaped path, so '%2F' is part of an id.
    @app.page("/users/{user_id:[^/]+}")
    async def user(web: View, request: Request, user_id: str) -> Response:
        try:
            check_user_id(user_id)
            query = query_params(request.query, ("as_of",))
            as_of = parse_as_of(query["as_of"]) if "as_of" in query else None
            if as_of is not None and runtime.churn is None:
                raise BadParameter("as_of scores churn risk, which is off here (RTP_CHURN)")
        except BadParameter as exc:
            return bad(web, exc)
        # The clear id is accepted; with RTP_PSEUDONYMIZE the profile is stored by pseudonym.
        profile = await runtime.store.get(stored_id(user_id))
        if profile is None:
            return web.json({"error": "unknown user", "user_id": user_id}, status=404)
        view = profile_view(profile, settings)
        if as_of is not None and runtime.churn is not None:
            from profiles.churn.risk import score

            when = max(int(as_of), profile.last_ts or 0)
            stored = profile.churn or {}
            # Hysteresis only from a level the same model announced at or before that time: a
            # level from an older fit (or from the future) says nothing about this score.
            same = stored.get("model_version") == runtime.churn.version()
            previous = stored.get("level") if same and stored.get("as_of", when) <= when else None
            view["churn"] = score(
                profile,
                when,
                runtime.churn.params,
                runtime.churn.config,
                previous_level=previous,
                calibrator=runtime.churn.calibrator,
            ).to_dict()
        return web.json(view)

    @app.page("/users/{user_id:[^/]+}/recommendations")
    async def recommendations(web: View, request: Request, user_id: str) -> Response:
        """A fresh list from the stored profile and this worker's item index (``?k=``), with
        the last list pushed downstream."""
        try:
            check_user_id(user_id)
            query = query_params(request.query, ("k",))
            k = parse_k(query["k"]) if "k" in query else min(settings.recommend.k, MAX_K)
        except BadParameter as exc:
            return bad(web, exc)
        try:
            found = await runtime.recommend_for(stored_id(user_id), k)
        except LookupError as exc:
            return web.json({"error": str(exc)}, status=503)
        if found is None:
            return web.json({"error": "unknown user", "user_id": user_id}, status=404)
        profile, items = found
        return web.json(recommendations_view(profile, items))

    @app.page("/items/{product_id:[^/]+}/bought-together")
    async def bought_together(web: View, request: Request, product_id: str) -> Response:
        """The item's strongest pairs by lift (``?k=``, ``?kind=bought|viewed``)."""
        from stream.cli.together import KINDS, pair_view
        from stream.worker.compose import together_reader

        try:
            if not 1 <= len(product_id) <= MAX_USER_ID:
                raise BadParameter(f"a product id has 1 to {MAX_USER_ID} characters")
            query = query_params(request.query, ("k", "kind"))
            k = parse_k(query["k"]) if "k" in query else min(settings.recommend.k, MAX_K)
            kind = query.get("kind", "bought")
            if kind not in KINDS:
                raise BadParameter("kind must be bought or viewed")
        except BadParameter as exc:
            return bad(web, exc)
        if not settings.together.enabled:
            return web.json(
                {"error": "frequently bought together is off (RTP_TOGETHER)"}, status=503
            )
        reader = together_reader(settings, runtime.store.client)
        found = await reader.pairs([product_id], KINDS[kind], k, settings.together.min_count)
        return web.json(pair_view(product_id, kind, found.get(product_id, [])))


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
