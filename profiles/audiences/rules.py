"""Audience rules: a small JSON format, validated on load, evaluated against profiles.

A rule is a tree of nodes:

* ``{"all": [rule, ...]}``: every one holds; ``{"any": [rule, ...]}``: at least one;
  ``{"not": rule}``;
* a predicate ``{"field": NAME, "op": OP, "value": V}`` over a field of
  :data:`profiles.audiences.fields.FIELDS`. Operators by field type: ``number``: ``==``
  ``!=`` ``<`` ``<=`` ``>`` ``>=`` (a number); ``string``: ``==`` ``!=`` (a string), ``in``
  (a list of strings); ``set``: ``contains`` (a string), ``contains_any`` (a list);
  ``bool``: ``==`` ``!=`` (true or false).

A predicate on a field the profile lacks (no churn score yet, no language) is false, whatever
the operator: ``{"not": ...}`` says "lacks or differs". Nothing is ever ``eval``-ed.

>>> rule = parse({"all": [{"field": "orders", "op": ">=", "value": 2},
...                       {"field": "tags", "op": "contains", "value": "tea"}]})
>>> sorted(rule.fields)
['orders', 'tags']
>>> parse({"field": "oders", "op": ">", "value": 1})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
profiles.audiences.rules.RuleError: rule: unknown field 'oders'; fields: churn_level, ...
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from profiles.audiences.fields import DAY_MS, FIELDS, Field, Value
from profiles.core.profile import Profile

OPS: dict[str, tuple[str, ...]] = {
    "number": ("==", "!=", "<", "<=", ">", ">="),
    "string": ("==", "!=", "in"),
    "set": ("contains", "contains_any"),
    "bool": ("==", "!="),
}
#: Deepest nesting and most nodes a rule may have (hostile files stay cheap to check).
MAX_DEPTH = 16
MAX_NODES = 200
MAX_LIST = 1000

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
    "in": lambda a, b: a in b,
    "contains": lambda a, b: b in a,
    "contains_any": lambda a, b: not a.isdisjoint(b),
}


#: When a "days since" comparison flips, in ms after the threshold instant (ceil'ed to ms).
_FLIPS: dict[str, tuple[int, ...]] = {
    ">=": (0,),
    "<": (0,),
    ">": (1,),
    "<=": (1,),
    "==": (0, 1),
    "!=": (0, 1),
}


class RuleError(ValueError):
    """A rule that cannot be used; the message names where (``audiences[1].rule.all[0]``)."""


class Fieldset:
    """The field values of one profile at one time, each computed once."""

    def __init__(self, profile: Profile, as_of: int) -> None:
        self.profile = profile
        self.as_of = as_of
        self._values: dict[str, Value] = {}

    def __getitem__(self, name: str) -> Value:
        if name not in self._values:
            self._values[name] = FIELDS[name].get(self.profile, self.as_of)
        return self._values[name]


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated rule tree; ``kind`` is ``all``, ``any``, ``not`` or ``pred``."""

    kind: str
    children: tuple[Rule, ...] = ()
    field: str = ""
    op: str = ""
    value: Any = None

    @property
    def fields(self) -> frozenset[str]:
        if self.kind == "pred":
            return frozenset({self.field})
        return frozenset().union(*(c.fields for c in self.children))

    def holds(self, values: Fieldset) -> bool:
        if self.kind == "all":
            return all(c.holds(values) for c in self.children)
        if self.kind == "any":
            return any(c.holds(values) for c in self.children)
        if self.kind == "not":
            return not self.children[0].holds(values)
        got = values[self.field]
        return got is not None and _COMPARE[self.op](got, self.value)

    def changes(self, profile: Profile, as_of: int) -> list[int]:
        """Times after ``as_of`` at which the rule may change with time alone: where a timed
        field crosses its threshold (``>=`` and ``<`` flip at the instant, ``>`` and ``<=``
        the millisecond after, ``==`` and ``!=`` at both), and when another timer may change
        a field (churn)."""
        if self.kind != "pred":
            return [t for c in self.children for t in c.changes(profile, as_of)]
        spec = FIELDS[self.field]
        out: list[int] = []
        if spec.anchor is not None:
            at = spec.anchor(profile)
            if at is not None:
                cross = at + math.ceil(float(self.value) * DAY_MS)
                flips = _FLIPS[self.op]
                out += [cross + d for d in flips if cross + d > as_of]
        if spec.changes_at is not None:
            at = spec.changes_at(profile)
            if at is not None:
                out.append(max(at, as_of + 1))
        return out

    def to_json(self) -> Any:
        if self.kind == "pred":
            value = sorted(self.value) if isinstance(self.value, frozenset) else self.value
            return {"field": self.field, "op": self.op, "value": value}
        if self.kind == "not":
            return {"not": self.children[0].to_json()}
        return {self.kind: [c.to_json() for c in self.children]}


def parse(raw: Any, where: str = "rule") -> Rule:
    """Validate ``raw`` (decoded JSON) into a :class:`Rule`; :class:`RuleError` says why not."""
    count = [0]
    return _node(raw, where, 0, count)


def _node(raw: Any, where: str, depth: int, count: list[int]) -> Rule:
    count[0] += 1
    if depth > MAX_DEPTH:
        raise RuleError(f"{where}: nested deeper than {MAX_DEPTH}")
    if count[0] > MAX_NODES:
        raise RuleError(f"{where}: more than {MAX_NODES} nodes")
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: a rule is an object, got {type(raw).__name__}")
    keys = set(raw)
    if keys in ({"all"}, {"any"}):
        (kind,) = keys
        items = raw[kind]
        if not isinstance(items, list) or not items:
            raise RuleError(f"{where}.{kind}: a non-empty list of rules")
        children = tuple(
            _node(c, f"{where}.{kind}[{i}]", depth + 1, count) for i, c in enumerate(items)
        )
        return Rule(kind, children)
    if keys == {"not"}:
        return Rule("not", (_node(raw["not"], f"{where}.not", depth + 1, count),))
    if keys == {"field", "op", "value"}:
        return _predicate(raw, where)
    raise RuleError(
        f"{where}: expected one of all, any, not, or field/op/value; got keys {sorted(keys)}"
    )


def _predicate(raw: dict[str, Any], where: str) -> Rule:
    name, op, value = raw["field"], raw["op"], raw["value"]
    if not isinstance(name, str) or name not in FIELDS:
        raise RuleError(f"{where}: unknown field {name!r}; fields: {', '.join(sorted(FIELDS))}")
    spec: Field = FIELDS[name]
    allowed = OPS[spec.type]
    if op not in allowed:
        raise RuleError(
            f"{where}: operator {op!r} does not apply to {name} ({spec.type}); "
            f"use one of {', '.join(allowed)}"
        )
    return Rule("pred", field=name, op=op, value=_value(spec, name, op, value, where))


def _value(spec: Field, name: str, op: str, value: Any, where: str) -> Any:
    def wrong(want: str) -> RuleError:
        return RuleError(f"{where}: {name} {op} needs {want}, got {value!r}")

    if op in ("in", "contains_any"):
        if (
            not isinstance(value, list)
            or not value
            or len(value) > MAX_LIST
            or not all(isinstance(v, str) for v in value)
        ):
            raise wrong(f"a non-empty list of at most {MAX_LIST} strings")
        return frozenset(value)
    if spec.type == "number":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise wrong("a finite number")
        if spec.anchor is not None and not 0 <= value <= 100_000:
            raise wrong("a number of days from 0 to 100000")
        return float(value)
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if not isinstance(value, str):
        raise wrong("a string")
    return value
