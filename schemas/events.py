"""The input events as types: one ``TypedDict`` per kind, mirroring ``events/<kind>.schema.json``.

The JSON schemas are the contract; these types describe what :func:`schemas.validate.decode`
returns for each kind, for type checkers and readers. Required schema properties are required
keys, the others ``NotRequired``; a drift test (``tests/unit/schemas/test_event_types.py``)
holds the two together. Unknown extra fields are allowed by the schemas (forward
compatibility) and are simply not declared here.

No ``from __future__ import annotations`` here: ``NotRequired`` must be seen at runtime for
``__required_keys__`` / ``__optional_keys__`` to be right on Python 3.11.

>>> sorted(Click.__required_keys__)
['event_id', 'product_id', 'schema_version', 'ts', 'type', 'user_id']
>>> sorted(PurchaseLine.__optional_keys__)
['category', 'title']
>>> BY_KIND["purchase"] is Purchase
True
"""

from typing import Final, Literal, NotRequired, TypedDict, get_args

__all__ = [
    "BY_KIND",
    "KIND_NAMES",
    "AddToCart",
    "Click",
    "Event",
    "Kind",
    "Product",
    "Purchase",
    "PurchaseLine",
    "Refund",
    "RefundLine",
    "RemoveFromCart",
    "Review",
    "Search",
    "UserErasure",
]

#: The input kinds, in the order of ``schemas.validate.KINDS``.
Kind = Literal[
    "click",
    "add_to_cart",
    "purchase",
    "review",
    "search",
    "product",
    "user_erasure",
    "refund",
    "remove_from_cart",
]
KIND_NAMES: Final[tuple[str, ...]] = get_args(Kind)


class Click(TypedDict):
    """A user viewed/clicked a product."""

    event_id: str
    type: Literal["click"]
    schema_version: Literal[1]
    user_id: str
    ts: int
    session_id: NotRequired[str]
    consent: NotRequired[bool]
    language: NotRequired[str]
    product_id: str
    recommendation_id: NotRequired[str]  # the list clicked from (click-through attribution)
    title: NotRequired[str]
    category: NotRequired[list[str]]
    price: NotRequired[float]


class AddToCart(TypedDict):
    """A user added a product to the cart."""

    event_id: str
    type: Literal["add_to_cart"]
    schema_version: Literal[1]
    user_id: str
    ts: int
    session_id: NotRequired[str]
    consent: NotRequired[bool]
    language: NotRequired[str]
    product_id: str
    quantity: int
    price: NotRequired[float]
    title: NotRequired[str]
    category: NotRequired[list[str]]


class PurchaseLine(TypedDict):
    """One line of a purchase's ``items``."""

    product_id: str
    quantity: int
    price: float
    title: NotRequired[str]
    category: NotRequired[list[str]]


class Purchase(TypedDict):
    """A completed order."""

    event_id: str
    type: Literal["purchase"]
    schema_version: Literal[1]
    user_id: str
    ts: int
    session_id: NotRequired[str]
    consent: NotRequired[bool]
    language: NotRequired[str]
    order_id: str
    items: list[PurchaseLine]
    amount: float
    currency: str


class Review(TypedDict):
    """A product review; ``text`` may be empty."""

    event_id: str
    type: Literal["review"]
    schema_version: Literal[1]
    user_id: str
    ts: int
    session_id: NotRequired[str]
    consent: NotRequired[bool]
    language: NotRequired[str]
    product_id: str
    rating: int
    text: str
    title: NotRequired[str]
    category: NotRequired[list[str]]


class Search(TypedDict):
    """A site search."""

    event_id: str
    type: Literal["search"]
    schema_version: Literal[1]
    user_id: str
    ts: int
    session_id: NotRequired[str]
    consent: NotRequired[bool]
    language: NotRequired[str]
    query: str


class Product(TypedDict):
    """A catalog upsert (not a user action): ``user_id`` is the publisher/operator."""

    event_id: str
    type: Literal["product"]
    schema_version: Literal[1]
    user_id: str
    ts: int
    session_id: NotRequired[str]
    product_id: str
    title: str
    category: list[str]
    price: float
    currency: str
    brand: NotRequired[str]
    discontinued: NotRequired[bool]


class UserErasure(TypedDict):
    """A right-to-erasure request: delete the user's profile."""

    event_id: str
    type: Literal["user_erasure"]
    schema_version: Literal[1]
    user_id: str
    ts: int
    session_id: NotRequired[str]
    requested_by: str
    reason: NotRequired[str]


class RefundLine(TypedDict):
    """One line of a refund's ``items``."""

    product_id: str
    quantity: int


class Refund(TypedDict):
    """An order refunded or cancelled, whole (no ``items``, no ``amount``) or in part."""

    event_id: str
    type: Literal["refund"]
    schema_version: Literal[1]
    user_id: str
    ts: int
    session_id: NotRequired[str]
    order_id: str
    items: NotRequired[list[RefundLine]]
    amount: NotRequired[float]
    cancelled: NotRequired[bool]
    reason: NotRequired[str]


class RemoveFromCart(TypedDict):
    """A user removed a product from the cart."""

    event_id: str
    type: Literal["remove_from_cart"]
    schema_version: Literal[1]
    user_id: str
    ts: int
    session_id: NotRequired[str]
    product_id: str
    quantity: int
    title: NotRequired[str]
    category: NotRequired[list[str]]


#: Any input event; narrow it on ``event["type"]``.
Event = (
    Click | AddToCart | Purchase | Review | Search | Product | UserErasure | Refund | RemoveFromCart
)

#: The TypedDict of each kind.
BY_KIND: Final[dict[str, type]] = {
    "click": Click,
    "add_to_cart": AddToCart,
    "purchase": Purchase,
    "review": Review,
    "search": Search,
    "product": Product,
    "user_erasure": UserErasure,
    "refund": Refund,
    "remove_from_cart": RemoveFromCart,
}
