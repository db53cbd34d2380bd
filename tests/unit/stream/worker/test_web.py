"""The web API's strict parsing of query parameters and ids, and its auth middleware in front
of a real aiohttp application (a handler that counts: refused requests never reach it)."""

from __future__ import annotations

import pytest
from aiohttp import web as aioweb
from aiohttp.test_utils import TestClient, TestServer

from stream.tokens import Guard, TokenSet
from stream.worker.web import (
    MAX_EPOCH_MS,
    MAX_K,
    BadParameter,
    auth_middleware,
    check_user_id,
    parse_as_of,
    parse_k,
    query_params,
)

TOKEN = "t" * 32


def test_good_values() -> None:
    assert parse_k("1") == 1 and parse_k(str(MAX_K)) == MAX_K and parse_k("007") == 7
    assert parse_as_of("0") == 0 and parse_as_of("1767225600000") == 1_767_225_600_000
    assert parse_as_of(str(MAX_EPOCH_MS)) == MAX_EPOCH_MS


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "0",
        str(MAX_K + 1),
        "²",  # str.isdigit() says yes, int() says no
        "٣",  # int() says 3: not ASCII
        "1_0",  # int() says 10
        " 5",
        "5 ",
        "+5",
        "-1",
        "5.0",
        "1e2",
        "9" * 5001,  # past int()'s 4300-digit limit
        "0x10",
    ],
)
def test_bad_k(raw: str) -> None:
    with pytest.raises(BadParameter, match=f"k must be an integer from 1 to {MAX_K}"):
        parse_k(raw)


@pytest.mark.parametrize(
    "raw", ["", "yesterday", "²", "9" * 400, str(MAX_EPOCH_MS + 1), "-5", "1.5", "١٢"]
)
def test_bad_as_of(raw: str) -> None:
    with pytest.raises(BadParameter, match="as_of must be epoch milliseconds"):
        parse_as_of(raw)


def test_query_params() -> None:
    from multidict import MultiDict

    assert query_params(MultiDict([("k", "3")]), ("k",)) == {"k": "3"}
    with pytest.raises(BadParameter, match="unknown query parameter 'kk'"):
        query_params(MultiDict([("kk", "3")]), ("k",))
    with pytest.raises(BadParameter, match="'k' given more than once"):
        query_params(MultiDict([("k", "3"), ("k", "4")]), ("k",))


def test_user_ids() -> None:
    assert check_user_id("{u}/1") == "{u}/1"
    with pytest.raises(BadParameter):
        check_user_id("u" * 129)


async def test_middleware_refuses_before_the_handler_runs() -> None:
    reached: list[str] = []

    async def handler(request: aioweb.Request) -> aioweb.Response:
        reached.append(request.path)
        return aioweb.json_response({"ok": True})

    app = aioweb.Application(middlewares=[auth_middleware(Guard(TokenSet(TOKEN)))])
    app.router.add_get("/stats", handler)
    app.router.add_get("/health", handler)
    async with TestClient(TestServer(app)) as client:
        for headers in ({}, {"Authorization": "Bearer " + "x" * 32}, {"Authorization": TOKEN}):
            resp = await client.get("/stats", headers=headers)
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
            assert "error" in await resp.json()
        assert reached == []
        assert (await client.get("/nothing-here")).status == 401  # unknown paths say nothing either
        assert (await client.get("/health")).status == 200
        resp = await client.get("/stats", headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 200 and reached == ["/health", "/stats"]
