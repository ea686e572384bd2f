"""Argument checks shared by every public entry point. They raise before anything changes."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import InvalidInputError

MAX_ID_LENGTH = 512
MAX_METADATA_DEPTH = 16
MAX_K = 100_000


def check_texts(texts: Any, what: str = "texts") -> list[str]:
    """A list of non-empty strings; a lone string is refused (it would be read character by character)."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise InvalidInputError(f"{what} must be a list of strings, got {type(texts).__name__}")
    checked = []
    for position, text in enumerate(texts):
        checked.append(check_text(text, f"{what}[{position}]"))
    return checked


def check_text(text: Any, what: str = "text") -> str:
    if not isinstance(text, str):
        raise InvalidInputError(f"{what} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError(f"{what} is empty or whitespace only")
    check_unicode(text, what)
    return text


def check_unicode(value: str, what: str, *, nul: bool = True) -> None:
    """Refuse strings that cannot be stored as UTF-8 (lone surrogates), and NUL characters
    unless ``nul`` (SQLite's JSON functions cut strings at a NUL, so ids, metadata and filter
    strings cannot hold one)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInputError(
            f"{what} holds a lone surrogate {value[e.start]!r} at position {e.start}: it is not "
            "valid Unicode text (decode the source with errors='replace')"
        ) from None
    at = value.find("\0")
    if not nul and at >= 0:
        raise InvalidInputError(
            f"{what} holds a NUL character at position {at} (not allowed in ids, metadata, filters)"
        )


def check_ids(ids: Any, *, expected: int | None = None, what: str = "ids") -> list[str]:
    """Unique, non-empty string ids of bounded length."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise InvalidInputError(f"{what} must be a list of strings, got {type(ids).__name__}")
    if expected is not None and len(ids) != expected:
        raise InvalidInputError(f"got {len(ids)} {what} for {expected} texts")
    seen: set[str] = set()
    for position, doc_id in enumerate(ids):
        if not isinstance(doc_id, str) or not doc_id:
            raise InvalidInputError(f"{what}[{position}] must be a non-empty string, got {doc_id!r}")
        if len(doc_id) > MAX_ID_LENGTH:
            raise InvalidInputError(f"{what}[{position}] is longer than {MAX_ID_LENGTH} characters")
        check_unicode(doc_id, f"{what}[{position}]", nul=False)
        if doc_id in seen:
            raise InvalidInputError(f"duplicate id {doc_id!r} in {what}")
        seen.add(doc_id)
    return list(ids)


def check_metadatas(metadatas: Any, expected: int) -> list[dict[str, Any]]:
    """One JSON-serialisable dict (or None) per document."""
    if metadatas is None:
        return [{} for _ in range(expected)]
    if not isinstance(metadatas, Sequence) or isinstance(metadatas, (str, bytes)):
        raise InvalidInputError(f"metadatas must be a list of dicts, got {type(metadatas).__name__}")
    if len(metadatas) != expected:
        raise InvalidInputError(f"got {len(metadatas)} metadatas for {expected} texts")
    return [check_metadata(m, f"metadatas[{i}]") for i, m in enumerate(metadatas)]


def check_metadata(metadata: Any, what: str = "metadata") -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"{what} must be a dict, got {type(metadata).__name__}")
    _check_json(metadata, what, depth=0)
    return dict(metadata)


def _check_json(value: Any, where: str, depth: int) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise InvalidInputError(f"{where} is nested deeper than {MAX_METADATA_DEPTH} levels")
    if isinstance(value, str):
        check_unicode(value, where, nul=False)
        return
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{where} holds {value!r}, which JSON cannot store")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{where} has a non-string key {key!r}")
            check_unicode(key, f"{where} key {key!r}", nul=False)
            _check_json(item, f"{where}[{key!r}]", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            _check_json(item, f"{where}[{position}]", depth + 1)
        return
    raise InvalidInputError(f"{where} holds a {type(value).__name__}, which is not JSON-serialisable")


def dump_metadata(metadata: Mapping[str, Any]) -> str:
    return json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def check_k(k: Any, what: str = "k") -> int:
    """A count from 1 to ``MAX_K``; integral NumPy scalars count as integers, booleans do not."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise InvalidInputError(f"{what} must be an integer, got {type(k).__name__}")
    k = int(k)
    if k <= 0:
        raise InvalidInputError(f"{what} must be at least 1, got {k}")
    if k > MAX_K:
        raise InvalidInputError(f"{what} must be at most {MAX_K}, got {k}")
    return k


def check_flag(value: Any, what: str) -> bool:
    """``value`` if it is a bool, else :class:`InvalidInputError` (``explain="no"`` is not
    silently true)."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"{what} must be True or False, got {value!r}")
    return value
