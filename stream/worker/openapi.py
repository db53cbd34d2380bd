"""The OpenAPI 3.1 description of the worker's HTTP API, served at ``/openapi.json``.

One table, :data:`ENDPOINTS`, says for every page its query parameters and what it answers;
a test keeps it equal to the pages ``stream/worker/web.py`` registers, so the document cannot
drift from the code. The event schemas of ``schemas/outputs`` go in as components, so a
consumer generating a client gets the same shapes the topics carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.validate import output_schemas

#: The public profile view (``web.profile_view``): its fields, for ``?fields=``.
VIEW_FIELDS = (
    "user_id",
    "version",
    "first_ts",
    "last_ts",
    "counts",
    "rfm",
    "items_bought",
    "top_tags",
    "embedding",
    "segment",
    "churn",
    "value",
    "sentiment",
    "risk",
)


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    type: str = "string"
    required: bool = False


@dataclass(frozen=True)
class Endpoint:
    summary: str
    params: tuple[Param, ...] = ()
    statuses: tuple[int, ...] = (200, 400)
    scope: str = "read"
    content: str = "application/json"
    path_params: tuple[str, ...] = field(default=())


_FIELDS = Param("fields", "comma-separated profile fields to return: " + ", ".join(VIEW_FIELDS))
_K = Param("k", "how many (1-100)", "integer")

ENDPOINTS: dict[str, Endpoint] = {
    "/health": Endpoint("liveness and readiness (503 while not ready)", (), (200, 503), "ops"),
    "/stats": Endpoint("counters, lag, freshness, encoder and feature state of this worker"),
    "/metrics": Endpoint("Prometheus exposition", (), (200,), "ops", "text/plain"),
    "/segments": Endpoint("segment summaries: size, top tags, mean RFM, representatives"),
    "/users": Endpoint(
        "batch lookup: up to 100 profiles in one round trip, with a status per id",
        (Param("ids", "comma-separated user ids (1-100)", required=True), _FIELDS),
    ),
    "/users/{user_id}": Endpoint(
        "one profile (404 unknown or erased)",
        (Param("as_of", "score churn as of this time (epoch ms)", "integer"), _FIELDS),
        (200, 400, 404),
        path_params=("user_id",),
    ),
    "/users/{user_id}/recommendations": Endpoint(
        "recommendations now (the item index of this worker)",
        (_K,),
        (200, 400, 404, 503),
        path_params=("user_id",),
    ),
    "/experiments": Endpoint(
        "the running experiment: conversion per arm, lift with its interval, sample size",
        (),
        (200, 400, 503),
    ),
    "/items/{product_id}/sentiment": Endpoint(
        "a product's decayed review sentiment",
        (),
        (200, 400, 404, 503),
        path_params=("product_id",),
    ),
    "/items/{product_id}/bought-together": Endpoint(
        "the item's strongest pairs by lift",
        (_K, Param("kind", "bought (default) or viewed")),
        (200, 400, 503),
        path_params=("product_id",),
    ),
    "/audiences": Endpoint("every audience of the applied definitions with its size"),
    "/audiences/{name}/members": Endpoint(
        "one page of a snapshot of the members",
        (
            Param("snapshot", "the id an earlier page answered"),
            Param("cursor", "where the next page starts", "integer"),
            Param("count", "members per page (1-10000)", "integer"),
        ),
        (200, 400, 404, 410),
        path_params=("name",),
    ),
    "/audiences/{name}/count": Endpoint(
        "the size; with epsilon a Laplace-noised one paid from a report's budget",
        (
            Param("epsilon", "privacy parameter (0-10)", "number"),
            Param("report", "whose budget pays"),
        ),
        (200, 400, 404, 429),
        path_params=("name",),
    ),
    "/openapi.json": Endpoint("this document", (), (200,)),
}

_STATUS = {
    200: "OK",
    400: "a bad parameter (the body says which)",
    401: "no or unknown token",
    403: "the token lacks the scope",
    404: "not found",
    410: "the snapshot expired",
    429: "the privacy budget is spent",
    503: "the feature is off or not ready",
}


def document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every page (3.1: its schemas are JSON Schema, as ours)."""
    paths: dict[str, Any] = {}
    for path, ep in ENDPOINTS.items():
        parameters = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in ep.path_params
        ] + [
            {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "description": p.description,
                "schema": {"type": p.type},
            }
            for p in ep.params
        ]
        statuses = sorted({*ep.statuses, 401, 403})
        responses = {
            str(s): {
                "description": _STATUS[s],
                "content": {ep.content: {"schema": {"type": "object"} if s != 200 else _body(ep)}},
            }
            for s in statuses
        }
        paths[path] = {
            "get": {
                "summary": ep.summary,
                "parameters": parameters,
                "responses": responses,
                "security": [{"bearer": [ep.scope]}],
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Realtime profiles worker API", "version": version},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {name: _component(s) for name, s in sorted(output_schemas().items())},
        },
    }


def _body(ep: Endpoint) -> dict[str, Any]:
    return {"type": "string"} if ep.content == "text/plain" else {"type": "object"}


def _component(schema: dict[str, Any]) -> dict[str, Any]:
    """An output schema as a component (without its ``$id``, which would rebase references)."""
    return {k: v for k, v in schema.items() if k != "$id"}
