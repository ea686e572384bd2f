"""How a document sits in a Qdrant point's payload, and how our filters become Qdrant filters.

Payload of every point (the user's metadata never shares a level with our keys)::

    {
      "id": "the caller's id",
      "text": "the stored text",
      "metadata": {...},                     # exactly as given; returned by get and search
      "fields": {"<key>": scalar, ...},      # filter copy: the metadata's top-level scalars
      "field_names": ["<key>", ...]          # every top-level metadata field, for presence tests
    }

Filters never look at ``metadata`` itself, because Qdrant's matching differs from ours there: a
condition on an array matches when *any element* matches (ours: an array equals no scalar), and
dots in a field name would be read as a path into nested objects. ``fields`` keeps only string,
number, boolean and null values, under a key that escapes everything but ``[A-Za-z0-9]``, so the
translation below can be exact:

=============  ==============================================================================
``$eq v``      ``fields.key`` equals ``v`` (null: ``is_null``; number: integer match, or a
               one-point range for a fractional number)
``$ne v``      not ``$eq v`` (true for missing fields); ``$ne null``: the key is among
               ``field_names`` and ``fields.key`` is not null
``$in``        any of the ``$eq`` conditions; an empty list matches nothing
``$nin``       none of them; an empty list matches everything
``$gt`` …      a numeric range (Qdrant never ranges booleans). **Strings cannot be ranged**:
               Qdrant compares only numbers and RFC 3339 datetimes by order, so a string bound
               raises :class:`~colbridge.InvalidInputError` instead of being approximated.
=============  ==============================================================================

Numbers: an integral float is stored as an integer (so ``{"n": 3}`` finds ``3.0``, as it does
in the embedded index); integers beyond ±2**53 are stored as floats.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidInputError
from ..filters import Condition

ID, TEXT, METADATA, FIELDS, FIELD_NAMES = "id", "text", "metadata", "fields", "field_names"
_EXACT_INT = 2**53
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


class _Never:
    """A filter that no document can pass (an empty ``$in``): the search need not run."""


NEVER = _Never()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def field_key(name: str) -> str:
    """The key of metadata field ``name`` under ``fields``: ``[A-Za-z0-9]`` kept, ``_`` doubled,
    every other byte of its UTF-8 written as ``_xx``. Injective, and a valid unquoted Qdrant key.

    >>> field_key("year"), field_key("first_name"), field_key("a.b")
    ('year', 'first__name', 'a_2eb')
    """
    out = []
    for char in name:
        if char in _SAFE:
            out.append(char)
        elif char == "_":
            out.append("__")
        else:
            out.extend(f"_{byte:02x}" for byte in char.encode("utf-8"))
    return "".join(out)


def build_payload(doc_id: str, text: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of one point (see the module docstring)."""
    fields = {}
    for name, value in metadata.items():
        if value is None or isinstance(value, (str, bool)):
            fields[field_key(name)] = value
        elif _is_number(value):
            fields[field_key(name)] = _stored_number(value)
    return {
        ID: doc_id,
        TEXT: text,
        METADATA: dict(metadata),
        FIELDS: fields,
        FIELD_NAMES: [field_key(name) for name in metadata],
    }


def read_payload(payload: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """``(id, text, metadata)`` of a point's payload; the metadata is the caller's own copy."""
    return payload[ID], payload[TEXT], copy.deepcopy(dict(payload.get(METADATA) or {}))


def _stored_number(value: int | float) -> int | float:
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_INT:
        return int(value)
    if isinstance(value, int) and abs(value) > _EXACT_INT:
        return float(value)
    return value


def to_qdrant_filter(conditions: list[Condition], models: Any) -> Any:
    """A ``qdrant_client.models.Filter`` for ``conditions`` (all must hold); None when there are
    none, :data:`NEVER` when no document can match. ``models`` is ``qdrant_client.models``."""
    if not conditions:
        return None
    must: list[Any] = []
    must_not: list[Any] = []
    for cond in conditions:
        key = f"{FIELDS}.{field_key(cond.field)}"
        if cond.op == "$eq":
            must.append(_equal(models, key, cond.value))
        elif cond.op == "$ne" and cond.value is None:
            must.append(models.FieldCondition(
                key=FIELD_NAMES, match=models.MatchValue(value=field_key(cond.field))))
            must_not.append(_equal(models, key, None))
        elif cond.op == "$ne":
            must_not.append(_equal(models, key, cond.value))
        elif cond.op == "$in":
            if not cond.value:
                return NEVER
            alternatives = _any_of(models, key, cond.value)
            must.append(alternatives[0] if len(alternatives) == 1
                        else models.Filter(should=alternatives))
        elif cond.op == "$nin":
            must_not.extend(_any_of(models, key, cond.value))
        else:
            if not _is_number(cond.value):
                raise InvalidInputError(
                    f"{cond.op} on {cond.field!r} compares strings by order, which Qdrant cannot "
                    "do (it orders numbers and datetimes only); filter on a number, or use the "
                    "embedded index"
                )
            bound = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}[cond.op]
            must.append(models.FieldCondition(key=key, range=models.Range(**{bound: cond.value})))
    return models.Filter(must=must or None, must_not=must_not or None)


def _equal(models: Any, key: str, value: Any) -> Any:
    if value is None:
        return models.IsNullCondition(is_null=models.PayloadField(key=key))
    if _is_number(value):
        stored = _stored_number(value)
        if isinstance(stored, float):  # fractional, or too large for an exact integer
            return models.FieldCondition(key=key, range=models.Range(gte=stored, lte=stored))
        value = stored
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _any_of(models: Any, key: str, values: tuple[Any, ...]) -> list[Any]:
    """Conditions of which at least one holds exactly when the field equals one of ``values``."""
    strings = [v for v in values if isinstance(v, str)]
    integers = []
    singles = []
    for value in values:
        if isinstance(value, str):
            continue
        if _is_number(value) and isinstance(_stored_number(value), int):
            integers.append(_stored_number(value))
        else:
            singles.append(_equal(models, key, value))
    grouped = [models.FieldCondition(key=key, match=models.MatchAny(any=group))
               for group in (strings, integers) if group]
    return grouped + singles
