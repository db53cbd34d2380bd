"""The OpenAPI document covers exactly the pages the worker registers, and is valid."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from stream.settings import Settings
from stream.worker import web
from stream.worker.openapi import ENDPOINTS, VIEW_FIELDS, document


class _App:
    """Records what ``web.register`` asks of a Faust app."""

    def page(self, path: str) -> Callable[[Any], Any]:
        return lambda fn: fn

    def task(self, fn: Any) -> Any:
        return fn


def registered() -> set[str]:
    settings = Settings.from_env({})
    paths = web.register(_App(), settings, None, web.guard_for(settings))  # type: ignore[arg-type]
    # Route patterns ("{user_id:[^/]+}") as OpenAPI templates ("{user_id}").
    return {re.sub(r"\{(\w+):[^}]*\}", r"{\1}", p) for p in paths}


def test_every_page_is_documented_and_nothing_else() -> None:
    assert registered() == set(ENDPOINTS)


def test_the_document_is_openapi_3_1_with_the_output_schemas() -> None:
    doc = document("1")
    assert doc["openapi"] == "3.1.0" and set(doc["paths"]) == set(ENDPOINTS)
    for path, item in doc["paths"].items():
        op = item["get"]
        assert op["summary"] and {"200", "401", "403"} <= set(op["responses"])
        templated = set(re.findall(r"\{(\w+)\}", path))
        assert {p["name"] for p in op["parameters"] if p["in"] == "path"} == templated
    schemas = doc["components"]["schemas"]
    assert {"profile_updated", "value_changed", "risk_flag", "audience_changed"} <= set(schemas)
    assert all("$id" not in s for s in schemas.values())


def test_the_profile_view_fields_are_what_fields_accepts() -> None:
    from profiles.core.profile import Profile

    view = web.profile_view(Profile("u", version=1, first_ts=1, last_ts=1), Settings.from_env({}))
    assert tuple(view) == VIEW_FIELDS
    assert web.select(view, ("counts",)) == {"user_id": "u", "counts": {}}
    assert web.parse_fields("counts,segment,counts") == ("counts", "segment")
    for bad in ("", "counts,nope", ","):
        try:
            web.parse_fields(bad)
        except web.BadParameter as exc:
            assert "fields" in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")
    assert web.parse_ids("a,b,a") == ["a", "b"]
    for bad in ("", ",".join(f"u{i}" for i in range(web.MAX_BATCH + 1)), "a," + "x" * 200):
        try:
            web.parse_ids(bad)
        except web.BadParameter:
            pass
        else:
            raise AssertionError(f"{bad[:20]!r} accepted")
