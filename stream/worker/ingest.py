"""Ingest: validate raw messages and route each user to exactly one owner partition.

Producers may key messages by user or not at all. The ingest stage decodes and
validates every message, sends the invalid ones to the dead-letter topic, and
packs the valid ones into *bundles*, one per owner partition of the routed
topic (``partition = crc32(user_id) % N``; ``product_id`` for catalog events).
A bundle carries each event with its input coordinates (topic, partition,
offset): the update stage fences on those, so a bundle re-sent after a crash
applies nothing twice. Bundling also means the update stage pays Faust's
per-message cost once per bundle instead of once per event.

With pseudonymisation on (``RTP_PSEUDONYMIZE``), the user id of every user event
(``user_erasure`` included, so it finds the profile; not ``product`` events, whose
``user_id`` is the catalog publisher) is replaced by its keyed hash right after
validation, before ownership: Redis, the outputs and the logs only see pseudonyms.

Identity stitching (README "Identity stitching"): an event naming an anonymous profile too
(a Segment call with both ids) or an ``identify`` / ``alias`` link is split here
(:func:`profiles.core.handover.split_link`): the event to its user's owner, a ``seal`` record
to the anonymous profile's owner, an identify's kept traits (``traits``) to the user's owner.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from profiles.core.handover import INTERNAL_FIELDS, split_link
from profiles.core.ownership import owner
from profiles.core.partition import InputPartition
from profiles.core.privacy import Pseudonymizer
from profiles.core.profile import Record
from schemas.segment_identity import TraitPolicy
from schemas.validate import Limits, Rejected, decode
from stream.worker.records import undecodable

BUNDLE_VERSION = 1
#: Keep bundles well under Kafka's default 1 MiB message limit.
MAX_BUNDLE_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class Inbound:
    """A consumed input message, as much as ingest needs of it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp_ms: int = 0


@dataclass(frozen=True, slots=True)
class DeadInbound:
    message: Inbound
    reason: str
    detail: str
    schema_id: int | None = None  # registry schema id of a framed value


@dataclass(slots=True)
class Routed:
    """Ingest's output for one batch: bundles per owner partition, and rejects."""

    bundles: dict[int, list[bytes]] = field(default_factory=dict)
    dead: list[DeadInbound] = field(default_factory=list)
    events: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def route(
    messages: Sequence[Inbound],
    limits: Limits,
    partitions: int,
    now_ms: int,
    pseudonyms: Pseudonymizer | None = None,
    max_bundle_bytes: int = MAX_BUNDLE_BYTES,
    sources: Sequence[InputPartition] | None = None,
    traits: TraitPolicy | None = None,
) -> Routed:
    """Decode, validate, pseudonymise (if ``pseudonyms``) and bundle one batch of messages.

    ``sources``: each message's fence source (``stream.worker.epochs``); by default
    ``<topic>:<partition>``. ``traits``: which identify traits are kept (none by default)."""
    routed = Routed()
    per_partition: dict[int, list[list[Any]]] = {}
    # Segment libraries send the anonymousId with every call: one seal per pair and batch
    # is enough (the others would be no-ops at the owner, behind the first).
    sealed: set[tuple[str, str]] = set()
    for i, message in enumerate(messages):
        why = undecodable(message.headers)
        if why is not None:  # a header name that was not UTF-8 (stream/worker/records.py)
            routed.dead.append(DeadInbound(message, "undecodable_record", why))
            continue
        decoded = decode(message.value, limits, now_ms)
        if isinstance(decoded, Rejected):
            dead = DeadInbound(message, decoded.reason, decoded.detail, decoded.schema_id)
            routed.dead.append(dead)
            continue
        kind = decoded["type"]
        if kind != "product":
            for name in INTERNAL_FIELDS:  # set by the handover only, never taken from input
                decoded.pop(name, None)
        if pseudonyms is not None and kind != "product":
            pseudonyms.event(decoded)
            if "anonymous_id" in decoded:
                decoded["anonymous_id"] = pseudonyms.user_id(decoded["anonymous_id"])
        routed.kinds[kind] = routed.kinds.get(kind, 0) + 1
        source = (
            sources[i] if sources is not None else InputPartition(message.topic, message.partition)
        )
        linked = kind == "identify" or "anonymous_id" in decoded
        for event in split_link(decoded, traits) if linked else (decoded,):
            if event["type"] == "seal":
                pair = (event["user_id"], event["into"])
                if pair in sealed:
                    continue
                sealed.add(pair)
            key = event["product_id"] if kind == "product" else event["user_id"]
            per_partition.setdefault(owner(key, partitions), []).append(
                [source.key, message.offset, event, message.timestamp_ms]
            )
        routed.events += 1
    for partition, records in per_partition.items():
        routed.bundles[partition] = list(_pack(records, max_bundle_bytes))
    return routed


def bundles_of(
    records: Sequence[Record], partitions: int, max_bundle_bytes: int = MAX_BUNDLE_BYTES
) -> dict[int, list[bytes]]:
    """Records the update stage routes on (identity stitching's merges and forwards), bundled
    by their user's owner partition, in order."""
    per_partition: dict[int, list[list[Any]]] = {}
    for r in records:
        per_partition.setdefault(owner(r.event["user_id"], partitions), []).append(
            [r.source.key, r.offset, r.event, r.produced_ms]
        )
    return {p: list(_pack(recs, max_bundle_bytes)) for p, recs in per_partition.items()}


def _pack(records: list[list[Any]], limit: int) -> Iterator[bytes]:
    """Serialise records into bundles no bigger than ``limit`` bytes (one record at least)."""
    blob = orjson.dumps({"v": BUNDLE_VERSION, "r": records})
    if len(blob) <= limit or len(records) == 1:
        yield blob
        return
    half = len(records) // 2
    yield from _pack(records[:half], limit)
    yield from _pack(records[half:], limit)


def unpack(bundle: bytes) -> list[Record]:
    """Records of one bundle, in the order ingest saw them."""
    body = orjson.loads(bundle)
    if body.get("v") != BUNDLE_VERSION:
        raise ValueError(f"unknown bundle version {body.get('v')!r}")
    return [Record(InputPartition.parse(s), offset, e, ts) for s, offset, e, ts in body["r"]]
