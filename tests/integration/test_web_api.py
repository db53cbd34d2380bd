"""The worker's HTTP API on the real worker: bearer tokens before any work, the bind address,
every bad parameter a 400 with a message, and user ids that need escaping."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.integration.harness import Names, Worker, produce
from tests.integration.oracle import eventually

pytestmark = pytest.mark.integration
START = 1_767_225_600_000
BRACES = "{brace}/user x%"  # braces, a slash and a space: all must survive the route


@pytest.fixture
def worker_env(worker_env: dict[str, str]) -> dict[str, str]:
    # No encoder: these tests are about HTTP, and the model load is the slow part of a start.
    return {
        **worker_env,
        "RTP_EMBEDDINGS": "false",
        "RTP_SEGMENTS": "false",
        "RTP_RECOMMEND": "false",
    }


async def _get(
    host: str, port: int, path: str, token: str | None = None, timeout: float = 10.0
) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"http://{host}:{port}{path}",
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


def _search(n: int, user: str) -> dict[str, object]:
    return {
        "event_id": f"web-{n}",
        "type": "search",
        "schema_version": 1,
        "user_id": user,
        "ts": START + n,
        "query": "trail running shoes",
    }


async def _seed(worker: Worker, brokers: str, names: Names, users: list[str]) -> None:
    events = [_search(i, u) for i, u in enumerate(users)]
    await produce(brokers, names.input, events, key=lambda m: str(m["user_id"]).encode())

    async def stored() -> bool:
        for user in users:
            status, _ = await worker.get(f"/users/{quote(user, safe='')}")
            if status != 200:
                return False
        return True

    await eventually(stored, timeout=120)


async def test_requests_without_the_right_token_are_refused_before_any_work(
    worker: Worker, brokers: str, names: Names
) -> None:
    await _seed(worker, brokers, names, ["ann"])
    before = (await worker.stats())["consumed"]
    wrong = secrets.token_hex(16)
    paths = [
        "/stats",
        "/users/ann",
        "/users/ann?as_of=1",
        "/segments",
        "/users/ann/recommendations",
        "/audiences",
        "/audiences/vip/members",
        "/audiences/vip/count?epsilon=1",  # spends a privacy budget: refused before that
    ]
    for path in [*paths, "/router", "/no-such-page"]:
        for token in (None, wrong):
            status, headers, body = await _get("127.0.0.1", worker.port, path, token)
            assert status == 401, (path, token, status, body)
            assert headers["WWW-Authenticate"].startswith("Bearer realm=")
            assert set(body) == {"error"}, body  # no profile data in a refusal
            if token:
                assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    # The same with the worker's token: answered.
    status, _, body = await _get("127.0.0.1", worker.port, "/users/ann", worker.token)
    assert status == 200 and body["user_id"] == "ann" and body["counts"] == {"search": 1}
    status, _, stats = await _get("127.0.0.1", worker.port, "/stats", worker.token)
    assert status == 200 and stats["consumed"] == before
    # The worker says how it is protected, and never shows the token.
    said = f"HTTP API on 127.0.0.1:{worker.port}: bearer tokens: 1 with 'read', 1 with 'ops'"

    async def logged() -> bool:
        return said in worker.log_path.read_text(errors="replace")

    await eventually(logged, timeout=60)
    assert worker.token and worker.token not in worker.log_path.read_text(errors="replace")
    # /health and /metrics are open by default (probes, Prometheus).
    assert (await _get("127.0.0.1", worker.port, "/health"))[0] == 200
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{worker.port}/metrics") as resp,
    ):
        assert resp.status == 200 and "rtp_events_total" in await resp.text()


BAD = [
    "/users/ann?as_of=" + "9" * 400,
    "/users/ann?as_of=%C2%B2",  # '²': str.isdigit() is true
    "/users/ann?as_of=",
    "/users/ann?as_of=-1",
    "/users/ann?as_of=yesterday",
    "/users/ann?as_of=99999999999999999",  # past year 9999
    "/users/ann?as_of=1&as_of=2",
    "/users/ann?asof=1",
    "/users/ann/recommendations?k=%C2%B2",
    "/users/ann/recommendations?k=" + "9" * 5001,
    "/users/ann/recommendations?k=",
    "/users/ann/recommendations?k=0",
    "/users/ann/recommendations?k=201",
    "/users/ann/recommendations?k=%D9%A3",  # Arabic-Indic 3: int() takes it
    "/users/ann/recommendations?n=3",
    "/users/" + "u" * 129,
    "/stats?verbose=1",
    "/segments?k=3",
]


async def test_every_bad_parameter_is_a_400_with_a_message(
    worker: Worker, brokers: str, names: Names
) -> None:
    """One worker for all (a start is the slow part); 'ann' exists, so a 404 is no excuse."""
    await _seed(worker, brokers, names, ["ann"])
    answers = {}
    for path in BAD:
        status, _, body = await _get("127.0.0.1", worker.port, path, worker.token)
        answers[path[:60]] = (status, body)
    wrong = {p: a for p, a in answers.items() if a[0] != 400 or len(a[1].get("error", "")) < 10}
    assert wrong == {}
    # The worker still answers good ones.
    status, _, body = await _get("127.0.0.1", worker.port, "/users/ann?as_of=1", worker.token)
    assert status == 200 and body["churn"] is not None


async def test_a_user_id_with_braces_slash_and_space_is_found(
    worker: Worker, brokers: str, names: Names
) -> None:
    await _seed(worker, brokers, names, [BRACES, "{}"])
    status, _, body = await _get(
        "127.0.0.1", worker.port, f"/users/{quote(BRACES, safe='')}", worker.token
    )
    assert status == 200 and body["user_id"] == BRACES
    status, _, body = await _get("127.0.0.1", worker.port, "/users/%7B%7D", worker.token)
    assert status == 200 and body["user_id"] == "{}"
    # The recommendations route takes the same ids (off here: 503, not 404 or 400).
    path = f"/users/{quote(BRACES, safe='')}/recommendations?k=3"
    assert (await _get("127.0.0.1", worker.port, path, worker.token))[0] == 503


def _outside_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for UDP connect
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


async def _refused(host: str, port: int) -> bool:
    try:
        await _get(host, port, "/health", timeout=5)
    except aiohttp.ClientConnectionError:
        return True
    return False


async def test_the_worker_binds_where_rtp_web_host_says(
    worker: Worker, worker_env: dict[str, str], tmp_path: Path
) -> None:
    """The default (127.0.0.1) is not reachable from outside; a worker bound to the outside
    address is reachable there and not on loopback. Its tokens come from a file, re-read on
    change, and its /health and /metrics need the 'ops' scope."""
    outside = _outside_address()
    if outside is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    assert (await _get("127.0.0.1", worker.port, "/health"))[0] == 200
    assert await _refused(outside, worker.port)

    first, second, ops = (secrets.token_hex(16) for _ in range(3))
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# test\n{first}\nops:{ops}\n")
    env = {
        **worker_env,
        "RTP_APP_ID": worker_env["RTP_APP_ID"] + "-outside",  # its own group: no rebalance
        "RTP_WEB_HOST": outside,
        "RTP_WEB_TOKENS_FILE": str(token_file),
        "RTP_WEB_OPEN_OPS": "false",
    }
    other = Worker(env, tmp_path / "outside.log").start()
    try:
        await eventually(
            lambda: _answers(outside, other.port, ops), timeout=90
        )  # ready, on the outside address, with the ops token
        assert await _refused("127.0.0.1", other.port)
        assert (await _get(outside, other.port, "/health"))[0] == 401
        assert (await _get(outside, other.port, "/health", first))[0] == 403  # read only
        assert (await _get(outside, other.port, "/stats", ops))[0] == 403
        assert (await _get(outside, other.port, "/stats", first))[0] == 200
        # Rotation: the file now holds another token; the old one stops working.
        token_file.write_text(f"{second}\nops:{ops}\n")
        os.utime(token_file, ns=(1, 1))

        async def rotated() -> bool:
            return (await _get(outside, other.port, "/stats", second))[0] == 200

        await eventually(rotated, timeout=30)
        assert (await _get(outside, other.port, "/stats", first))[0] == 401
    finally:
        code = other.stop()
    assert code == 0, other.tail()


async def _answers(host: str, port: int, token: str) -> bool:
    try:
        return (await _get(host, port, "/health", token, timeout=2))[0] == 200
    except aiohttp.ClientConnectionError:
        return False


async def test_batch_lookup_field_selection_and_the_openapi_document(
    worker: Worker, brokers: str, names: Names
) -> None:
    await _seed(worker, brokers, names, ["bo", "cy"])
    port, token = worker.port, worker.token
    status, _, body = await _get(
        "127.0.0.1", port, "/users?ids=bo,nobody,cy,bo&fields=counts,segment", token
    )
    assert status == 200
    assert [(r["user_id"], r["status"]) for r in body["results"]] == [
        ("bo", 200),
        ("nobody", 404),
        ("cy", 200),
    ]
    assert body["results"][0]["profile"] == {
        "user_id": "bo",
        "counts": {"search": 1},
        "segment": None,
    }
    status, _, one = await _get("127.0.0.1", port, "/users/cy?fields=version", token)
    assert status == 200 and one == {"user_id": "cy", "version": 1}
    many = ",".join(f"u{i}" for i in range(101))
    for path in (f"/users?ids={many}", "/users", "/users?ids=bo&fields=nope", "/users/bo?fields="):
        status, _, bad = await _get("127.0.0.1", port, path, token)
        assert status == 400 and len(bad["error"]) > 10, (path, bad)
    status, _, doc = await _get("127.0.0.1", port, "/openapi.json", token)
    assert status == 200 and doc["openapi"] == "3.1.0"
    assert {"/users", "/users/{user_id}", "/openapi.json"} <= set(doc["paths"])
    status, _, _ = await _get("127.0.0.1", port, "/openapi.json")
    assert status == 401  # like every page but /health and /metrics: a read token
