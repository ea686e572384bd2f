"""Consistency check and repair of an embedded index folder (``colbridge check``).

The check reads every file of the folder while holding its write lock and reports each thing
that breaks the rules of ``docs/index-format.md``:

* nothing in the folder is a symbolic link;
* ``manifest.json`` is a valid manifest of a format this colbridge reads;
* ``documents.sqlite`` passes SQLite's ``integrity_check``, holds the expected tables and no
  schema object colbridge did not create (a trigger, a view), and a state of integers;
* every document's vector range lies inside the committed rows, no two ranges overlap, every
  text is UTF-8 text and every metadata value is a JSON object;
* every passage layout (a document split into passages) belongs to a stored document, is a
  readable list of ``[start, end, rows]``, its rows add up to the document's vector count and
  its spans lie inside the stored text, in text order;
* the vector file holds at least the committed rows, every live token vector is finite and
  unit-length, and every run of rows matches the checksum recorded when it was committed; an
  int8 generation's parameter file is present, readable and matches its own checksum;
* the graph checkpoint that an open would load matches its recorded checksum, is readable,
  has the index's dimension, covers no more than the committed rows, and holds at least one
  item per ``pool`` token vectors of every document it covers;
* the lexical (BM25) segment that an open would load matches its recorded checksums, is sound,
  of a format this colbridge reads, and indexes each stored text with that text's terms;
* the document-means file that an open would load matches its recorded checksum, is readable
  and of the index's dimension.

Leftovers of interrupted writes (rows past the committed count, superseded files, temporary
files) are harmless; they are listed as notes, not problems. So are cache files and vector rows
without a recorded checksum (written by an older colbridge): an open does not trust such a cache
file but rebuilds it.

The graph, the document means and the lexical segment can be repaired: they are caches
of the vectors and the texts. ``repair=True`` deletes damaged or impossible graph checkpoints,
damaged means files and lexical segments, caches without a checksum and leftovers, rebuilds
what it deleted from the stored vectors and texts, saves fresh copies, and records checksums
of vector rows that have none. A passage layout of no document is deleted; an unusable layout
of a stored document is deleted too, which keeps the document (text, metadata, vectors) and
scores it as one passage over all its rows until it is added again. Other damage to the
manifest, the store or the vectors is reported, never "repaired" by dropping data: restore
those folders from a backup.

>>> report = check_index("my-index")            # doctest: +SKIP
>>> report.ok, report.problems                   # doctest: +SKIP
(True, [])
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._files import refuse_links
from .errors import IndexCorruptError, IndexLockedError
from .index import layout

if TYPE_CHECKING:
    from .index.docstore import DocStore
    from .index.vectors import TokenStore

_CHUNK_ROWS = 65_536


@dataclass
class CheckReport:
    """What :func:`check_index` found.

    Attributes:
        path: the folder checked.
        problems: rule violations; empty when the index is consistent.
        notes: harmless leftovers of interrupted writes (removed by the next checkpoint).
        repaired: what ``repair=True`` did.
        documents: documents stored (None when the store could not be read).
        vector_rows: committed token-vector rows (None when the store could not be read).
        repairable: every problem is in a cache or a passage layout, so ``repair=True`` can
            fix them.
    """

    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    documents: int | None = None
    vector_rows: int | None = None
    repairable: bool = False

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


@dataclass
class _Findings:
    report: CheckReport
    bad_graphs: list[Path] = field(default_factory=list)  # repair deletes these
    leftovers: list[Path] = field(default_factory=list)  # and these
    data_damaged: bool = False  # a problem outside the graph: repair cannot help
    checksums: dict[str, tuple[int, str]] = field(default_factory=dict)  # recorded in the store
    vector_sums: list[tuple[int, int, str]] = field(default_factory=list)  # likewise
    unrecorded_rows: list[tuple[int, int]] = field(default_factory=list)  # repair records these
    bad_layouts: list[int] = field(default_factory=list)  # doc_nos: repair drops their layouts
    bad_layout_ids: list[str] = field(default_factory=list)  # the ids of those documents


def check_index(
    path: str | os.PathLike[str], *, repair: bool = False, lock_timeout: float = 10.0
) -> CheckReport:
    """Check an index folder's consistency; with ``repair``, rebuild a damaged graph.

    Args:
        path: the index folder.
        repair: delete unusable graph checkpoints, caches, passage layouts and leftovers,
            rebuild the caches from the stored vectors and texts and check again. Refused
            (nothing is touched) when the manifest, the store or the vectors are damaged
            otherwise.
        lock_timeout: seconds to wait for a writer to finish before
            :class:`~colbridge.IndexLockedError`.

    Returns:
        A :class:`CheckReport`; ``report.ok`` is True when nothing is wrong.
    """
    folder = Path(path).expanduser()
    findings = _check(folder, lock_timeout)
    report = findings.report
    if not repair:
        return report
    if findings.data_damaged:
        report.notes.append(
            "not repaired: the damage is outside the caches (only the graph, the document "
            "means and the lexical segment can be rebuilt). Restore the folder from a backup "
            "(`colbridge backup` makes one), or save the readable documents with their stored "
            "vectors into a new index: `colbridge recover --from THIS_FOLDER --to NEW_FOLDER`"
        )
        return report
    if not (findings.bad_graphs or findings.leftovers or findings.unrecorded_rows
            or findings.bad_layouts):
        return report
    repaired = _repair(folder, findings, lock_timeout)
    after = _check(folder, lock_timeout).report
    after.repaired = repaired
    return after


# -- checking ----------------------------------------------------------------------------------
def _check(folder: Path, lock_timeout: float) -> _Findings:
    from .index.manifest import Manifest

    found = _Findings(CheckReport(folder))
    report = found.report
    if not folder.is_dir():
        report.problems.append(f"{folder} is not a folder" if folder.exists() else
                               f"{folder} does not exist")
        found.data_damaged = True
        return found
    try:
        refuse_links(folder)
    except IndexCorruptError as e:
        report.problems.append(str(e))
        found.data_damaged = True
        return found
    try:
        manifest = Manifest.read(folder)
    except IndexCorruptError as e:
        report.problems.append(f"manifest: {e}")
        found.data_damaged = True
        return found
    with _locked(folder, lock_timeout):
        state = _check_store(folder, found)
        if state is None:
            return found
        generation, vector_rows, ranges = state
        dimension = manifest.model.dimension
        _check_vectors(folder, manifest.codec, generation, vector_rows, ranges, dimension, found)
        _check_graphs(folder, generation, vector_rows, dimension, manifest.graph.pool, ranges,
                      found)
        _check_lexical(folder, found)
        _check_means(folder, dimension, found)
        _find_leftovers(folder, generation, found)
    report.repairable = bool(found.bad_graphs or found.bad_layouts) and not found.data_damaged
    return found


@contextlib.contextmanager
def _locked(folder: Path, timeout: float) -> Iterator[None]:
    from filelock import FileLock, Timeout

    lock = FileLock(folder / layout.LOCK, thread_local=False)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise IndexLockedError(
            f"{folder} is locked by a writer (waited {timeout:g} s); check it when the write ends"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _check_store(folder: Path, found: _Findings) -> tuple[int, int, np.ndarray] | None:
    """Integrity, schema and state of ``documents.sqlite``; its document ranges, sorted by start."""
    from .index.docstore import FILENAME, SCHEMA_VERSION, DocStore

    report = found.report
    if not (folder / FILENAME).exists():
        report.problems.append(f"{FILENAME} is missing: the documents are gone")
        found.data_damaged = True
        return None
    store = DocStore.for_inspection(folder)
    try:
        problem = None
        try:
            verdict = store.integrity_verdict(20)
        except sqlite3.Error as e:
            report.problems.append(f"{FILENAME} cannot be opened: {e}")
            found.data_damaged = True
            return None
        if verdict != ["ok"]:
            shown = [line for line in verdict if not line.startswith("***")][:3]
            problem = (f"{FILENAME} fails SQLite's integrity check: " + "; ".join(shown)
                       + (" …" if len(verdict) > 4 else ""))
        elif foreign := store.foreign_objects():
            problem = (f"{FILENAME} holds schema objects colbridge did not create: "
                       + ", ".join(foreign))
        elif not {"documents", "state"} <= store.table_names():
            problem = f"{FILENAME} lacks the documents or state table"
        if problem is None:
            state = store.raw_state()
            missing = {"schema_version", "generation", "vector_rows", "changes"} - set(state)
            if missing:
                problem = f"{FILENAME} lacks the state entries {sorted(missing)}"
            elif state["schema_version"] != SCHEMA_VERSION:
                problem = (f"{FILENAME} has schema version {state['schema_version']!r}, "
                           f"this colbridge reads {SCHEMA_VERSION}")
            elif not all(type(state[key]) is int and state[key] >= 0
                         for key in ("generation", "vector_rows", "changes")):
                problem = f"{FILENAME} has an impossible state {state}"
            elif untyped := store.untyped_ranges():
                problem = f"{untyped} document(s) have vector ranges that are not integers"
        if problem is not None:
            report.problems.append(problem)
            found.data_damaged = True
            return None
        generation, rows = state["generation"], state["vector_rows"]
        ranges = store.ranges_by_start()
        bad_metadata = store.bad_metadata()
        bad_texts = store.bad_texts()
        found.checksums = store.recorded_checksums()
        found.vector_sums = store.recorded_vector_sums()
        _check_layouts(store, found)
    except sqlite3.Error as e:
        report.problems.append(f"{FILENAME} cannot be read: {e}")
        found.data_damaged = True
        return None
    finally:
        store.close()
    report.documents, report.vector_rows = len(ranges), rows
    if bad_metadata:
        report.problems.append(f"{bad_metadata} document(s) have metadata that is not a JSON "
                               "object")
        found.data_damaged = True
    if bad_texts:
        report.problems.append(f"{bad_texts} document(s) have a text that is not UTF-8 text")
        found.data_damaged = True
    starts, counts = ranges[:, 0], ranges[:, 1]
    ends = starts + counts
    checks = [
        ((counts < 1) | (starts < 0), "have an empty or negative vector range"),
        (ends > rows, f"point past the {rows} committed vector rows"),
    ]
    for bad, what in checks:
        if bad.any():
            report.problems.append(f"{int(bad.sum())} document(s) {what}")
            found.data_damaged = True
    overlaps = int((starts[1:] < ends[:-1]).sum()) if len(ranges) > 1 else 0
    if overlaps:
        report.problems.append(f"{overlaps} document vector range(s) overlap the one before")
        found.data_damaged = True
    return generation, rows, ranges


def _check_layouts(store: DocStore, found: _Findings) -> None:
    """Each ``passages`` row against its document: problems that repair can fix by deleting
    the row (the document stays, scored as one passage)."""
    from .passages import layout_problem, read_layout

    orphans, damaged = 0, []
    for doc_no, raw, doc_id, rows, text in store.passage_layouts():
        if doc_id is None:
            orphans += 1
            found.bad_layouts.append(doc_no)
            continue
        try:
            trouble = layout_problem(read_layout(raw), rows,
                                     len(text) if isinstance(text, str) else None)
        except ValueError as e:
            trouble = f"its layout cannot be read ({e})"
        if trouble is not None:
            damaged.append(f"{doc_id!r}: {trouble}")
            found.bad_layouts.append(doc_no)
            found.bad_layout_ids.append(doc_id)
    if orphans:
        found.report.problems.append(f"{orphans} passage layout(s) belong to no stored document")
    if damaged:
        shown = "; ".join(damaged[:3]) + (" …" if len(damaged) > 3 else "")
        found.report.problems.append(
            f"{len(damaged)} split document(s) have an unusable passage layout: {shown}")


def _check_vectors(folder: Path, codec: str, generation: int, rows: int, ranges: np.ndarray,
                   dimension: int, found: _Findings) -> None:
    from .index.vectors import store_for_generation

    report = found.report
    # The manifest was read, so its codec is known; the generation's own file names its codec.
    store_type = store_for_generation(folder, codec, generation, dimension)
    problems, notes = store_type.file_problems(folder, generation, dimension, rows)
    report.notes.extend(notes)
    if problems:
        report.problems.extend(problems)
        found.data_damaged = True
        return
    if not rows or not len(ranges) or found.data_damaged:
        return
    live = np.zeros(rows, dtype=bool)
    for start, count in ranges:
        live[start:start + count] = True
    store = store_type(folder, generation, dimension, rows)
    view = store.view()
    bad = 0
    for begin in range(0, rows, _CHUNK_ROWS):
        chunk = np.asarray(view[begin:begin + _CHUNK_ROWS], dtype=np.float32)
        norms = np.linalg.norm(chunk, axis=1)
        wrong = ~np.isfinite(norms) | (np.abs(norms - 1.0) > store.norm_tolerance)
        bad += int((wrong & live[begin:begin + _CHUNK_ROWS]).sum())
    del view
    if bad:
        report.problems.append(f"{bad} live token vector(s) in {store.path.name} are not finite "
                               "unit vectors: the vector file is damaged")
        found.data_damaged = True
    outside = store.clipped_count() if hasattr(store, "clipped_count") else 0
    if outside:
        report.notes.append(f"{outside:,} values ({outside / (rows * dimension):.4%}) in "
                            f"{store.path.name} lie outside the codec's trained range (clipped); "
                            "`colbridge compact --retrain` fits it again")
    _check_vector_sums(store, rows, found)


def _check_vector_sums(store: TokenStore, rows: int, found: _Findings) -> None:
    """Each run of rows must match the checksum recorded when it was committed; runs without
    a record (written by an older colbridge) are notes, and repair records them."""
    report = found.report
    path = store.path
    mismatched, covered_to = [], 0
    for first, count, digest in found.vector_sums:
        if not (type(first) is int and type(count) is int and first >= 0 and count > 0
                and first + count <= rows and first >= covered_to):
            report.problems.append(f"{path.name} has an impossible checksum record (rows {first!r}"
                                   f" + {count!r} of {rows} committed)")
            found.data_damaged = True
            return
        if first > covered_to:
            found.unrecorded_rows.append((covered_to, first - covered_to))
        if store.range_digest(first, count) != digest:
            mismatched.append(f"{first}-{first + count - 1}")
        covered_to = first + count
    if covered_to < rows:
        found.unrecorded_rows.append((covered_to, rows - covered_to))
    if mismatched:
        shown = ", ".join(mismatched[:3]) + (" …" if len(mismatched) > 3 else "")
        report.problems.append(f"rows {shown} of {path.name} do not match the checksum recorded "
                               "when they were written: the vector file is damaged")
        found.data_damaged = True
    unrecorded = sum(count for _, count in found.unrecorded_rows)
    if unrecorded:
        report.notes.append(f"{unrecorded} committed row(s) of {path.name} have no checksum "
                            "recorded (written by an older colbridge); `--repair` records them")


def _check_graphs(folder: Path, generation: int, rows: int, dimension: int, pool: int,
                  ranges: np.ndarray, found: _Findings) -> None:
    """The checkpoint an open would load must be sound; impossible ones are problems too."""
    report = found.report
    checkpoints = [(name.rows, path) for name, path in layout.files_of(folder, layout.GRAPH)
                   if name.generation == generation]
    usable = sorted((c for c in checkpoints if c[0] <= rows), reverse=True)
    for covered, path in checkpoints:
        if covered > rows:
            report.problems.append(f"{path.name} covers {covered} rows but only {rows} are "
                                   "committed")
            found.bad_graphs.append(path)
    loaded = None  # the one an open would load: the newest with a recorded checksum
    for covered, path in usable:
        if loaded is not None:
            report.notes.append(f"{path.name} is superseded by {loaded.name}")
            found.leftovers.append(path)
        elif path.name not in found.checksums:
            report.notes.append(_UNRECORDED.format(path.name))
            found.leftovers.append(path)
        else:
            loaded = path
            trouble = _graph_trouble(path, covered, dimension, found.checksums[path.name],
                                     pool, ranges)
            if trouble:
                report.problems.append(f"{path.name} {trouble}")
                found.bad_graphs.append(path)


_UNRECORDED = ("{} has no checksum recorded (written by an older colbridge, or its save was "
               "interrupted): it is not loaded, and the next checkpoint replaces it")


def _graph_trouble(path: Path, covered: int, dimension: int, checksum: tuple[int, str],
                   pool: int, ranges: np.ndarray) -> str | None:
    import voyager

    from ._files import file_digest

    if file_digest(path) != tuple(checksum):  # verified before Voyager's native code reads it
        return "does not match the checksum recorded when it was written"
    try:
        index = voyager.Index.load(str(path))
    except Exception as e:  # voyager raises RuntimeError, ValueError ... on damaged files
        return f"cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    if index.num_dimensions != dimension:
        return f"has {index.num_dimensions}-d vectors, the index {dimension}-d"
    if len(index) > covered:
        return f"holds {len(index)} items but covers only {covered} rows"
    ids = np.fromiter(index.ids, dtype=np.uint64, count=len(index))
    if len(ids) and int(ids.max()) >= covered:
        return f"holds item ids beyond the {covered} rows it covers"
    # An item's id is a row of its own document, and a document of n token vectors has at
    # least n / pool items: fewer means documents the graph stage can no longer find.
    starts, counts = ranges[:, 0], ranges[:, 1]
    inside = starts + counts <= covered
    ids.sort()
    held = (np.searchsorted(ids, (starts + counts)[inside].astype(np.uint64))
            - np.searchsorted(ids, starts[inside].astype(np.uint64)))
    short = int((held < -(-counts[inside] // pool)).sum())
    if short:
        return (f"holds too few items for {short} of the documents it covers (fewer than one "
                f"per {pool} token vectors)")
    return None


def _check_lexical(folder: Path, found: _Findings) -> None:
    """The newest ``lexical-*`` segment must load and agree with the stored texts; older ones
    are superseded leftovers."""
    from .index.docstore import DocStore
    from .index.lexical import Segment, UnrecordedSegment, disagreement, saved_segments

    def load(path: Path) -> None:
        try:
            segment = Segment.load(path)
        except UnrecordedSegment:
            raise _Unrecorded from None
        store = DocStore.for_inspection(folder)
        try:
            texts = store.texts_up_to(segment.upto)
        except sqlite3.Error:
            return  # the store's own check reports it
        finally:
            store.close()
        trouble = disagreement(segment, texts)
        if trouble:
            raise ValueError(f"{path} {trouble}")

    _check_newest_cache([path for _, path in saved_segments(folder)], load,
                        "the lexical segment ", found)


def _check_means(folder: Path, dimension: int, found: _Findings) -> None:
    """The newest ``means-*.npz`` must load; older ones are superseded leftovers."""
    from ._files import file_digest
    from .index.means import read_means, saved_means

    def load(path: Path) -> None:
        recorded = found.checksums.get(path.name)
        if recorded is None:
            raise _Unrecorded
        if file_digest(path) != tuple(recorded):
            raise ValueError(f"{path.name} does not match the checksum recorded when it was "
                             "written")
        read_means(path, dimension)

    _check_newest_cache([path for _, _, path in saved_means(folder)], load,
                        "the document means: ", found)


def _check_newest_cache(paths: list[Path], load, label: str, found: _Findings) -> None:
    """``paths`` newest first: older ones are notes (leftovers), the newest must ``load``
    without ValueError, else it is a problem that repair deletes and rebuilds."""
    for path in paths[1:]:
        found.report.notes.append(f"{path.name} is superseded by {paths[0].name}")
        found.leftovers.append(path)
    if paths:
        try:
            load(paths[0])
        except _Unrecorded:
            found.report.notes.append(_UNRECORDED.format(paths[0].name))
            found.leftovers.append(paths[0])
        except ValueError as e:
            found.report.problems.append(f"{label}{e}")
            found.bad_graphs.append(paths[0])


class _Unrecorded(Exception):
    """A cache file without a recorded checksum: not trusted, replaced; a note, not a problem."""


def _find_leftovers(folder: Path, generation: int, found: _Findings) -> None:
    for path in layout.stale_files(folder, generation):
        if path not in found.leftovers:
            found.report.notes.append(f"{path.name} is a leftover of an interrupted write or "
                                      "compaction")
            found.leftovers.append(path)


# -- repairing ---------------------------------------------------------------------------------
def _record_vector_sums(folder: Path, findings: _Findings) -> str:
    """Record checksums of committed rows that have none (the check found them sound)."""
    from .index.docstore import DocStore
    from .index.manifest import Manifest
    from .index.vectors import store_for_generation

    manifest = Manifest.read(folder)
    store = DocStore(folder)
    try:
        state = store.state()
        dimension = manifest.model.dimension
        vectors = store_for_generation(folder, manifest.codec, state.generation, dimension)(
            folder, state.generation, dimension, state.vector_rows)
        sums = [(first, count, vectors.range_digest(first, count))
                for first, count in findings.unrecorded_rows]
        store.record_vector_sums(sums)
    finally:
        store.close()
    rows = sum(count for _, count, _ in sums)
    return f"recorded the checksums of {rows:,} vector rows written by an older colbridge"


def _drop_layouts(folder: Path, findings: _Findings) -> str:
    from .index.docstore import DocStore

    store = DocStore(folder)
    try:
        store.drop_passage_layouts(findings.bad_layouts)
    finally:
        store.close()
    orphans = len(findings.bad_layouts) - len(findings.bad_layout_ids)
    said = [f"deleted {orphans} passage layout(s) of no document"] if orphans else []
    if findings.bad_layout_ids:
        ids = findings.bad_layout_ids
        shown = ", ".join(repr(i) for i in ids[:5]) + (" …" if len(ids) > 5 else "")
        said.append(f"deleted the unusable passage layout of {len(ids)} document(s) ({shown}): "
                    "each keeps its text, metadata and vectors and is now scored as one passage "
                    "over all its rows; add it again to split it into passages anew")
    return "; ".join(said)


def _repair(folder: Path, findings: _Findings, lock_timeout: float) -> list[str]:
    from .index import EmbeddedIndex
    from .index.manifest import Manifest
    from .models import ColBERTModel

    done = []
    with _locked(folder, lock_timeout):
        if findings.unrecorded_rows:
            done.append(_record_vector_sums(folder, findings))
        if findings.bad_layouts:
            done.append(_drop_layouts(folder, findings))
        for path in findings.bad_graphs + findings.leftovers:
            with contextlib.suppress(FileNotFoundError):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                done.append(f"deleted {path.name}")
    # Opening catches the graph up from the vectors (from the newest sound checkpoint, or from
    # nothing); flush saves it as a new checkpoint. The encoder is named, never loaded.
    name = Manifest.read(folder).model.name
    index = EmbeddedIndex(folder, model=ColBERTModel(name), create=False,
                          lock_timeout=lock_timeout)
    try:
        index.flush()
        if findings.bad_graphs:
            items = index.stats()["graph_items"]
            done.append(f"rebuilt the graph from the stored vectors ({items:,} items)")
    finally:
        index.close()
    return done
