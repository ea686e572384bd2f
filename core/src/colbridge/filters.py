"""Metadata filters: a small MongoDB-style language, validated once, run in SQLite.

A filter is a dict. Top-level keys are metadata fields (ANDed together) or ``$and``::

    {"topic": "cooking"}                                 equality
    {"topic": {"$in": ["cooking", "gardening"]}}         membership
    {"year": {"$gte": 1900, "$lt": 2000}}                numeric range
    {"$and": [{"topic": "music"}, {"year": {"$gt": 1950}}]}

Operators: ``$eq $ne $in $nin $gt $gte $lt $lte``; values are strings, numbers, booleans or
null; ``$and`` nests at most ``MAX_FILTER_DEPTH`` levels deep. A field that a document lacks
matches nothing but ``$ne`` and ``$nin``;
``{"f": None}`` matches an explicit null and ``{"f": {"$ne": None}}`` a present, non-null value.
Anything else is rejected with :class:`~colbridge.errors.InvalidInputError` — never silently ignored.

Field names and values reach SQLite only as bound parameters, so a filter cannot inject SQL.
Types are compared as JSON sees them: ``true`` is not ``1``, and ``"5"`` is not ``5``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from ._validate import check_unicode
from .errors import InvalidInputError

Scalar = Union[str, int, float, bool, None]

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
MEMBERSHIP = ("$in", "$nin")
_RANGE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
MAX_FIELD_LENGTH = 256
MAX_LIST_LENGTH = 10_000
MAX_FILTER_DEPTH = 16
"""How deeply ``$and`` lists may nest (deeper ones are refused rather than recursed into)."""
_INT64 = (-(2**63), 2**63 - 1)  # what SQLite can bind


@dataclass(frozen=True)
class Condition:
    """One test on one metadata field, e.g. ``Condition("year", "$gte", 1900)``."""

    field: str
    op: str
    value: Any


def parse_filter(spec: Mapping[str, Any] | None) -> list[Condition]:
    """Validate a filter and flatten it to a list of conditions that must all hold.

    >>> parse_filter({"year": {"$gte": 1900, "$lt": 2000}})
    [Condition(field='year', op='$gte', value=1900), Condition(field='year', op='$lt', value=2000)]
    """
    return _parse(spec, 0)


def _parse(spec: Any, depth: int) -> list[Condition]:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidInputError(
            f"the filter is nested deeper than {MAX_FILTER_DEPTH} levels of '$and'"
        )
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise InvalidInputError(f"a filter must be a dict, got {type(spec).__name__}")
    conditions: list[Condition] = []
    for key, value in spec.items():
        if key == "$and":
            if not isinstance(value, (list, tuple)) or not value:
                raise InvalidInputError("'$and' takes a non-empty list of filters")
            for part in value:
                conditions.extend(_parse(part, depth + 1))
        elif isinstance(key, str) and key.startswith("$"):
            raise InvalidInputError(
                f"unknown filter operator {key!r} at the top level; use a field name or '$and'"
            )
        else:
            conditions.extend(_parse_field(key, value))
    return conditions


def _parse_field(field: Any, value: Any) -> list[Condition]:
    if not isinstance(field, str) or not field or len(field) > MAX_FIELD_LENGTH:
        raise InvalidInputError(f"filter field names must be non-empty strings, got {field!r}")
    check_unicode(field, f"the filter field {field!r}", nul=False)
    if not isinstance(value, Mapping):
        return [Condition(field, "$eq", _scalar(field, value))]
    if not value:
        raise InvalidInputError(f"the filter on {field!r} is an empty dict")
    conditions = []
    for op, operand in value.items():
        if op in COMPARISONS:
            operand = _scalar(field, operand)
            if op in _RANGE and not _is_number(operand) and not isinstance(operand, str):
                raise InvalidInputError(f"{op} on {field!r} needs a number or a string, got {operand!r}")
        elif op in MEMBERSHIP:
            if not isinstance(operand, (list, tuple, set, frozenset)):
                raise InvalidInputError(f"{op} on {field!r} needs a list, got {type(operand).__name__}")
            if len(operand) > MAX_LIST_LENGTH:
                raise InvalidInputError(f"{op} on {field!r} lists more than {MAX_LIST_LENGTH} values")
            operand = tuple(_scalar(field, v) for v in operand)
        else:
            raise InvalidInputError(
                f"unknown filter operator {op!r} on {field!r}; "
                f"supported: {', '.join(COMPARISONS + MEMBERSHIP)}"
            )
        conditions.append(Condition(field, op, operand))
    return conditions


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scalar(field: str, value: Any) -> Scalar:
    if isinstance(value, str):
        check_unicode(value, f"the filter value for {field!r}", nul=False)
        return value
    if _is_number(value) and isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        raise InvalidInputError(f"filter value for {field!r} is outside the 64-bit range: {value}")
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"filter value for {field!r} must be finite, got {value!r}")
        return value
    raise InvalidInputError(
        f"filter values must be strings, numbers, booleans or None; {field!r} got {type(value).__name__}"
    )


def to_sql(conditions: list[Condition], column: str = "metadata") -> tuple[str, list[Any]]:
    """Compile conditions to a SQLite boolean expression over a JSON ``column`` and its parameters.

    Each condition looks its field up with ``json_each`` (keys compared as bound parameters, so
    any key is safe) and compares JSON types as well as values: ``true`` is not ``1`` and the
    string ``"5"`` is not the number 5.
    """
    clauses: list[str] = []
    params: list[Any] = []
    for cond in conditions:
        if cond.op in _RANGE:
            kind = "('integer', 'real')" if _is_number(cond.value) else "('text')"
            test, test_params = f"type IN {kind} AND value {_RANGE[cond.op]} ?", [cond.value]
        elif cond.op == "$ne" and cond.value is None:
            test, test_params = "type != 'null'", []
        else:
            values = cond.value if cond.op in MEMBERSHIP else (cond.value,)
            parts = [_typed_equal(v) for v in values]
            test = "(" + " OR ".join(p for p, _ in parts) + ")" if parts else "0"
            test_params = [x for _, ps in parts for x in ps]
        exists = f"EXISTS (SELECT 1 FROM json_each({column}) WHERE key = ? AND {test})"
        negate = cond.op in ("$ne", "$nin") and cond.value is not None
        clauses.append(f"NOT {exists}" if negate else exists)
        params += [cond.field, *test_params]
    return (" AND ".join(clauses) or "1"), params


def _typed_equal(value: Scalar) -> tuple[str, list[Any]]:
    if value is None:
        return "type = 'null'", []
    if isinstance(value, bool):
        return ("type = 'true'" if value else "type = 'false'"), []
    if isinstance(value, str):
        return "(type = 'text' AND value = ?)", [value]
    return "(type IN ('integer', 'real') AND value = ?)", [value]


def matches(conditions: list[Condition], metadata: Mapping[str, Any]) -> bool:
    """Evaluate conditions in Python, with the same meaning as :func:`to_sql`."""
    return all(_matches_one(c, metadata) for c in conditions)


_MISSING = object()


def _matches_one(cond: Condition, metadata: Mapping[str, Any]) -> bool:
    value = metadata.get(cond.field, _MISSING)
    if cond.op == "$ne":
        if cond.value is None:  # "has a value"
            return value is not _MISSING and value is not None
        return value is _MISSING or not _same(value, cond.value)
    if cond.op == "$nin":
        return value is _MISSING or not any(_same(value, v) for v in cond.value)
    if value is _MISSING:
        return False
    if cond.op == "$eq":
        return _same(value, cond.value)
    if cond.op == "$in":
        return any(_same(value, v) for v in cond.value)
    if _is_number(cond.value):
        if not _is_number(value):
            return False
    elif not isinstance(value, str):
        return False
    return {
        "$gt": value > cond.value,
        "$gte": value >= cond.value,
        "$lt": value < cond.value,
        "$lte": value <= cond.value,
    }[cond.op]


def _same(a: Any, b: Any) -> bool:
    """Equality as JSON types see it: booleans, null, strings and numbers never equal each other."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return _is_number(a) and _is_number(b) and a == b
