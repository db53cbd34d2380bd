"""Asking a running worker's web API (the CLI's `recommend`: only workers hold the index)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp


async def fetch_recommendations(
    base: str, user_id: str, k: int, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    """``GET /users/{id}/recommendations?k=`` with a bearer token: (HTTP status, JSON body)."""
    url = f"{base.rstrip('/')}/users/{quote(user_id, safe='')}/recommendations"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                url,
                params={"k": str(k)},
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp,
        ):
            body = await resp.json(content_type=None)
            return resp.status, body if isinstance(body, dict) else {"body": body}
    except aiohttp.ClientError as exc:
        raise SystemExit(f"no worker answering at {base} ({exc}); start one or pass --url") from exc
