"""The SQLite document store: ids, texts, metadata, where each document's vectors live.

Schema (``documents.sqlite``, WAL mode)::

    documents(doc_no INTEGER PRIMARY KEY AUTOINCREMENT,   -- internal number, never reused
              id TEXT UNIQUE NOT NULL,       -- the caller's id
              text TEXT NOT NULL,
              metadata TEXT NOT NULL,        -- a JSON object
              vec_start INTEGER NOT NULL,    -- first row of its token vectors in the vector file
              vec_count INTEGER NOT NULL)    -- how many rows
    state(key TEXT PRIMARY KEY, value INTEGER NOT NULL)
        schema_version, generation (which vector file is current),
        vector_rows (committed rows in that file), changes (bumped by every write)
    passages(doc_no INTEGER PRIMARY KEY,     -- a document split into passages (only those)
             layout TEXT NOT NULL)           -- JSON [[start, end, rows], ...], in row order

The ``passages`` table is created by the first write of a split document; a store without it
holds no split document.

A write is one transaction: a document becomes visible together with its vectors' location and
the new row count, or not at all.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..errors import IndexCorruptError
from ..filters import Condition, to_sql
from ..passages import Passage, read_layout

FILENAME = "documents.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_no INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vec_start INTEGER NOT NULL,
    vec_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


_OWN_OBJECTS = {
    ("table", "documents"), ("table", "state"), ("table", "sqlite_sequence"),
    ("index", "sqlite_autoindex_documents_1"), ("index", "sqlite_autoindex_state_1"),
    ("table", "checksums"), ("index", "sqlite_autoindex_checksums_1"), ("table", "vector_sums"),
    ("table", "passages"),
}
"""Every schema object the store holds; anything else (a trigger, a view) was planted."""


def foreign_schema_objects(conn: sqlite3.Connection) -> list[str]:
    """Schema objects of a store that colbridge did not create, as ``"trigger 'name'"``."""
    found = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
    return sorted(f"{kind} {name!r}" for kind, name in found if (kind, name) not in _OWN_OBJECTS)


_CHECKSUMS = """
CREATE TABLE IF NOT EXISTS checksums (name TEXT PRIMARY KEY, bytes INTEGER NOT NULL,
                                      sha256 TEXT NOT NULL)
"""


_VECTOR_SUMS = """
CREATE TABLE IF NOT EXISTS vector_sums (first_row INTEGER PRIMARY KEY, rows INTEGER NOT NULL,
                                        sha256 TEXT NOT NULL)
"""


_PASSAGES = """
CREATE TABLE IF NOT EXISTS passages (doc_no INTEGER PRIMARY KEY, layout TEXT NOT NULL)
"""


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def read_vector_sums(conn: sqlite3.Connection) -> list[tuple[int, int, str]]:
    """``(first row, rows, sha256)`` of each committed run of rows of the current vector file
    (empty when the store has no table yet: rows written by an older colbridge)."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                        "AND name = 'vector_sums'").fetchone():
        return []
    return conn.execute("SELECT first_row, rows, sha256 FROM vector_sums ORDER BY first_row"
                        ).fetchall()


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (``BEGIN IMMEDIATE``): committed when the block
    ends, rolled back when it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _advance(conn: sqlite3.Connection, vector_rows: int) -> None:
    """Record the committed row count and count one more change (what readers compare)."""
    conn.execute("UPDATE state SET value = ? WHERE key = 'vector_rows'", (vector_rows,))
    conn.execute("UPDATE state SET value = value + 1 WHERE key = 'changes'")


def add_vector_sums(conn: sqlite3.Connection, sums: Sequence[tuple[int, int, str]]) -> None:
    """Record ``(first row, rows, sha256)`` of runs of committed rows that have none (rows
    written by an older colbridge), in one transaction."""
    with _transaction(conn):
        conn.execute(_VECTOR_SUMS)
        conn.executemany("INSERT INTO vector_sums(first_row, rows, sha256) VALUES (?, ?, ?)",
                         sums)


