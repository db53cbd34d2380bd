"""Corrections: refunds, cancellations and cart removals undo what their events added.

A purchase leaves an entry in the profile's order ledger (``Profile.ledger``): its time,
currency, remaining cents, its lines (bought, refunded, unit cents) and the interest evidence
it added (``weight x share`` per tag). A ``refund`` reverses a part of that, clamped to what
is left, so redelivery or overlapping refunds never over-reverse. A refund whose order is not
in the ledger yet waits in ``Profile.pending`` until the purchase arrives. Both are bounded
(:data:`MAX_ORDERS`, :data:`MAX_PENDING`, the lateness window): see README "Corrections".

Tag scores are anchored (:mod:`profiles.core.decay`): the purchase added ``c x 2**((ts -
anchor) / half_life)`` at event time ``ts``, which *is* its decayed contribution at every
later time, so subtracting that (scaled by the refunded share) removes it exactly, whatever
the refund's own time.

>>> from profiles.core.config import ProfileConfig
>>> from profiles.core.profile import Profile, Record, apply
>>> from profiles.core.partition import InputPartition
>>> src = InputPartition("site-events", 0)
>>> buy = {"type": "purchase", "event_id": "b", "user_id": "u", "ts": 1000, "order_id": "o",
...        "items": [{"product_id": "p", "quantity": 2, "price": 5.0}], "amount": 10.0,
...        "currency": "EUR"}
>>> back = {"type": "refund", "event_id": "r", "user_id": "u", "ts": 2000, "order_id": "o",
...         "items": [{"product_id": "p", "quantity": 1}]}
>>> p = Profile("u")
>>> _ = apply(p, [Record(src, 1, back), Record(src, 2, buy)], ProfileConfig(), lambda e: ())
>>> (p.spend_cents, p.items_bought, p.orders, p.pending)
({'EUR': 500}, 1, 1, {})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from profiles.core.profile import Profile, Tag

__all__ = [
    "MAX_ORDERS",
    "MAX_ORDER_TAGS",
    "MAX_PENDING",
    "expire",
    "record_purchase",
    "refund",
    "remove_from_cart",
]

#: Orders remembered per profile for reversal (the newest by event time are kept).
MAX_ORDERS: Final = 50
#: Refunds waiting for their purchase, per profile (the newest by event time are kept).
MAX_PENDING: Final = 20
#: Tags of an order's evidence remembered for reversal (its strongest): the profile blob is
#: rewritten on every change, so the ledger must stay small.
MAX_ORDER_TAGS: Final = 20


def record_purchase(
    profile: Profile,
    event: dict[str, Any],
    cents: int,
    weight: float,
    tags: Sequence[Tag],
    half_life_ms: int,
) -> None:
    """Remember a purchase for later reversal, then apply refunds that were waiting for it."""
    order_id = event["order_id"]
    if order_id in profile.ledger:
        return  # a second purchase event for one order id: only the first can be reversed
    lines: dict[str, list[int]] = {}
    for item in event["items"]:
        line = lines.setdefault(item["product_id"], [0, 0, 0])
        line[0] += int(item["quantity"])
        line[2] = round(float(item["price"]) * 100)
    profile.ledger[order_id] = {
        "ts": int(event["ts"]),
        "cur": event["currency"],
        "cents": cents,
        "lines": lines,
        "ev": _evidence(weight, tags),
        "open": True,
    }
    if len(profile.ledger) > MAX_ORDERS:
        oldest = min(profile.ledger.items(), key=lambda kv: (kv[1]["ts"], kv[0]))[0]
        del profile.ledger[oldest]
    for waiting in sorted(profile.pending.pop(order_id, []), key=lambda r: (r["ts"], r["id"])):
        _reverse(profile, profile.ledger.get(order_id), waiting, half_life_ms)


def _evidence(weight: float, tags: Sequence[Tag]) -> dict[str, float]:
    if weight <= 0:
        return {}
    summed: dict[str, float] = {}
    for tag, share in tags:
        summed[tag] = summed.get(tag, 0.0) + weight * share
    strongest = sorted(summed.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_ORDER_TAGS]
    return dict(strongest)


def refund(profile: Profile, event: dict[str, Any], half_life_ms: int) -> int:
    """Apply a refund now, or keep it until its purchase arrives; returns how many waiting
    refunds were given up to keep the cap (counted by the caller: never silently lost)."""
    entry = profile.ledger.get(event["order_id"])
    wanted = {
        "id": event["event_id"],
        "ts": int(event["ts"]),
        "items": [[i["product_id"], int(i["quantity"])] for i in event.get("items", ())],
        "amount": event.get("amount"),
    }
    if entry is None:
        queue = profile.pending.setdefault(event["order_id"], [])
        queue.append(wanted)
        return _cap_pending(profile)
    _reverse(profile, entry, wanted, half_life_ms)
    return 0


def remove_from_cart(
    profile: Profile, ts: int, weight: float, tags: Sequence[Tag], half_life_ms: int
) -> None:
    """Cancel the cart evidence of a product as it stands at the removal's time ``ts``.

    The add's time is not kept, so this takes away what an add at ``ts`` would have added,
    never more than a tag holds: an add followed soon by its removal nets to about zero.
    """
    if profile.tag_anchor is None or weight <= 0:
        return
    growth = 2.0 ** ((ts - profile.tag_anchor) / half_life_ms)
    for tag, share in tags:
        _subtract(profile, tag, weight * share * growth)


def expire(profile: Profile, lateness_ms: int) -> int:
    """Forget orders and waiting refunds older than the lateness window (by event time);
    returns how many waiting refunds were given up (their purchase never came)."""
    if profile.last_ts is None:
        return 0
    given_up = 0
    horizon = profile.last_ts - lateness_ms
    for order_id in [o for o, e in profile.ledger.items() if e["ts"] < horizon]:
        del profile.ledger[order_id]
    # A purchase precedes its refund in event time, so it would now be too late itself.
    for order_id, queue in list(profile.pending.items()):
        kept = [r for r in queue if r["ts"] >= horizon]
        given_up += len(queue) - len(kept)
        queue[:] = kept
        if not queue:
            del profile.pending[order_id]
    return given_up


def _cap_pending(profile: Profile) -> int:
    flat = [(r["ts"], r["id"], o) for o, q in profile.pending.items() for r in q]
    if len(flat) <= MAX_PENDING:
        return 0
    for _, event_id, order_id in sorted(flat)[: len(flat) - MAX_PENDING]:
        queue = [r for r in profile.pending[order_id] if r["id"] != event_id]
        if queue:
            profile.pending[order_id] = queue
        else:
            del profile.pending[order_id]
    return len(flat) - MAX_PENDING


def _reverse(
    profile: Profile, entry: dict[str, Any] | None, wanted: dict[str, Any], half_life_ms: int
) -> None:
    """Reverse ``wanted`` (a refund) on the order ``entry``, clamped to what is left of it."""
    if entry is None:
        return
    lines: dict[str, list[int]] = entry["lines"]
    full = not wanted["items"] and wanted["amount"] is None
    asked: list[tuple[str, int]] = (
        [(pid, line[0]) for pid, line in lines.items()]
        if full
        else [(str(pid), int(qty)) for pid, qty in wanted["items"]]
    )
    qty_back = 0
    line_cents = 0
    total = sum(line[0] for line in lines.values())
    for pid, quantity in asked:
        line = lines.get(pid)
        if line is None:
            continue  # not in this order: nothing to reverse
        back = max(0, min(quantity, line[0] - line[1]))
        line[1] += back
        qty_back += back
        line_cents += back * line[2]
    if full:
        cents = entry["cents"]
    elif wanted["amount"] is not None:
        cents = round(float(wanted["amount"]) * 100)
    else:
        cents = line_cents
    cents = max(0, min(cents, entry["cents"]))
    entry["cents"] -= cents
    cur = entry["cur"]
    profile.spend_cents[cur] = max(0, profile.spend_cents.get(cur, 0) - cents)
    profile.items_bought = max(0, profile.items_bought - qty_back)
    if qty_back and total and profile.tag_anchor is not None:
        growth = 2.0 ** ((entry["ts"] - profile.tag_anchor) / half_life_ms)
        for tag, contribution in entry["ev"].items():
            _subtract(profile, tag, contribution * qty_back / total * growth)
    if entry["open"] and all(line[1] >= line[0] for line in lines.values()):
        entry["open"] = False
        profile.orders = max(0, profile.orders - 1)
        _correct_recency(profile, entry["ts"])


def _correct_recency(profile: Profile, reversed_ts: int) -> None:
    """Purchase times without the reversed order, as far as the ledger knows them.

    The ledger holds the newest orders, so the latest open one is the latest purchase left;
    with none open but older orders counted, the old time stays (they are not remembered).
    """
    if profile.orders == 0:
        profile.first_purchase_ts = profile.last_purchase_ts = None
        return
    if reversed_ts != profile.last_purchase_ts:
        return
    still = [e["ts"] for e in profile.ledger.values() if e["open"]]
    if still:
        profile.last_purchase_ts = max(still)


def _subtract(profile: Profile, tag: str, amount: float) -> None:
    score = profile.tags.get(tag)
    if score is None:
        return  # pruned already: nothing left to take back
    left = score - amount
    if left <= 1e-12 * max(1.0, score):
        del profile.tags[tag]
    else:
        profile.tags[tag] = left


def merge_ledgers(user: Profile, anon: Profile, half_life_ms: int) -> None:
    """Fold ``anon``'s orders and waiting refunds into ``user`` (identity stitching): the
    user's entry wins for an order id both hold; a refund waiting on one side for an order
    the other side bought is applied now, as if one profile had seen both."""
    for order_id, entry in anon.ledger.items():
        user.ledger.setdefault(order_id, entry)
    while len(user.ledger) > MAX_ORDERS:
        oldest = min(user.ledger.items(), key=lambda kv: (kv[1]["ts"], kv[0]))[0]
        del user.ledger[oldest]
    for order_id, queue in anon.pending.items():
        mine = user.pending.setdefault(order_id, [])
        known = {r["id"] for r in mine}
        mine.extend(r for r in queue if r["id"] not in known)
    for order_id in [o for o in user.pending if o in user.ledger]:
        waiting = sorted(user.pending.pop(order_id), key=lambda r: (r["ts"], r["id"]))
        for refund_ in waiting:
            _reverse(user, user.ledger.get(order_id), refund_, half_life_ms)
    _cap_pending(user)
