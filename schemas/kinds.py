"""What each input kind is, in one table: which kinds name products, carry text of their own,
are orders, and are keyed by a user.

Code that asks "which kinds ..." reads :data:`FACTS` (or the sets and helpers derived from
it) rather than listing kind names; a drift test checks the table against the schemas in
``events/``. Branches that then read one kind's own fields (a purchase's ``amount``, a
review's ``rating``) still compare ``event["type"]`` with the literal, which is also what
lets a type checker narrow :data:`schemas.events.Event`.

>>> FACTS["review"].names_product, FACTS["review"].text_field
(True, 'text')
>>> sorted(PRODUCT_KINDS)
['add_to_cart', 'click', 'purchase', 'review']
>>> [line["product_id"] for line in product_lines({"type": "purchase", "items": [
...     {"product_id": "a", "quantity": 1, "price": 1.0}, {"product_id": "b"}]})]
['a', 'b']
>>> product_lines({"type": "click", "product_id": "p"})
[{'type': 'click', 'product_id': 'p'}]
>>> product_lines({"type": "search", "query": "tea"}), product_lines({"type": "new_kind"})
([], [])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "FACTS",
    "PRODUCT_KINDS",
    "PURCHASE_KINDS",
    "TEXT_KINDS",
    "USER_KINDS",
    "KindFacts",
    "is_own_line",
    "product_lines",
]


@dataclass(frozen=True, slots=True)
class KindFacts:
    """Facts about one input kind.

    ``names_product``: a tracking event naming the products a user interacted with; its
    product lines (``product_id``, and maybe ``title``, ``category``, ``price``) are the
    purchase's ``items``, or else the event itself. A ``product`` event is a catalog entry,
    not an interaction, so it does not count.
    ``is_purchase``: an order (``order_id``, ``items``, ``amount``, ``currency``).
    ``user_keyed``: ``user_id`` is a user with a profile (a ``product``'s is its publisher).
    ``text_field``: the field holding free text of the event's own (not a product's title).
    ``is_correction``: it undoes evidence of earlier events (a refund's optional ``items`` are
    lines of the order it refunds, not interactions).
    """

    names_product: bool
    is_purchase: bool
    user_keyed: bool
    text_field: str | None = None
    is_correction: bool = False

    @property
    def carries_text(self) -> bool:
        """Whether the event carries free text of its own (``text_field``)."""
        return self.text_field is not None

    @property
    def own_line(self) -> bool:
        """Whether the event itself is its one product line (click, add_to_cart, review)."""
        return self.names_product and not self.is_purchase


#: One entry per kind with a schema in ``events/``, in the order of ``schemas.validate.KINDS``.
FACTS: Final[dict[str, KindFacts]] = {
    "click": KindFacts(names_product=True, is_purchase=False, user_keyed=True),
    "add_to_cart": KindFacts(names_product=True, is_purchase=False, user_keyed=True),
    "purchase": KindFacts(names_product=True, is_purchase=True, user_keyed=True),
    "review": KindFacts(names_product=True, is_purchase=False, user_keyed=True, text_field="text"),
    "search": KindFacts(
        names_product=False, is_purchase=False, user_keyed=True, text_field="query"
    ),
    "product": KindFacts(names_product=False, is_purchase=False, user_keyed=False),
    "user_erasure": KindFacts(names_product=False, is_purchase=False, user_keyed=True),
    # Corrections (README "Corrections"): they undo evidence, so they name no product lines
    # (item popularity, recommendations and sessions must not count them as interactions).
    "refund": KindFacts(
        names_product=False, is_purchase=False, user_keyed=True, is_correction=True
    ),
    "remove_from_cart": KindFacts(
        names_product=False, is_purchase=False, user_keyed=True, is_correction=True
    ),
}

#: Kinds whose events name products (see :func:`product_lines`).
PRODUCT_KINDS: Final[frozenset[str]] = frozenset(k for k, f in FACTS.items() if f.names_product)
#: Kinds that carry free text of their own.
TEXT_KINDS: Final[frozenset[str]] = frozenset(k for k, f in FACTS.items() if f.carries_text)
#: Orders.
PURCHASE_KINDS: Final[frozenset[str]] = frozenset(k for k, f in FACTS.items() if f.is_purchase)
#: Kinds whose ``user_id`` is a user with a profile: all but ``product``.
USER_KINDS: Final[frozenset[str]] = frozenset(k for k, f in FACTS.items() if f.user_keyed)

_UNKNOWN: Final = KindFacts(names_product=False, is_purchase=False, user_keyed=False)


def is_own_line(kind: str) -> bool:
    """Whether an event of ``kind`` is its own product line (False for unknown kinds)."""
    return FACTS.get(kind, _UNKNOWN).own_line


def product_lines(event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The parts of a tracking event that name a product: a purchase's items, the event
    itself for the other product kinds, else nothing (unknown kinds too)."""
    facts = FACTS.get(event["type"], _UNKNOWN)
    if facts.is_purchase:
        return list(event["items"])
    if facts.names_product:
        return [event]
    return []