def read_checksums(conn: sqlite3.Connection) -> dict[str, tuple[int, str]]:
    """``{file name: (bytes, sha256)}`` recorded in a store (empty when it has no table yet)."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checksums'"
                        ).fetchone():
        return {}
    return {name: (size, digest)
            for name, size, digest in conn.execute("SELECT name, bytes, sha256 FROM checksums")}


_F = TypeVar("_F", bound=Callable[..., Any])


def _damage_is_corruption(method: _F) -> _F:
    """Report a damaged database file (sqlite3 raises plain ``DatabaseError`` for "database disk
    image is malformed" and "file is not a database") as :class:`IndexCorruptError`."""

    @functools.wraps(method)
    def checked(self: DocStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            undecodable = isinstance(e, sqlite3.OperationalError) and "decode" in str(e)
            if type(e) is not sqlite3.DatabaseError and not undecodable:  # locked, I/O: not damage
                raise
            raise IndexCorruptError(
                f"{self.path} is damaged ({e}); run `colbridge check` and restore it from a backup"
            ) from e

    return checked  # type: ignore[return-value]


@dataclass(frozen=True)
class NewDocument:
    id: str
    text: str
    metadata_json: str
    vec_start: int
    vec_count: int
    passages: tuple[Passage, ...] | None = None
    """Its passages (a split document), or None."""


@dataclass(frozen=True)
class State:
    generation: int
    vector_rows: int
    changes: int


class DocStore:
    """Thread-safe access to ``documents.sqlite``: one connection per thread."""

    def __init__(self, folder: Path, *, create: bool = False) -> None:
        self.path = folder / FILENAME
        if not create and not self.path.exists():
            raise IndexCorruptError(f"{folder} has no {FILENAME}: the document store is missing")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        try:
            if create:
                with self._conn() as conn:
                    conn.executescript(_SCHEMA)
                    conn.executemany(
                        "INSERT OR IGNORE INTO state(key, value) VALUES (?, ?)",
                        [("schema_version", SCHEMA_VERSION), ("generation", 0),
                         ("vector_rows", 0), ("changes", 0)],
                    )
            row = self._conn().execute(
                "SELECT value FROM state WHERE key = 'schema_version'").fetchone()
            version = row[0] if row else None
            foreign = foreign_schema_objects(self._conn())
        except sqlite3.DatabaseError as e:
            raise IndexCorruptError(f"{self.path} is not a readable SQLite database: {e}") from e
        if foreign:
            self.close()
            raise IndexCorruptError(
                f"{self.path} holds schema objects colbridge did not create "
                f"({', '.join(foreign)}); refusing to use it: drop them or restore the store from "
                "a backup"
            )
        if row is None:
            raise IndexCorruptError(f"{self.path} lacks the state entry 'schema_version'")
        if type(version) is not int or version != SCHEMA_VERSION:
            raise IndexCorruptError(
                f"{self.path} has schema version {version!r}; this colbridge reads {SCHEMA_VERSION}"
            )

    @classmethod
    def for_inspection(cls, folder: Path) -> DocStore:
        """The store of ``folder`` opened as it is, for ``colbridge check`` to report what is
        wrong with it: none of the constructor's checks run, nothing is created or converted
        (no journal-mode change), and the inspection methods below raise ``sqlite3.Error`` on
        a damaged file rather than :class:`~colbridge.IndexCorruptError`."""
        store = cls.__new__(cls)
        store.path = folder / FILENAME
        store._local = threading.local()
        store._connections = []
        store._connections_lock = threading.Lock()
        store._inspecting = True
        return store

    _inspecting = False

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None and self._inspecting:
            conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=rw", uri=True,
                                   timeout=30.0, isolation_level=None, check_same_thread=False)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()

    # -- reads ------------------------------------------------------------------------------
    def _state_value(self, key: str) -> int:
        row = self._conn().execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise IndexCorruptError(f"{self.path} lacks the state entry {key!r}")
        return self._valid_state(key, row[0])

    def _valid_state(self, key: str, value: Any) -> int:
        if type(value) is not int or value < 0:  # SQLite stores whatever it is given
            raise IndexCorruptError(f"{self.path} has an impossible state: {key} is {value!r}")
        return value

    @_damage_is_corruption
    def state(self) -> State:
        rows = dict(self._conn().execute("SELECT key, value FROM state").fetchall())
        try:
            return State(*(self._valid_state(key, rows[key])
                           for key in ("generation", "vector_rows", "changes")))
        except KeyError as e:
            raise IndexCorruptError(f"{self.path} lacks the state entry {e}") from None

    @_damage_is_corruption
    def changes(self) -> int:
        return self._state_value("changes")

    @_damage_is_corruption
    def count(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM documents").fetchone()[0])

    @_damage_is_corruption
    def ranges(self) -> tuple[State, np.ndarray]:
        """The state and every document's ``(doc_no, vec_start, vec_count)``, read consistently."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            state = self.state()
            rows = conn.execute("SELECT doc_no, vec_start, vec_count FROM documents").fetchall()
        finally:
            conn.execute("COMMIT")
        if any(type(value) is not int for row in rows for value in row):
            raise IndexCorruptError(
                f"{self.path} has vector ranges that are not integers; run `colbridge check`")
        table = np.array(rows, dtype=np.int64).reshape(-1, 3)
        if len(table) and ((table[:, 1] < 0) | (table[:, 2] < 1)).any():
            raise IndexCorruptError(f"{self.path} has empty or negative vector ranges; "
                                    "run `colbridge check`")
        return state, table

    @_damage_is_corruption
    def passages(self, doc_nos: Iterable[int] | None = None) -> dict[int, tuple[Passage, ...]]:
        """The passages of the split documents among ``doc_nos`` (all of them when None)."""
        conn = self._conn()
        if not _has_table(conn, "passages"):
            return {}
        if doc_nos is None:
            rows = conn.execute("SELECT doc_no, layout FROM passages").fetchall()
        else:
            rows = conn.execute(
                "SELECT doc_no, layout FROM passages WHERE doc_no IN "
                "(SELECT value FROM json_each(?))", (json.dumps([int(n) for n in doc_nos]),),
            ).fetchall()
        found = {}
        for doc_no, layout in rows:
            try:
                found[doc_no] = read_layout(layout)
            except ValueError:
                raise IndexCorruptError(
                    f"{self.path}: document number {doc_no} has a passage layout that cannot be "
                    "read; run `colbridge check`") from None
        return found

    @_damage_is_corruption
    def doc_nos_for_ids(self, ids: Sequence[str]) -> dict[str, int]:
        rows = self._conn().execute(
            "SELECT id, doc_no FROM documents WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(ids)),),
        )
        return dict(rows.fetchall())

    @_damage_is_corruption
    def fetch_by_ids(self, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        rows = self._conn().execute(
            "SELECT id, text, metadata FROM documents WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(ids)),),
        )
        return {i: self._document(i, text, meta)
                for i, text, meta in rows.fetchall()}

    @_damage_is_corruption
    def fetch_by_doc_nos(self, doc_nos: Iterable[int]) -> dict[int, tuple[str, str, dict[str, Any]]]:
        rows = self._conn().execute(
            "SELECT doc_no, id, text, metadata FROM documents "
            "WHERE doc_no IN (SELECT value FROM json_each(?))",
            (json.dumps([int(n) for n in doc_nos]),),
        )
        return {n: (i, *self._document(i, text, meta)) for n, i, text, meta in rows.fetchall()}

    @_damage_is_corruption
    def texts_by_doc_nos(self, doc_nos: Sequence[int]) -> dict[int, str]:
        rows = self._conn().execute(
            "SELECT doc_no, text FROM documents WHERE doc_no IN (SELECT value FROM json_each(?))",
            (json.dumps([int(n) for n in doc_nos]),),
        )
        texts = dict(rows.fetchall())
        for doc_no, text in texts.items():
            if not isinstance(text, str):
                raise IndexCorruptError(f"{self.path}: document number {doc_no} has a text that "
                                        "is not UTF-8 text; run `colbridge check`")
        return texts

    @_damage_is_corruption
    def matching_doc_nos(self, conditions: list[Condition]) -> np.ndarray:
        where, params = to_sql(conditions)
        rows = self._conn().execute(f"SELECT doc_no FROM documents WHERE {where}", params)
        return np.array([r[0] for r in rows.fetchall()], dtype=np.int64)

    @_damage_is_corruption
    def ids_matching(self, conditions: list[Condition]) -> list[str]:
        """The ids of the documents matching ``conditions``, in insertion order."""
        where, params = to_sql(conditions)
        rows = self._conn().execute(f"SELECT id FROM documents WHERE {where} ORDER BY doc_no",
                                    params)
        return [r[0] for r in rows.fetchall()]

    @_damage_is_corruption
    def absent_fields(self, names: Iterable[str]) -> list[str]:
        """Those of the metadata fields ``names`` that no document has (a scan per absent one)."""
        query = ("SELECT 1 FROM documents WHERE EXISTS "
                 "(SELECT 1 FROM json_each(metadata) WHERE key = ?) LIMIT 1")
        conn = self._conn()
        return [n for n in names if conn.execute(query, (n,)).fetchone() is None]

    def iter_documents(self, batch: int = 1000) -> Iterable[tuple[str, str, dict[str, Any], int, int]]:
        """Every document as ``(id, text, metadata, vec_start, vec_count)``, in insertion order."""
        last = -1
        while True:
            rows = self._conn().execute(
                "SELECT doc_no, id, text, metadata, vec_start, vec_count FROM documents "
                "WHERE doc_no > ? ORDER BY doc_no LIMIT ?",
                (last, batch),
            ).fetchall()
            if not rows:
                return
            for doc_no, i, text, meta, start, count in rows:
                yield i, *self._document(i, text, meta), start, count
                last = doc_no

    def _document(self, doc_id: str, text: Any, metadata: Any) -> tuple[str, dict[str, Any]]:
        """A stored ``(text, metadata)`` pair, checked: damage is an IndexCorruptError."""
        if not isinstance(text, str):
            raise IndexCorruptError(f"{self.path}: document {doc_id!r} has a text that is not "
                                    "UTF-8 text; run `colbridge check`")
        try:
            parsed = json.loads(metadata)
        except (TypeError, ValueError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict):
            raise IndexCorruptError(f"{self.path}: document {doc_id!r} has metadata that is not a "
                                    "JSON object; run `colbridge check`")
        return text, parsed

    @_damage_is_corruption
    def checksum(self, name: str) -> tuple[int, str] | None:
        """The ``(bytes, sha256)`` recorded for the cache file ``name`` when it was written."""
        return read_checksums(self._conn()).get(name)

    # -- inspection (colbridge check) ------------------------------------------------------------
    def integrity_verdict(self, limit: int = 20) -> list[str]:
        """SQLite's ``integrity_check``: ``["ok"]``, or up to ``limit`` lines of damage."""
        conn = self._conn()  # failing to open is not a verdict: the caller reports it
        try:
            rows = conn.execute(f"PRAGMA integrity_check({int(limit)})").fetchall()
        except sqlite3.DatabaseError as e:
            return [str(e)]
        return [line for row in rows for line in str(row[0]).splitlines()]

    def foreign_objects(self) -> list[str]:
        """Schema objects colbridge did not create (see :func:`foreign_schema_objects`)."""
        return foreign_schema_objects(self._conn())

    def table_names(self) -> set[str]:
        return {r[0] for r in self._conn().execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}

    def raw_state(self) -> dict[str, Any]:
        """The ``state`` table as stored, values unchecked."""
        return dict(self._conn().execute("SELECT key, value FROM state").fetchall())

    def untyped_ranges(self) -> int:
        """Documents whose number or vector range is not stored as integers."""
        return self._conn().execute(
            "SELECT count(*) FROM documents WHERE typeof(vec_start) != 'integer' "
            "OR typeof(vec_count) != 'integer' OR typeof(doc_no) != 'integer'").fetchone()[0]

    def ranges_by_start(self) -> np.ndarray:
        """Every document's ``(vec_start, vec_count)``, ``(n, 2)`` int64, sorted by start."""
        rows = self._conn().execute(
            "SELECT vec_start, vec_count FROM documents ORDER BY vec_start").fetchall()
        return np.array(rows, dtype=np.int64).reshape(-1, 2)

    def bad_metadata(self) -> int:
        """Documents whose metadata is not a JSON object."""
        return self._conn().execute(
            "SELECT count(*) FROM documents WHERE NOT json_valid(metadata) "
            "OR json_type(metadata) != 'object'").fetchone()[0]

    def bad_texts(self) -> int:
        """Documents whose text is not a valid UTF-8 string (a blob, or undecodable bytes)."""
        conn = self._conn()
        bad = conn.execute(
            "SELECT count(*) FROM documents WHERE typeof(text) != 'text'").fetchone()[0]
        cursor = conn.execute(
            "SELECT CAST(text AS BLOB) FROM documents WHERE typeof(text) = 'text'")
        while batch := cursor.fetchmany(10_000):
            for (raw,) in batch:
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    bad += 1
        return bad

    def texts_up_to(self, doc_no: int) -> dict[int, str]:
        """``{doc_no: text}`` of the documents numbered up to ``doc_no`` whose text is text."""
        rows = self._conn().execute(
            "SELECT doc_no, text FROM documents WHERE doc_no <= ?", (int(doc_no),))
        return {n: text for n, text in rows if isinstance(text, str)}

    def passage_layouts(self) -> Iterator[tuple[Any, Any, Any, Any, Any]]:
        """Every ``passages`` row as stored, with its document's vector count and text:
        ``(doc_no, layout, id, vec_count, text)``; the last three are None for a row whose number
        no document has."""
        conn = self._conn()
        if not _has_table(conn, "passages"):
            return
        cursor = conn.execute(
            "SELECT p.doc_no, p.layout, d.id, d.vec_count, d.text FROM passages AS p "
            "LEFT JOIN documents AS d ON d.doc_no = p.doc_no ORDER BY p.doc_no")
        while batch := cursor.fetchmany(1000):
            yield from batch

    def drop_passage_layouts(self, doc_nos: Sequence[int]) -> None:
        """Delete the ``passages`` rows of ``doc_nos`` in one transaction (``colbridge check
        --repair``): a document left without one is scored as one passage over all its rows.
        Counts as a change, so open indexes reload."""
        conn = self._conn()
        with _transaction(conn):
            conn.execute("DELETE FROM passages WHERE doc_no IN (SELECT value FROM json_each(?))",
                         (json.dumps([int(n) for n in doc_nos]),))
            conn.execute("UPDATE state SET value = value + 1 WHERE key = 'changes'")

    def recorded_checksums(self) -> dict[str, tuple[int, str]]:
        """Every ``{file name: (bytes, sha256)}`` recorded (see :func:`read_checksums`)."""
        return read_checksums(self._conn())

    def recorded_vector_sums(self) -> list[tuple[int, int, str]]:
        """Every run of rows' ``(first row, rows, sha256)`` (see :func:`read_vector_sums`)."""
        return read_vector_sums(self._conn())

    def record_vector_sums(self, sums: Sequence[tuple[int, int, str]]) -> None:
        """Record checksums of committed runs of rows that have none (see
        :func:`add_vector_sums`)."""
        add_vector_sums(self._conn(), sums)

    # -- writes -----------------------------------------------------------------------------
    @_damage_is_corruption
    def commit_write(
        self, *, delete_doc_nos: Sequence[int], insert: Sequence[NewDocument], vector_rows: int,
        vector_sum: tuple[int, int, str] | None = None,
    ) -> list[int]:
        """Delete and insert in one transaction; returns the new documents' doc_nos.
        ``vector_sum`` is ``(first row, rows, sha256)`` of the rows this write appended."""
        conn = self._conn()
        with _transaction(conn):
            if vector_sum is not None and vector_sum[1]:
                conn.execute(_VECTOR_SUMS)
                conn.execute("INSERT OR REPLACE INTO vector_sums(first_row, rows, sha256) "
                             "VALUES (?, ?, ?)", vector_sum)
            if delete_doc_nos:
                conn.execute(
                    "DELETE FROM documents WHERE doc_no IN (SELECT value FROM json_each(?))",
                    (json.dumps([int(n) for n in delete_doc_nos]),),
                )
                if _has_table(conn, "passages"):
                    conn.execute(
                        "DELETE FROM passages WHERE doc_no IN (SELECT value FROM json_each(?))",
                        (json.dumps([int(n) for n in delete_doc_nos]),),
                    )
            if any(doc.passages for doc in insert):
                conn.execute(_PASSAGES)
            new_nos = []
            for doc in insert:
                cursor = conn.execute(
                    "INSERT INTO documents(id, text, metadata, vec_start, vec_count) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (doc.id, doc.text, doc.metadata_json, doc.vec_start, doc.vec_count),
                )
                new_nos.append(int(cursor.lastrowid))
                if doc.passages:
                    conn.execute("INSERT INTO passages(doc_no, layout) VALUES (?, ?)", (
                        new_nos[-1], json.dumps([[p.start, p.end, p.rows] for p in doc.passages])))
            _advance(conn, vector_rows)
        return new_nos

    @_damage_is_corruption
    def commit_compaction(
        self, *, new_starts: Sequence[tuple[int, int]], generation: int, vector_rows: int,
        vector_sums: Sequence[tuple[int, int, str]] = (),
    ) -> None:
        """Point every document at its rows in the new vector file, in one transaction, with
        the checksums of that file's runs of rows."""
        conn = self._conn()
        with _transaction(conn):
            conn.execute(_VECTOR_SUMS)
            conn.execute("DELETE FROM vector_sums")
            conn.executemany("INSERT INTO vector_sums(first_row, rows, sha256) VALUES (?, ?, ?)",
                             vector_sums)
            conn.executemany(
                "UPDATE documents SET vec_start = ? WHERE doc_no = ?",
                [(start, doc_no) for doc_no, start in new_starts],
            )
            conn.execute("UPDATE state SET value = ? WHERE key = 'generation'", (generation,))
            _advance(conn, vector_rows)

    @_damage_is_corruption
    def record_checksums(self, records: dict[str, tuple[int, str]], keep: set[str] | None = None
                         ) -> None:
        """Record the ``(bytes, sha256)`` of cache files just written; with ``keep``, forget
        the records of every file not named in it (superseded files, deleted)."""
        conn = self._conn()
        with _transaction(conn):
            conn.execute(_CHECKSUMS)
            conn.executemany(
                "INSERT OR REPLACE INTO checksums(name, bytes, sha256) VALUES (?, ?, ?)",
                [(name, size, digest) for name, (size, digest) in records.items()])
            if keep is not None:
                conn.execute(
                    "DELETE FROM checksums WHERE name NOT IN (SELECT value FROM json_each(?))",
                    (json.dumps(sorted(keep)),))
