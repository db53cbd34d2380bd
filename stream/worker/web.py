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
from typing import Any, TypeVar

import faust
import numpy as np
from aiohttp import web as aioweb
from faust.web import Request, Response, View

from profiles.audiences.definitions import NAME
from profiles.audiences.export import BudgetSpent, UnknownAudience, dp_count, known, summary
from profiles.core.profile import Profile
from profiles.embedding.codec import unpack
from profiles.experiments.assign import assign
from profiles.pipeline.downstream import TOP_TAGS_OUT
from profiles.recommend.blend import Recommendation
from profiles.redis.audiences import SnapshotGone
from profiles.risk.feature import flags_view
from profiles.sentiment.state import SentimentState
from stream.settings import Settings
from stream.tokens import Guard, TokenSet
from stream.worker.compose import experiment_config
from stream.worker.metrics import encoder_stats
from stream.worker.openapi import VIEW_FIELDS, document
from stream.worker.runtime import Runtime

log = logging.getLogger(__name__)

#: Most items one pull may ask for.
MAX_K = 200
#: Latest ``as_of`` accepted: 9999-12-31T23:59:59.999Z, so any answer is a valid date.
MAX_EPOCH_MS = 253_402_300_799_999
#: Longest user id the event schemas allow.
MAX_USER_ID = 128
#: Most ids one batch lookup names (one Redis pipeline; bounded so one call stays cheap).
MAX_BATCH = 100
API_VERSION = "1"
#: Most members one page may ask for, and the largest epsilon a noisy count takes.
MAX_PAGE = 10_000
MAX_EPSILON = 10.0
_SNAPSHOT = re.compile(r"[0-9a-f]{16}")
_REPORT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DECIMAL = re.compile(r"[0-9]{1,6}(\.[0-9]{1,9})?")
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


def check_product_id(product_id: str) -> str:
    if not 1 <= len(product_id) <= MAX_USER_ID:
        raise BadParameter(f"a product id has 1 to {MAX_USER_ID} characters")
    return product_id


def guard_for(settings: Settings) -> Guard:
    tokens = TokenSet(settings.web.token_list, settings.web.tokens_file)
    return Guard(tokens, open_all=settings.web.open, open_ops=settings.web.open_ops)


Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]
PageFn = TypeVar("PageFn", bound=Callable[..., Awaitable[Response]])


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
        "sentiment": _sentiment_view(profile),
        "risk": {"flags": flags_view(profile)},
    }


def _sentiment_view(profile: Profile) -> dict[str, Any] | None:
    state = profile.parts.get("sentiment")
    return None if state is None else SentimentState.from_dict(state).summary()


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


def parse_fields(raw: str) -> tuple[str, ...]:
    """``?fields=`` of a profile lookup: known view fields, comma-separated (user_id always)."""
    names = tuple(dict.fromkeys(f for f in raw.split(",") if f))
    unknown = [n for n in names if n not in VIEW_FIELDS]
    if not names or unknown:
        raise BadParameter(
            f"fields: a comma-separated list of {', '.join(VIEW_FIELDS)}"
            + (f" (unknown: {', '.join(unknown)[:200]})" if unknown else "")
        )
    return names


def parse_ids(raw: str) -> list[str]:
    """``?ids=`` of a batch lookup: 1 to MAX_BATCH distinct user ids, comma-separated."""
    ids = list(dict.fromkeys(i for i in raw.split(",") if i))
    if not 1 <= len(ids) <= MAX_BATCH:
        raise BadParameter(f"ids: 1 to {MAX_BATCH} comma-separated user ids")
    for uid in ids:
        check_user_id(uid)
    return ids


