"""The event types (schemas/events.py) and the kind table (schemas/kinds.py) against the JSON
schemas they mirror: a schema change that is not carried over fails here."""

from __future__ import annotations

import ast
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest

from schemas import events as ev
from schemas import kinds
from schemas.validate import KINDS, USER_KINDS, example_paths, load_schema

SCHEMAS_DIR = Path(ev.__file__).resolve().parent
EVENT_SCHEMAS = sorted((SCHEMAS_DIR / "events").glob("*.schema.json"))
SCHEMA_KINDS = [p.name.removesuffix(".schema.json") for p in EVENT_SCHEMAS]
#: Valid examples that carry unknown extra fields on purpose (forward compatibility).
EXTRA_FIELDS = {"click_extra_fields.json": {"referrer", "experiment_ids"}}

_JSON_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}


def _keys(td: Any) -> tuple[set[str], set[str]]:
    return set(td.__required_keys__), set(td.__optional_keys__)


def _schema_keys(schema: dict[str, Any]) -> tuple[set[str], set[str]]:
    required = set(schema["required"])
    return required, set(schema["properties"]) - required


def _expected_type(prop: dict[str, Any]) -> Any:
    if "const" in prop:
        return Literal[prop["const"]]
    if prop["type"] == "array":
        return types.GenericAlias(list, _JSON_TYPES[prop["items"]["type"]])
    return _JSON_TYPES[prop["type"]]


def _check_types(td: Any, schema: dict[str, Any], skip: frozenset[str] = frozenset()) -> None:
    hints = get_type_hints(td)
    for name, prop in schema["properties"].items():
        if name not in skip:
            assert hints[name] == _expected_type(prop), f"{td.__name__}.{name}"


def test_there_is_a_schema_per_kind_and_a_type_per_schema() -> None:
    assert sorted(KINDS) == SCHEMA_KINDS
    assert ev.KIND_NAMES == KINDS
    assert tuple(ev.BY_KIND) == KINDS
    assert set(get_args(ev.Event)) == set(ev.BY_KIND.values())


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
def test_typed_dict_keys_match_the_schema(kind: str) -> None:
    schema = load_schema(kind)
    td = ev.BY_KIND[kind]
    assert _keys(td) == _schema_keys(schema)
    assert get_type_hints(td)["type"] == Literal[kind]
    _check_types(td, schema, skip=frozenset({"items"}))


def test_purchase_lines_match_the_schema() -> None:
    line_schema = load_schema("purchase")["properties"]["items"]["items"]
    assert _keys(ev.PurchaseLine) == _schema_keys(line_schema)
    _check_types(ev.PurchaseLine, line_schema)
    assert get_type_hints(ev.Purchase)["items"] == list[ev.PurchaseLine]


def test_not_required_is_seen_at_runtime() -> None:
    # A stringified NotRequired (``from __future__ import annotations``) would make every
    # key required on Python 3.11; the module must keep real annotations.
    assert "session_id" in ev.Search.__optional_keys__
    assert "session_id" not in ev.Search.__required_keys__


@pytest.mark.parametrize("path", example_paths(valid=True), ids=lambda p: p.name)
def test_valid_examples_use_only_declared_keys(path: Path) -> None:
    event = json.loads(path.read_text(encoding="utf-8"))
    td = ev.BY_KIND[event["type"]]
    required, optional = _keys(td)
    extra = set(event) - required - optional
    assert extra == EXTRA_FIELDS.get(path.name, set())
    assert required <= set(event)
    for line in event.get("items", ()) if event["type"] == "purchase" else ():
        line_required, line_optional = _keys(ev.PurchaseLine)
        assert line_required <= set(line) <= line_required | line_optional


def test_facts_cover_exactly_the_kinds_with_schemas() -> None:
    assert tuple(kinds.FACTS) == KINDS
    assert sorted(kinds.FACTS) == SCHEMA_KINDS


@pytest.mark.parametrize("kind", SCHEMA_KINDS)
def test_facts_agree_with_the_schema(kind: str) -> None:
    facts = kinds.FACTS[kind]
    schema = load_schema(kind)
    required = set(schema["required"])
    if facts.is_purchase:
        assert facts.names_product
        assert {"order_id", "items", "amount", "currency"} <= required
        assert "product_id" in schema["properties"]["items"]["items"]["required"]
    elif not facts.is_correction:
        assert "items" not in schema["properties"]
    if facts.is_correction:
        assert not facts.names_product  # undoing evidence is no interaction
    if facts.own_line:
        assert "product_id" in required
    if facts.text_field is not None:
        assert facts.text_field in required
        assert schema["properties"][facts.text_field]["type"] == "string"
    assert facts.user_keyed == (kind != "product")  # a product's user_id is its publisher


def test_derived_sets() -> None:
    assert sorted(kinds.PRODUCT_KINDS) == ["add_to_cart", "click", "purchase", "review"]
    assert sorted(kinds.TEXT_KINDS) == ["review", "search"]
    assert sorted(kinds.PURCHASE_KINDS) == ["purchase"]
    assert set(KINDS) - {"product"} == kinds.USER_KINDS == USER_KINDS
    assert [k for k in KINDS if kinds.is_own_line(k)] == ["click", "add_to_cart", "review"]
    assert not kinds.is_own_line("no_such_kind")
    assert [k for k, f in kinds.FACTS.items() if f.is_correction] == ["refund", "remove_from_cart"]


@pytest.mark.parametrize("path", example_paths(valid=True), ids=lambda p: p.name)
def test_product_lines_of_the_examples(path: Path) -> None:
    event = json.loads(path.read_text(encoding="utf-8"))
    lines = kinds.product_lines(event)
    kind = event["type"]
    if kind == "purchase":
        assert lines == event["items"]
    elif kind in ("click", "add_to_cart", "review"):
        assert lines == [event] and lines[0] is event
    else:
        assert lines == []


def test_product_lines_stays_importable_from_the_recommend_feature() -> None:
    from profiles.recommend import feature

    assert feature.product_lines is kinds.product_lines


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(SCHEMAS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_schemas_import_neither_profiles_nor_stream(path: Path) -> None:
    assert not _imported_roots(path) & {"profiles", "stream"}


def test_event_union_narrows() -> None:
    # Runtime shape of the alias the type checker narrows on ``event["type"]``.
    assert isinstance(ev.Event, types.UnionType)
    assert all(
        get_origin(get_type_hints(td)["type"]) is typing.Literal for td in ev.BY_KIND.values()
    )


def test_profile_updated_counts_name_exactly_the_kinds() -> None:
    schema = load_schema("profile_updated")
    assert tuple(schema["properties"]["counts"]["propertyNames"]["enum"]) == KINDS
