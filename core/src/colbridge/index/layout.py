"""The embedded index's folder: every file name, its parser, and which files are stale.

One place names the files of an index folder (``docs/index-format.md`` describes each)::

    manifest.json            MANIFEST
    documents.sqlite         DOCUMENTS (and SQLite's -wal and -shm beside it)
    write.lock               LOCK
    vectors-<gen>.<ext>      vector_file_name(gen, ext): the token store of generation <gen>
    graph-<gen>-<rows>.voy   graph_file_name(gen, rows)
    means-<gen>-<rows>.npz   means_file_name(gen, rows)
    lexical-<upto>/          lexical_folder_name(upto)
    .<name>.tmp-<pid>[-…]    a file or folder being written (see colbridge._files.scratch_path)

The writer, ``colbridge check``, repair and backup all read names through :func:`parse` and
decide what is stale with :func:`stale_files`, so the rules cannot drift apart. Writes that
replace a file go through :func:`atomic_file` (re-exported from ``colbridge._files``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .._files import atomic_file, atomic_write_bytes, is_scratch

MANIFEST = "manifest.json"
DOCUMENTS = "documents.sqlite"
LOCK = "write.lock"

VECTORS = "vectors"
GRAPH = "graph"
MEANS = "means"
LEXICAL = "lexical"
GENERATIONAL = (VECTORS, GRAPH, MEANS)
"""Kinds of file that belong to one generation of the vectors (compaction starts a new one)."""

_PATTERNS = {
    VECTORS: re.compile(r"^vectors-(\d+)\.([a-z0-9]+)$"),
    GRAPH: re.compile(r"^graph-(\d+)-(\d+)\.voy$"),
    MEANS: re.compile(r"^means-(\d+)-(\d+)\.npz$"),
    LEXICAL: re.compile(r"^lexical-(\d+)$"),
}


@dataclass(frozen=True)
class FileName:
    """A parsed name of an index folder's file.

    Attributes:
        kind: ``"vectors"``, ``"graph"``, ``"means"`` or ``"lexical"``.
        generation: the vector generation (None for a lexical segment).
        rows: vector rows covered (graph and means), or the last ``doc_no`` indexed (lexical);
            None for a vector file.
        extension: the vector file's extension, which its codec chooses (None otherwise).
    """

    kind: str
    generation: int | None
    rows: int | None = None
    extension: str | None = None


def vector_file_name(generation: int, extension: str = "f16") -> str:
    return f"vectors-{generation}.{extension}"


def graph_file_name(generation: int, rows: int) -> str:
    return f"graph-{generation}-{rows}.voy"


def means_file_name(generation: int, rows: int) -> str:
    return f"means-{generation}-{rows}.npz"


def lexical_folder_name(upto: int) -> str:
    return f"lexical-{upto}"


def parse(name: str) -> FileName | None:
    """What the file called ``name`` is, or None for any other name."""
    for kind, pattern in _PATTERNS.items():
        match = pattern.match(name)
        if match is None:
            continue
        first = int(match.group(1))
        if kind == VECTORS:
            return FileName(kind, first, extension=match.group(2))
        if kind == LEXICAL:
            return FileName(kind, None, rows=first)
        return FileName(kind, first, rows=int(match.group(2)))
    return None


def files_of(folder: Path, kind: str) -> list[tuple[FileName, Path]]:
    """Every file of ``kind`` in ``folder``, newest first (by generation, then rows)."""
    found = []
    for entry in os.scandir(folder):
        parsed = parse(entry.name)
        if parsed is not None and parsed.kind == kind:
            found.append((parsed, Path(entry.path)))
    return sorted(found, key=lambda item: (item[0].generation or 0, item[0].rows or 0),
                  reverse=True)


def is_temporary(name: str) -> bool:
    """True for a file or folder an interrupted write left behind (``.<name>.tmp-<pid>…``)."""
    return is_scratch(name)


def stale_files(folder: Path, generation: int, keep: Collection[str] | None = None
                ) -> list[Path]:
    """Files of ``folder`` that no open of the committed state reads.

    Stale are: temporaries of interrupted writes; vector files and graph checkpoints of a
    generation other than the committed ``generation``; and, when ``keep`` names the files the
    writer uses now (its vector file, graph checkpoint and means file), every other vector
    file, graph checkpoint and means file. Without ``keep`` (``colbridge check``), checkpoints
    and means files of the committed generation are judged by the caller, which loads them.
    Lexical segments are the lexical index's to judge (see ``LexicalIndex.remove_stale``).
    """
    stale = []
    for entry in os.scandir(folder):
        name = entry.name
        parsed = parse(name)
        if is_temporary(name):
            stale.append(Path(entry.path))
        elif parsed is None or parsed.kind not in GENERATIONAL:
            continue
        elif keep is not None:
            if name not in keep:
                stale.append(Path(entry.path))
        elif parsed.kind != MEANS and parsed.generation != generation:
            stale.append(Path(entry.path))
    return sorted(stale)


__all__ = [
    "DOCUMENTS", "LOCK", "MANIFEST", "FileName", "atomic_file", "atomic_write_bytes",
    "files_of", "graph_file_name", "is_temporary", "lexical_folder_name", "means_file_name",
    "parse", "stale_files", "vector_file_name",
]
