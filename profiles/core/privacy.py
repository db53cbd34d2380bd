"""Keyed hashes of user ids: pseudonyms at ingestion, erasure-marker names, erasure receipts.

All are HMAC-SHA256 under one per-deployment secret: ``RTP_PSEUDONYM_KEY`` when it is set, else
(erasure markers only) a random secret the first worker stores in Redis (``rtp:secret``, see
``profiles/redis/store.py``). Each purpose uses its own key derived from the secret
(``HMAC(secret, "rtp:<purpose>")``), so a pseudonym, a marker name and an event-id hash of the
same string are unrelated. Digests are truncated to 128 bits (32 hex characters): collisions are
out of reach (~1e-20 for a billion users) and keys stay short.

Without the secret a keyed hash cannot be reversed, nor tested against a guessed id (unlike a
plain hash of a short id, which a dictionary of candidate ids breaks at once). With it, the
operator can compute the hash of an id they are given, and so find that user's data, erasure
marker and receipt. The secret must stay the same for the life of the data: another secret
gives every user a new pseudonym and loses every erasure marker.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

HEX_CHARS = 32  # 128-bit digests
#: Shortest accepted secret (characters); ``openssl rand -hex 32`` gives 64.
MIN_SECRET_CHARS = 16
#: What a receipt's free-text fields hold where they contained the user id.
USER_PLACEHOLDER = "<user>"


def derive(secret: bytes, purpose: str) -> bytes:
    """The key of one purpose, derived from the deployment secret."""
    return hmac.digest(secret, b"rtp:" + purpose.encode(), "sha256")


class KeyedHash:
    """HMAC-SHA256 of strings under a key derived for ``purpose``, as 32 hex characters.

    Memoised (``cache`` entries): a worker sees the same user ids again and again, and a cache
    hit costs ~0.1 µs against ~1 µs for the HMAC.
    """

    def __init__(self, secret: str | bytes, purpose: str, cache: int = 1 << 17) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        if not raw:
            raise ValueError("the secret of a keyed hash must not be empty")
        key = derive(raw, purpose)

        def digest(value: str) -> str:
            return hmac.digest(key, value.encode(), "sha256")[: HEX_CHARS // 2].hex()

        self._digest = lru_cache(maxsize=cache)(digest) if cache else digest

    def __call__(self, value: str) -> str:
        return self._digest(value)


class Pseudonymizer:
    """Replaces the user id of events by its keyed hash (``RTP_PSEUDONYMIZE``).

    An event id that contains the clear user id (``<user>-17``) is replaced by its own keyed
    hash too: profiles keep recent event ids to drop producer retries, which only compares ids
    for equality, and the id must not bring the user id back in.
    """

    def __init__(self, secret: str | bytes) -> None:
        self.user_id = KeyedHash(secret, "pseudonym")
        self._event_id = KeyedHash(secret, "pseudonym-event-id", cache=0)

    def __call__(self, user_id: str) -> str:
        return self.user_id(user_id)

    def event(self, event: dict[str, Any]) -> None:
        """Pseudonymise one validated user event in place."""
        clear = event["user_id"]
        event["user_id"] = self.user_id(clear)
        event_id = event["event_id"]
        if clear in event_id:
            event["event_id"] = self._event_id(event_id)


def pseudonymizer(enabled: bool, secret: str) -> Pseudonymizer | None:
    """The ingestion pseudonymizer of the settings, or None when pseudonymisation is off."""
    return Pseudonymizer(secret) if enabled else None


def stored_receipt(receipt: Mapping[str, Any], user_id: str, user_hash: str) -> dict[str, Any]:
    """An erasure receipt as stored: the user named by its keyed hash, never in clear.

    Whoever knows the id and the secret finds the receipt by the hash and so can show the
    erasure (who asked, when, which request) without the store keeping the id. Free-text
    fields (event id, requester, reason) that contain the id get :data:`USER_PLACEHOLDER`
    in its place.
    """
    out: dict[str, Any] = {"user_hash": user_hash}
    for name, value in receipt.items():
        if name == "user_id":
            continue
        if isinstance(value, str) and user_id and user_id in value:
            value = value.replace(user_id, USER_PLACEHOLDER)
        out[name] = value
    return out
