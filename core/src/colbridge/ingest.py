"""Reading documents from disk for ``colbridge index``: text/markdown files, folders, JSONL."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._validate import check_metadata
from .errors import InvalidInputError

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})


@dataclass(frozen=True)
class Record:
    """One document to index."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def read_records(paths: Sequence[str | Path]) -> Iterator[Record]:
    """Documents from files and folders.

    * ``.txt``/``.md``/``.markdown``/``.rst``: one document per file; the id is the path relative
      to the folder given (or the file name), metadata ``{"source": <path>}``.
    * ``.jsonl``/``.ndjson``: one JSON object per line with ``text`` and optional ``id`` (``_id``
      is accepted too, as in BEIR) and ``metadata``; a BEIR ``title`` is put before the text.
    * folders: searched recursively for the files above; other files are skipped.

    Empty files and lines are skipped; malformed JSON raises :class:`InvalidInputError` naming
    the file and line.
    """
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InvalidInputError(f"{path} does not exist")
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if child.suffix.lower() in TEXT_SUFFIXES | JSONL_SUFFIXES:
                    yield from _read_file(child, child.relative_to(path).as_posix())
        else:
            if path.suffix.lower() not in TEXT_SUFFIXES | JSONL_SUFFIXES:
                raise InvalidInputError(
                    f"{path}: unsupported file type {path.suffix or '(none)'}; "
                    f"use {', '.join(sorted(TEXT_SUFFIXES | JSONL_SUFFIXES))} files or a folder"
                )
            yield from _read_file(path, path.name)


def _read_file(path: Path, name: str) -> Iterator[Record]:
    if path.suffix.lower() in JSONL_SUFFIXES:
        yield from _read_jsonl(path)
        return
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{path} is not UTF-8 text ({e})") from e
    if text.strip():
        yield Record(id=name, text=text, metadata={"source": str(path)})


def _read_jsonl(path: Path) -> Iterator[Record]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"{where}: not valid JSON ({e.msg})") from e
            except RecursionError:  # json gives up on very deep nesting this way
                raise InvalidInputError(f"{where}: the JSON is nested too deeply to read") from None
            if not isinstance(row, dict):
                raise InvalidInputError(f"{where}: expected a JSON object")
            text = row.get("text")
            if not isinstance(text, str) or not text.strip():
                raise InvalidInputError(f"{where}: 'text' must be a non-empty string")
            title = row.get("title")
            if isinstance(title, str) and title.strip():
                text = f"{title.strip()}\n{text}"
            doc_id = row.get("id", row.get("_id"))
            if doc_id is None or doc_id == "":
                doc_id = f"{path.stem}-{number}"
            metadata = row.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise InvalidInputError(f"{where}: 'metadata' must be an object")
            yield Record(id=str(doc_id), text=text,
                         metadata=check_metadata(metadata, f"{where}: 'metadata'"))