def select(view: dict[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    """The view with only ``fields`` (and the user id); all of it without a selection."""
    if fields is None:
        return view
    return {k: view[k] for k in ("user_id", *fields) if k in view}


def register(app: faust.App, settings: Settings, runtime: Runtime, guard: Guard) -> list[str]:
    """The pages; ``guard`` is the one :func:`auth_middleware` of ``app`` checks with.
    Returns their paths (``stream/worker/openapi.py`` documents each; a test keeps them equal)."""
    pages: list[str] = []

    def page(path: str) -> Callable[[PageFn], PageFn]:
        def register_page(fn: PageFn) -> PageFn:
            pages.append(path)
            app.page(path)(fn)
            return fn

        return register_page

    @app.task  # type: ignore[untyped-decorator]
    async def announce_protection() -> None:
        """How the API is protected, once the worker's logging is set up."""
        level = logging.WARNING if settings.web.open else logging.INFO
        log.log(
            level, "HTTP API on %s:%s: %s", settings.web.host, settings.web.port, guard.describe()
        )
        if guard.tokens.file_error:
            log.error("RTP_WEB_TOKENS_FILE not used: %s", guard.tokens.file_error)

    experiment = experiment_config(settings)

    def stored_id(user_id: str) -> str:
        return runtime.pseudonyms(user_id) if runtime.pseudonyms else user_id

    def bad(web: View, exc: BadParameter) -> Response:
        return web.json({"error": str(exc)}, status=400)

    @page("/health")
    async def health(web: View, request: Request) -> Response:
        """Ready once Redis answered and this worker owns partitions, while nothing crashed
        and no dependency is down; 503 with ``problems`` (what is wrong) otherwise."""
        ready, body = runtime.health_report()
        return web.json(body, status=200 if ready else 503)

    @page("/stats")
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
                "audiences": runtime.audience_stats(),
            }
        )

    @page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        """Prometheus exposition format."""
        return web.bytes(runtime.metrics.exposition(), content_type="text/plain; version=0.0.4")

    @page("/segments")
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
    @page("/openapi.json")
    async def openapi(web: View, request: Request) -> Response:
        """The OpenAPI 3.1 description of every page."""
        try:
            query_params(request.query, ())
        except BadParameter as exc:
            return bad(web, exc)
        return web.json(document(API_VERSION))

    @page("/users")
    async def users(web: View, request: Request) -> Response:
        """Batch lookup: every named profile in one Redis round trip, a status per id."""
        try:
            query = query_params(request.query, ("ids", "fields"))
            if "ids" not in query:
                raise BadParameter(f"ids: 1 to {MAX_BATCH} comma-separated user ids")
            ids = parse_ids(query["ids"])
            fields = parse_fields(query["fields"]) if "fields" in query else None
        except BadParameter as exc:
            return bad(web, exc)
        keys = {uid: stored_id(uid) for uid in ids}
        loaded, _ = await runtime.store.load(list(dict.fromkeys(keys.values())), ())
        results = []
        for uid in ids:
            profile = loaded.get(keys[uid])
            if profile is None or profile.last_ts is None:  # never seen, or erased
                results.append({"user_id": uid, "status": 404})
            else:
                view = select(profile_view(profile, settings), fields)
                results.append({"user_id": uid, "status": 200, "profile": view})
        return web.json({"results": results})

    @page("/users/{user_id:[^/]+}")
    async def user(web: View, request: Request, user_id: str) -> Response:
        try:
            check_user_id(user_id)
            query = query_params(request.query, ("as_of", "fields"))
            as_of = parse_as_of(query["as_of"]) if "as_of" in query else None
            fields = parse_fields(query["fields"]) if "fields" in query else None
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
        return web.json(select(view, fields))

    @page("/experiments")
    async def experiments(web: View, request: Request) -> Response:
        """The running experiment's report (RTP_EXPERIMENT): conversion per arm, lift over the
        holdout with its interval, z-test, users per arm needed."""
        from profiles.redis.experiments import experiment_report

        try:
            query_params(request.query, ())
        except BadParameter as exc:
            return bad(web, exc)
        s = settings.experiment
        if not s.name:
            return web.json({"error": "no experiment runs here (RTP_EXPERIMENT)"}, status=503)
        found = await experiment_report(
            runtime.store.client, settings.kafka.partitions, s.name, s.arms
        )
        return web.json(found)

    @page("/items/{product_id:[^/]+}/sentiment")
    async def item_sentiment(web: View, request: Request, product_id: str) -> Response:
        """A product's decayed review sentiment over every reviewer (RTP_SENTIMENT)."""
        from profiles.redis.sentiment import item_sentiment

        try:
            check_product_id(product_id)
            query_params(request.query, ())
        except BadParameter as exc:
            return bad(web, exc)
        if not settings.sentiment.enabled:
            return web.json({"error": "review sentiment is off here (RTP_SENTIMENT)"}, status=503)
        found = await item_sentiment(
            runtime.store.client,
            product_id,
            settings.kafka.partitions,
            int(settings.sentiment.item_half_life_days * 86_400_000),
        )
        if found is None:
            return web.json({"error": "no reviews", "product_id": product_id}, status=404)
        return web.json({"product_id": product_id, **found})

    @page("/users/{user_id:[^/]+}/recommendations")
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
        view = recommendations_view(profile, items)
        if experiment is not None:
            arm = assign(experiment.name, profile.user_id, experiment.arms)
            view["experiment"] = {"name": experiment.name, "arm": arm}
            if arm in experiment.holdout:
                # A holdout user must see no personal list, pulled or pushed, or the
                # experiment measures nothing: none at all, or the popularity control.
                view["held_out"] = True
                view["items"] = []
                if experiment.control == "popular":
                    (control,) = await runtime.popular_for([profile], k)
                    view["items"] = recommendations_view(profile, control)["items"]
                    view["control"] = "popular"
        return web.json(view)

    @page("/items/{product_id:[^/]+}/bought-together")
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

    @page("/audiences")
    async def audiences(web: View, request: Request) -> Response:
        """Every audience of the applied definitions with its exact size."""
        try:
            query_params(request.query, ())
        except BadParameter as exc:
            return bad(web, exc)
        return web.json(await summary(runtime.audience_store))

    @page("/audiences/{name:[^/]+}/members")
    async def audience_members(web: View, request: Request, name: str) -> Response:
        """One page of a snapshot of the members: without ``snapshot`` a new one is taken;
        pass the answer's ``snapshot`` and ``cursor`` for the next page (``cursor`` null:
        the end)."""
        store = runtime.audience_store
        try:
            check_audience(name)
            query = query_params(request.query, ("snapshot", "cursor", "count"))
            count = parse_int("count", query.get("count", "1000"), 1, MAX_PAGE)
            cursor = parse_int("cursor", query.get("cursor", "0"), 0, 2**64)
            snap = query.get("snapshot")
            if snap is not None and not _SNAPSHOT.fullmatch(snap):
                raise BadParameter("snapshot: the id an earlier page answered (16 hex digits)")
            await known(store, name)
        except BadParameter as exc:
            return bad(web, exc)
        except UnknownAudience as exc:
            return web.json({"error": str(exc)}, status=404)
        size = None
        if snap is None:
            snap, size = await store.snapshot(name, settings.audiences.snapshot_ttl_s)
        try:
            nxt, members = await store.page(name, snap, cursor, count)
        except SnapshotGone as exc:
            return web.json({"error": str(exc)}, status=410)
        body = {"audience": name, "snapshot": snap, "cursor": nxt or None, "members": members}
        if size is not None:
            body["size"] = size
        return web.json(body)

    @page("/audiences/{name:[^/]+}/count")
    async def audience_count(web: View, request: Request, name: str) -> Response:
        """The size; with ``epsilon`` (and ``report``, whose budget pays) a Laplace-noised
        one for reports that leave the company; 429 once the budget is spent."""
        store = runtime.audience_store
        try:
            check_audience(name)
            query = query_params(request.query, ("epsilon", "report"))
            epsilon = parse_epsilon(query["epsilon"]) if "epsilon" in query else None
            report = query.get("report", "default")
            if not _REPORT.fullmatch(report):
                raise BadParameter("report: 1-64 characters of A-Z a-z 0-9 _ . -")
            if epsilon is None:
                await known(store, name)
                return web.json({"audience": name, "count": (await store.counts([name]))[name]})
            budget = settings.audiences.dp_budget
            rng = np.random.default_rng()
            return web.json(await dp_count(store, name, epsilon, report, budget, rng))
        except BadParameter as exc:
            return bad(web, exc)
        except UnknownAudience as exc:
            return web.json({"error": str(exc)}, status=404)
        except BudgetSpent as exc:
            return web.json({"error": str(exc)}, status=429)

    return pages


def check_audience(name: str) -> None:
    if not NAME.fullmatch(name):
        raise BadParameter("audience: 1-64 characters of a-z 0-9 _ -")


def parse_epsilon(raw: str) -> float:
    """A plain decimal in (0, 10]: ``0.5``, ``1``; not ``1e3``, ``nan`` or ``inf``."""
    if not _DECIMAL.fullmatch(raw) or not 0 < float(raw) <= MAX_EPSILON:
        raise BadParameter(f"epsilon: a decimal number above 0 and at most {MAX_EPSILON:g}")
    return float(raw)


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
