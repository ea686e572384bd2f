"""Safe copies of an embedded index (``colbridge backup``) and salvage of a damaged one
(``colbridge recover``).

A backup is taken while holding the index's write lock, so it is one committed state: writers
wait (up to their ``lock_timeout``) and readers go on. The document store is copied with
SQLite's online backup API; the vector file up to its committed rows; the graph checkpoint,
document means and lexical segment that an open would load are saved first (as ``flush``
does), then copied; superseded files and leftovers are not. The copy is built in a scratch
folder beside the destination and renamed into place, so a destination either holds a whole
index or does not exist. It opens like the original.

Recovery reads what is still readable of a damaged index — every document row SQLite can
still return, whose metadata is a JSON object and whose token vectors lie in the vector file
and are finite unit vectors — and writes those documents, with their stored vectors (nothing is
re-encoded, no model is loaded), into a new index. A document split into passages keeps its
passage layout where that is still readable and fits it; otherwise it is saved whole (scored
as one passage of all its rows) and the result says how many were. It never writes into the
damaged folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._files import fsync_dir
from .errors import IndexCorruptError, InvalidInputError

if TYPE_CHECKING:
    from .index.embedded import EmbeddedIndex
    from .passages import Passage

_COPY_CHUNK = 1 << 24


def backup_index(index: EmbeddedIndex, destination: str | os.PathLike[str]) -> Path:
    """Copy ``index`` to the new folder ``destination`` (see :meth:`EmbeddedIndex.backup`)."""
    from .index import layout
    from .index.docstore import FILENAME
    from .index.lexical import saved_segments

    dest = _new_destination(destination, index.path)
    with index._writing():
        index._checkpoint_if_behind()
        index._lexical.checkpoint(index._snap.live)
        vectors = index._vectors
        keep_whole = {layout.graph_file_name(index._graph_generation, index._saved_rows),
                      layout.means_file_name(index._graph_generation, index._saved_rows)}
        segments = saved_segments(index.path)
        if segments:
            keep_whole.add(segments[0][1].name)
        scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.backup-", dir=dest.parent))
        try:
            _backup_sqlite(index.path / FILENAME, scratch / FILENAME)
            committed = vectors.committed_files()
            for path, size in committed:
                _copy_prefix(path, scratch / path.name, size)
            copied = {path.name for path, _ in committed}
            for entry in os.scandir(index.path):
                name = entry.name
                if _left_out(name) or name in copied:
                    continue
                cache = layout.parse(name) is not None  # vectors, graph, means or lexical
                if cache and name not in keep_whole:
                    continue  # superseded, or a leftover of an interrupted write
                if entry.is_dir():
                    _copy_tree(Path(entry.path), scratch / name)
                elif entry.is_file():
                    _copy_prefix(Path(entry.path), scratch / name, None)
            fsync_dir(scratch)
            os.rename(scratch, dest)
            fsync_dir(dest.parent)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
    return dest


def _left_out(name: str) -> bool:
    from .index import layout

    return (name == layout.LOCK or name.startswith(layout.DOCUMENTS) or name.startswith(".")
            or layout.is_temporary(name))


def _new_destination(destination: str | os.PathLike[str], source: Path) -> Path:
    dest = Path(destination).expanduser()
    if dest.exists() and not (dest.is_dir() and not any(os.scandir(dest))):
        raise InvalidInputError(f"{dest} already exists: give a new folder for the copy")
    resolved, inside = dest.resolve(), source.resolve()
    if resolved == inside or inside in resolved.parents:
        raise InvalidInputError(f"{dest} is inside the index {source}: copy it elsewhere")
    if dest.exists():
        dest.rmdir()  # an empty folder: the copy is renamed into its place
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest


def _backup_sqlite(source: Path, target: Path) -> None:
    src = sqlite3.connect(source, timeout=30.0)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
        finally:
            dst.close()
    finally:
        src.close()
    for suffix in ("", "-wal"):
        path = target.with_name(target.name + suffix)
        if path.exists():
            with open(path, "rb+") as f:
                os.fsync(f.fileno())


def _copy_prefix(source: Path, target: Path, size: int | None) -> None:
    """Copy the first ``size`` bytes (all when None) of ``source``, durably."""
    left = size
    with open(source, "rb") as src, open(target, "wb") as dst:
        while left is None or left > 0:
            chunk = src.read(_COPY_CHUNK if left is None else min(_COPY_CHUNK, left))
            if not chunk:
                break
            dst.write(chunk)
            if left is not None:
                left -= len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    if left:
        raise IndexCorruptError(f"{source} ended {left} bytes before its committed rows")


def _copy_tree(source: Path, target: Path) -> None:
    target.mkdir()
    for entry in os.scandir(source):
        if entry.is_dir():
            _copy_tree(Path(entry.path), target / entry.name)
        else:
            _copy_prefix(Path(entry.path), target / entry.name, None)
    fsync_dir(target)


# -- recovery -------------------------------------------------------------------------------------
@dataclass
class RecoveryResult:
    """What :func:`recover_index` saved.

    Attributes:
        path: the new index.
        recovered: documents written to it.
        lost: what could not be recovered, one line per kind, e.g. ``"3 document(s) whose
            rows SQLite cannot read"``.
        lost_ids: the ids of the documents left out, where they are still known (SQLite's
            index of ids often survives damage to the rows).
    """

    path: Path
    recovered: int
    lost: list[str] = field(default_factory=list)
    lost_ids: list[str] = field(default_factory=list)


def recover_index(source: str | os.PathLike[str], destination: str | os.PathLike[str],
                  *, batch_size: int = 512) -> RecoveryResult:
    """Save the readable documents of the damaged index ``source`` into a new index.

    Every document row that SQLite can still read is kept when its metadata is a JSON object
    and its token vectors lie inside the vector file and are finite unit vectors; they are
    stored as they are (nothing is re-encoded, and no model is loaded). The source folder is
    only read. Use it when ``colbridge check`` reports damage to ``documents.sqlite`` that
    ``--repair`` cannot fix and there is no backup to restore.

    Args:
        source: the damaged index folder (its ``manifest.json`` must be readable).
        destination: a new folder for the recovered index (missing or empty).
        batch_size: documents written per transaction.

    Returns:
        A :class:`RecoveryResult`: the documents recovered and what was lost.
    """
    from .index.embedded import EmbeddedIndex
    from .index.manifest import Manifest
    from .models import ColBERTModel

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    folder = Path(source).expanduser()
    manifest = Manifest.read(folder)
    info = manifest.model
    dest = _new_destination(destination, folder)
    lost: dict[str, int] = {}
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.recovering-", dir=dest.parent))
    try:
        _create_empty(scratch, manifest)
        # Only the name matters: add_encoded stores the given vectors, nothing is encoded.
        model = ColBERTModel(info.name, query_length=info.query_length,
                             document_length=info.document_length)
        with _VectorSource(folder, manifest.codec, info.dimension) as vectors, \
                EmbeddedIndex(scratch, model=model, create=False) as target:
            batch: list[_Saved] = []
            saved: set[str] = set()
            rows, known = _readable_rows(folder, lost)
            layouts = _readable_layouts(folder)
            if layouts is None:
                lost["unreadable passages table: split documents saved whole"] = 1
                layouts = {}
            for doc_no, *row in rows:
                document = _usable(row, vectors, lost)
                if document is None or document[0] in saved:
                    continue
                saved.add(document[0])
                batch.append((*document, _layout_of(doc_no, document, layouts, lost)))
                if len(batch) == batch_size:
                    _store(target, batch)
            if batch:
                _store(target, batch)
            recovered = target.count()
        os.rename(scratch, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    lost_ids = sorted(set(known.values()) - saved) if known is not None else []
    return RecoveryResult(dest, recovered, [f"{n} {what}" for what, n in lost.items()], lost_ids)


def _create_empty(folder: Path, manifest: Any) -> None:
    from .index.docstore import DocStore

    DocStore(folder, create=True).close()
    manifest.write(folder)


# A document to save: id, text, metadata, vectors, passage layout.
_Saved = tuple[str, str, dict[str, Any], np.ndarray, "tuple[Passage, ...] | None"]


def _store(target: EmbeddedIndex, batch: list[_Saved]) -> None:
    target.add_encoded([b[3] for b in batch], [b[1] for b in batch], ids=[b[0] for b in batch],
                       metadatas=[b[2] for b in batch], passages=[b[4] for b in batch])
    batch.clear()


def _readable_layouts(folder: Path) -> dict[int, Any] | None:
    """``{doc_no: stored layout}`` of the split documents, or None when the ``passages``
    table cannot be read (each split document is then saved whole)."""
    from .index.docstore import FILENAME

    conn = _read_only(folder / FILENAME)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'passages'"
                        ).fetchone() is None:
            return {}
        return dict(conn.execute("SELECT doc_no, layout FROM passages").fetchall())
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()


def _layout_of(doc_no: Any, document: tuple[str, str, dict[str, Any], np.ndarray],
               layouts: dict[int, Any], lost: dict[str, int]
               ) -> tuple[Passage, ...] | None:
    """The passages of a recovered document, or None (stored whole: it fit, it was truncated,
    or its layout is unusable, which ``lost`` counts)."""
    from .passages import layout_problem, read_layout

    raw = layouts.get(doc_no)
    if raw is None:
        return None
    try:
        passages = read_layout(raw)
    except ValueError:
        passages = None
    if passages is None or layout_problem(passages, len(document[3]), len(document[1])):
        _count(lost, "split document(s) whose passage layout is unusable, saved whole")
        return None
    return passages if len(passages) > 1 else None


def _count(lost: dict[str, int], what: str, n: int = 1) -> None:
    lost[what] = lost.get(what, 0) + n


def _readable_rows(folder: Path, lost: dict[str, int]
                   ) -> tuple[list[tuple[Any, ...]], dict[int, str] | None]:
    """Every row SQLite can still read, as ``(doc_no, id, text, metadata, vec_start,
    vec_count)``, and the ids of all the documents the store held by number, when its index of
    ids is readable.

    A range of rows that fails to read is split in halves until the unreadable rows are
    isolated, so one damaged page loses only the rows stored on it.
    """
    from .index.docstore import FILENAME

    path = folder / FILENAME
    if not path.exists():
        raise IndexCorruptError(f"{path} is missing: there are no documents to recover")
    conn = _read_only(path)
    try:
        known = _ids_by_doc_no(conn)
        if known is not None:
            top = max(known, default=None)
        else:
            try:
                top = conn.execute("SELECT max(doc_no) FROM documents").fetchone()[0]
            except sqlite3.DatabaseError:
                top = _highest_doc_no(conn)
        pending = [(1, int(top))] if top is not None else []  # AUTOINCREMENT starts at 1
        query = ("SELECT doc_no, id, text, metadata, vec_start, vec_count FROM documents "
                 "WHERE doc_no BETWEEN ? AND ? ORDER BY doc_no")
        found: list[tuple[Any, ...]] = []
        unreadable = 0
        while pending:
            low, high = pending.pop()
            try:
                rows = conn.execute(query, (low, high)).fetchall()
            except sqlite3.DatabaseError:
                if low == high:
                    unreadable += known is None or low in known
                else:
                    middle = (low + high) // 2
                    pending += [(middle + 1, high), (low, middle)]  # low half first
                continue
            found += rows
    finally:
        conn.close()
    if known is not None:
        unreadable = len(set(known) - {row[0] for row in found})
    if unreadable:
        _count(lost, "document(s) whose rows SQLite cannot read" if known is not None else
               "document number(s) SQLite cannot read (lost documents, or deleted ones)",
               unreadable)
    return found, known


def _ids_by_doc_no(conn: sqlite3.Connection) -> dict[int, str] | None:
    """``{doc_no: id}`` from SQLite's index of the unique ids, or None when it is unreadable."""
    try:
        rows = conn.execute("SELECT doc_no, id FROM documents "
                            "INDEXED BY sqlite_autoindex_documents_1").fetchall()
    except sqlite3.DatabaseError:
        return None
    return {int(n): i for n, i in rows if isinstance(n, int)}


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that leaves the folder as it is. Without a write-ahead log to read, the
    file is opened as immutable, so SQLite creates no ``-wal``/``-shm`` files beside it."""
    wal = path.with_name(path.name + "-wal")
    pending = wal.exists() and wal.stat().st_size > 0
    uri = path.resolve().as_uri() + ("?mode=ro" if pending else "?mode=ro&immutable=1")
    return sqlite3.connect(uri, uri=True)


def _highest_doc_no(conn: sqlite3.Connection) -> int | None:
    """The last document number handed out, when ``max(doc_no)`` cannot be read."""
    try:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'documents'").fetchone()
    except sqlite3.DatabaseError:
        row = None
    if row is None:
        raise IndexCorruptError("documents.sqlite is too damaged to tell which rows it held")
    return int(row[0])


class _VectorSource:
    """The damaged index's token store of the committed generation (else the newest one
    present), with every whole row its file holds."""

    def __init__(self, folder: Path, codec: str, dimension: int) -> None:
        from .index import layout
        from .index.vectors import store_class

        store_type = store_class(codec)
        present = sorted(name.generation for name, _ in layout.files_of(folder, layout.VECTORS)
                         if name.extension == store_type.extension)
        generation = _committed_generation(folder)
        if generation not in present:
            generation = present[-1] if present else None
        self.norm_tolerance = store_type.norm_tolerance
        self.rows = 0
        self.matrix: Any = np.zeros((0, dimension), np.float32)
        held = store_type.held_rows(folder, generation, dimension) if present else None
        if held:
            self.rows = held
            self.matrix = store_type(folder, generation, dimension, held).view()

    def __enter__(self) -> _VectorSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.matrix = None  # type: ignore[assignment]


def _committed_generation(folder: Path) -> int | None:
    from .index.docstore import FILENAME

    try:
        conn = _read_only(folder / FILENAME)
        try:
            row = conn.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None
    return int(row[0]) if row else None


def _usable(row: tuple[Any, Any, Any, Any, Any], vectors: _VectorSource, lost: dict[str, int]
            ) -> tuple[str, str, dict[str, Any], np.ndarray] | None:
    doc_id, text, metadata, start, count = row
    if not (isinstance(doc_id, str) and doc_id and isinstance(text, str) and text.strip()):
        _count(lost, "row(s) without a usable id or text")
        return None
    try:
        parsed = json.loads(metadata)
    except (TypeError, ValueError):
        parsed = None
    if not isinstance(parsed, dict):
        _count(lost, "row(s) whose metadata is not a JSON object")
        return None
    if not (isinstance(start, int) and isinstance(count, int) and start >= 0 and count >= 1
            and start + count <= vectors.rows):
        _count(lost, "row(s) whose token vectors lie outside the vector file")
        return None
    rows = np.asarray(vectors.matrix[start:start + count], dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1)
    if not (np.isfinite(norms).all() and (np.abs(norms - 1.0) <= vectors.norm_tolerance).all()):
        _count(lost, "row(s) whose token vectors are damaged")
        return None
    return doc_id, text, parsed, rows
