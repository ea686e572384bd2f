"""The embedded index: one folder on disk, HNSW candidates, exact MaxSim.

Folder layout (all formats documented in ``docs/index-format.md``; none is pickle)::

    manifest.json            what the folder is, which model built it (never changes)
    documents.sqlite         ids, texts, metadata, vector locations, committed state (WAL)
    vectors-<gen>.u8         every token vector as 8-bit codes (the int8 codec, the default)
    vectors-<gen>.json       the int8 codec's parameters for that generation
    vectors-<gen>.f16        every token vector as float16 (the float16 codec, instead)
    graph-<gen>-<rows>.voy   Voyager HNSW checkpoint over the first <rows> token vectors
    means-<gen>-<rows>.npz   each document's mean token vector, saved with the checkpoint
    write.lock               held by the process that is writing

Search: the query's token vectors look up their nearest document token vectors in the graph;
the documents those belong to are pre-ranked by the similarities found (and, for query tokens
that found nothing in a document, a guess from the document's mean vector), and the best
``max_candidates`` of them are scored with exact MaxSim over all their stored vectors. When the
collection (or the part a filter leaves) holds at most ``exact_threshold`` documents, every one
of them is scored exactly instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._aio import run_off_loop
from .._files import file_digest, refuse_links
from .._version import __version__
from ..errors import (
    IndexClosedError,
    IndexCorruptError,
    IndexLockedError,
    IndexMismatchError,
    IndexNotFoundError,
    InvalidInputError,
)
from ..filters import Condition
from ..models import ColBERTModel
from ..passages import (
    DEFAULT_LONG_DOCUMENTS,
    LongDocuments,
    Passage,
    layout_problem,
    long_documents_setting,
)
from ..scoring import has_coarse_kernel, maxsim_ranges, rows_of, token_similarities
from ..search import Candidates, Pool, run_search
from ..search.stage import hits_wanted, top_positions, values_at
from . import layout
from .base import MODES, BaseIndex, SearchRequest
from .docstore import DocStore, NewDocument
from .graph import TokenGraph, checkpoints, graph_file_name, probe_unrecorded
from .lexical import LexicalIndex
from .manifest import GraphParams, Manifest, ModelInfo, looks_empty
from .means import load_latest, mean_vectors, means_file_name, means_from_rows, save_means
from .vectors import NEW_INDEX_CODEC, TokenStore, codec_names, store_class, store_for_generation

logger = logging.getLogger(__name__)

_MAX_TOKEN_K = 4096
_RETRAIN_CLIPPED_SHARE = 0.001
"""An add whose values the int8 parameters would clip more often than this retrains them
first (measured: docs/compression.md, "Updates")."""
# The share of a query token's similarity to a document's mean vector that the pre-ranking
# counts when the graph found none of that document's items for the token (see first_stage).
_MEAN_GUESS = 0.5
# One search at a time in this process. A search's graph query and kernels each use every core,
# so searches run at once (async calls, a thread pool) contend instead of adding throughput: on
# 2 cores, 32 concurrent searches had 0.72x the throughput of the same 32 one after another
# without this lock, 0.96x with it (docs/benchmarks.md, "Against the targets": "Async throughput").
_SEARCHING = threading.Lock()


def _no_index_message(path: Path) -> str:
    return (f"no colbridge index at {path}: check the path (nothing was created; adding "
            "documents creates the index there)")


@dataclass(frozen=True)
class SearchOptions:
    """Candidate-breadth knobs of the embedded index's search.

    Attributes:
        token_k: graph neighbours fetched per query token; None (the default): by collection
            size, see below.
        ef: HNSW search breadth (Voyager's ``query_ef``); at least ``token_k`` is used; None
            (the default): by collection size.
        max_candidates: documents scored with exact MaxSim after the graph stage; None (the
            default): by collection size.
        exact_threshold: when at most this many documents (after filtering) are searched,
            all of them are scored exactly and the graph is skipped.
        rescore: with the ``int8`` codec, the candidates are first scored by a coarse integer
            kernel (the query rounded to 8 bits), and the best of them, as many as the hits
            wanted plus this many, are scored again exactly: the hits keep their exact
            scores. 0: every candidate is scored exactly. No effect with ``float16``.

    A breadth left unset grows with the number of documents in the index: up to
    ``BREADTH_BASE_DOCUMENTS`` documents it is the base (192 neighbours per query token, ef
    192, 768 candidates), the breadth chosen on all of SciFact; beyond, each is multiplied by
    ``(documents / BREADTH_BASE_DOCUMENTS) ** BREADTH_GROWTH`` (``token_k`` and ``ef`` at most
    4,096), because each query token's nearest graph items spread over more documents as the
    collection grows (10,000 documents and a power of three quarters, as shipped: 50,000
    documents search with ``token_k`` 642 and 2,568 candidates, 200,000 with 1,816 and 7,263).
    A value given here or to a search is used as given, at any size;
    :meth:`EmbeddedIndex.stats` shows the values a search uses now.
    docs/benchmarks.md ("At scale") has the measurements behind the rule: where agreement with
    exact MaxSim is lost as collections grow, and what the rule buys at what speed.
    """

    token_k: int | None = None
    ef: int | None = None
    max_candidates: int | None = None
    exact_threshold: int = 512
    rescore: int = 32

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in _BASE_BREADTH:
                continue
            minimum = 0 if f.name in ("exact_threshold", "rescore") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                unset = " (or None: by collection size)" if f.name in _BASE_BREADTH else ""
                raise InvalidInputError(
                    f"search option {f.name} must be an integer >= {minimum}{unset}, "
                    f"got {value!r}")

    def _resolved(self, documents: int) -> SearchOptions:
        """These options for an index of ``documents`` documents: every breadth left unset
        (None) given its value by the collection-size rule above; given values unchanged."""
        scale = max(1.0, documents / BREADTH_BASE_DOCUMENTS) ** BREADTH_GROWTH
        chosen = {}
        for name, base in _BASE_BREADTH.items():
            if getattr(self, name) is None:
                value = round(base * scale)
                chosen[name] = min(value, _MAX_TOKEN_K) if name != "max_candidates" else value
        return replace(self, **chosen) if chosen else self


BREADTH_BASE_DOCUMENTS = 10_000
"""Collections of up to this many documents search with the base breadth (see
:class:`SearchOptions`); larger ones more broadly, when the breadth is left unset."""
BREADTH_GROWTH = 0.75
"""How an unset breadth grows beyond ``BREADTH_BASE_DOCUMENTS``: as this power of the ratio
of documents (docs/benchmarks.md, "At scale")."""
_BASE_BREADTH = {"token_k": 192, "ef": 192, "max_candidates": 768}


@dataclass(frozen=True)
class _Snapshot:
    """What one search reads; replaced whole (never mutated) by writes."""

    vectors: Any  # (rows, dim) the token store's view (for float16, its memory map)
    rows: int  # vector rows this snapshot covers, those of deleted documents included
    starts: np.ndarray  # (max doc_no + 1,) first row of each document
    counts: np.ndarray  # (max doc_no + 1,) rows of each document, 0 when absent
    live: np.ndarray  # sorted doc_nos present
    means: np.ndarray  # (>= max doc_no + 1, dim) float16 normalised mean token vector by doc_no
    # The row -> document map, per document rather than per row: the live documents' first
    # rows in ascending order, and their doc_nos (``live`` itself while rows ascend with doc_no,
    # as appends and compaction keep them).
    unit_starts: np.ndarray
    unit_nos: np.ndarray
    passages: Mapping[int, tuple[Passage, ...]] = field(default_factory=dict)  # split doc_nos
    passage_rows: _PassageRows | None = None  # the same layouts as arrays (None: no split docs)

    @property
    def dead_rows(self) -> int:
        return int(self.rows - self.counts.sum())

    def doc_nos_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """The doc_no holding each vector row (graph item ids are rows), -1 for a row of a
        deleted document or one past this snapshot."""
        if not len(self.unit_starts):
            return np.full(np.shape(rows), -1, np.int64)
        at = np.maximum(np.searchsorted(self.unit_starts, rows, side="right") - 1, 0)
        nos = self.unit_nos[at]
        inside = (rows >= self.unit_starts[at]) & (rows < self.unit_starts[at] + self.counts[nos])
        return np.where(inside, nos, -1)


@dataclass(frozen=True)
class _PassageRows:
    """Where the passages of the split documents lie among their rows, as arrays, so that the
    exact stage expands documents into passages without a Python loop per document.

    Document ``n``'s passages are entries ``first[n] : first[n] + count[n]`` of ``offsets`` (a
    passage's first row within its document) and ``rows`` (its number of rows); ``count[n]`` is
    0 for a document stored whole or deleted. Writes append entries, never change them: the
    entries of deleted documents stay until the next snapshot built from the store.
    """

    first: np.ndarray  # (max doc_no + 1,) int64
    count: np.ndarray  # (max doc_no + 1,) int64
    offsets: np.ndarray  # (entries,) int64
    rows: np.ndarray  # (entries,) int64

    @staticmethod
    def of(layouts: Mapping[int, tuple[Passage, ...]], size: int,
           base: _PassageRows | None = None, removed: np.ndarray | None = None
           ) -> _PassageRows | None:
        """``base`` (or an empty table) grown to ``size`` documents, without ``removed``, with
        ``layouts`` (doc_no -> its passages) appended; None when no document is split."""
        first = np.zeros(size, np.int64)
        count = np.zeros(size, np.int64)
        offsets: list[np.ndarray] = []
        rows: list[np.ndarray] = []
        entries = 0
        if base is not None:
            first[: len(base.first)] = base.first
            count[: len(base.count)] = base.count
            offsets.append(base.offsets)
            rows.append(base.rows)
            entries = len(base.rows)
        if removed is not None and len(removed):
            count[removed] = 0
        for n, parts in layouts.items():
            sizes = np.fromiter((p.rows for p in parts), np.int64, len(parts))
            first[n], count[n] = entries, len(parts)
            offsets.append(np.cumsum(sizes) - sizes)
            rows.append(sizes)
            entries += len(parts)
        if not count.any():
            return None
        return _PassageRows(first, count, np.concatenate(offsets), np.concatenate(rows))


def _units_by_row(live: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(unit_starts, unit_nos)`` of a snapshot (see :class:`_Snapshot`)."""
    first = starts[live]
    if len(first) > 1 and not bool((np.diff(first) > 0).all()):
        order = np.argsort(first, kind="stable")
        return first[order], live[order]
    return first, live


class EmbeddedIndex(BaseIndex):
    """A ColBERT index in one folder: SQLite documents, 8-bit token codes, a Voyager graph.

    Args:
        path: the index folder. Opened if it holds an index. If it is missing or empty, the
            first ``add``/``add_encoded`` creates the index there; until then every other
            call raises :class:`~colbridge.IndexNotFoundError` and creates nothing.
        model: a :class:`ColBERTModel`, a model name, or None for the model that built the
            index (or ``COLBRIDGE_MODEL``/the default when creating).
        create: allow the first write to create the index (default True); with False a
            missing or empty folder raises :class:`~colbridge.IndexNotFoundError` at once.
        graph: how to build the HNSW graph (only used when creating).
        search_options: default candidate-breadth knobs; each search may override them.
        lock_timeout: seconds a write waits for another writer before
            :class:`~colbridge.IndexLockedError`.
        compact_threshold: share of dead vector rows (from deletes and upserts) above which a
            write compacts the index.
        checkpoint_rows: new rows after which the graph is saved (it is also saved on close).
        codec: how a new index stores its token vectors: ``"int8"`` (the default: one byte per
            dimension, scored without decoding) or ``"float16"`` (exact, twice the bytes); see
            ``docs/compression.md``. An existing index keeps its codec (None, or the same name);
            :meth:`compact` converts it.
        long_documents: what ``add`` does with a text longer than the model's document
            length: ``"split"`` into passages (the default for a new index), ``"truncate"``
            or ``"error"`` (see :mod:`colbridge.passages`). Recorded when the index is
            created; an existing index keeps its own (an index from before passages
            truncates), and naming another raises :class:`~colbridge.IndexMismatchError`.

    Every read (``search``, ``count``, ``get``, ``stats``) answers from the newest committed
    state, including writes of other processes (see ``docs/concepts.md``).

    Example:
        >>> index = EmbeddedIndex("my-index", model="offline-minilm")  # doctest: +SKIP
        >>> index.add(["ColBERT scores with MaxSim."], ids=["a"])       # doctest: +SKIP
        >>> index.search("what is MaxSim?", k=1)[0].id                   # doctest: +SKIP
        'a'
    """

    search_option_names = tuple(f.name for f in fields(SearchOptions))
    search_modes = MODES

    def __init__(
        self,
        path: str | os.PathLike[str],
        model: ColBERTModel | str | None = None,
        *,
        create: bool = True,
        graph: GraphParams | None = None,
        search_options: SearchOptions | None = None,
        lock_timeout: float = 10.0,
        compact_threshold: float = 0.3,
        checkpoint_rows: int = 50_000,
        codec: str | None = None,
        long_documents: LongDocuments | str | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self._asked_long_documents = (None if long_documents is None
                                      else long_documents_setting(long_documents))
        if self.path.exists() and not self.path.is_dir():
            raise IndexCorruptError(f"{self.path} is a file, not an index folder")
        refuse_links(self.path)
        if isinstance(model, (str, os.PathLike)):
            model = ColBERTModel(model)
        self.options = search_options or SearchOptions()
        if not 0 < compact_threshold <= 1:
            raise InvalidInputError("compact_threshold must be in (0, 1]")
        self._compact_threshold = compact_threshold
        self._checkpoint_every = checkpoint_rows
        self._lock_timeout = lock_timeout
        self._write_lock = threading.RLock()
        self._closed = False
        self._means_unsaved = False
        self._probed: dict[str, tuple[int, str]] = {}  # unrecorded checkpoints that passed
        self._requested_model = model
        self._codec = _checked_codec(codec)
        self.manifest: Manifest | None = None  # type: ignore[assignment]
        # Until an index exists here, nothing is created: the first add creates it, and any
        # other call raises IndexNotFoundError, so a mistyped path leaves no empty index behind.
        self._pending: GraphParams | None = None
        if not (self.path / layout.MANIFEST).exists():
            self._check_creatable()
            if not create:
                raise IndexNotFoundError(_no_index_message(self.path))
            self.model = model or ColBERTModel()
            self._pending = graph or GraphParams()
            self.long_documents = self._asked_long_documents or DEFAULT_LONG_DOCUMENTS
            return
        self._open(model)
        self._check_codec()

    @classmethod
    def open_or_create(
        cls, path: str | os.PathLike[str], model: ColBERTModel | str | None = None, **options: Any
    ) -> EmbeddedIndex:
        """Open the index at ``path``, or create an empty one there now (a missing or empty
        folder), so that reads succeed before the first add. ``options`` as for the
        constructor (``create`` excepted)."""
        index = cls(path, model, create=True, **options)
        try:
            index._create_if_pending()
        except BaseException:
            index.close()
            raise
        return index

    @property
    def dimension(self) -> int:  # type: ignore[override]
        """Size of the stored token vectors."""
        return self.manifest.model.dimension if self.manifest else self.model.dimension

    # -- creation and loading -----------------------------------------------------------------
    def _check_creatable(self) -> None:
        if not looks_empty(self.path):
            raise IndexCorruptError(
                f"{self.path} is not a colbridge index (it has files but no manifest.json); "
                "refusing to write into it"
            )

    def _open(self, model: ColBERTModel | None) -> None:
        """Open the index the folder holds (its manifest exists)."""
        from filelock import FileLock

        self.manifest = Manifest.read(self.path)
        info = self.manifest.model
        if model is None:
            model = ColBERTModel(
                info.name, query_length=info.query_length, document_length=info.document_length,
                backend="onnx-int8" if info.precision == "int8" else None,
            )
        elif model.name != info.name:
            raise IndexMismatchError(
                f"{self.path} was built with the model {info.name!r}, not {model.name!r}: open it "
                f"with that model (or leave the model out), or build a new index for this one"
            )
        if model.precision != info.precision:  # COLBRIDGE_BACKEND may ask for the other family
            raise IndexMismatchError(
                f"{self.path} holds {info.precision} vectors of {info.name!r} and this encoder "
                f"makes {model.precision} ones: open it with ColBERTModel({info.name!r}, backend="
                f"{'onnx-int8' if info.precision == 'int8' else 'onnx'!r}) (or leave the model out)"
            )
        self.model = model
        recorded = LongDocuments(self.manifest.long_documents)
        if self._asked_long_documents not in (None, recorded):
            raise IndexMismatchError(
                f"{self.path} was built with long_documents={recorded.value!r}, not "
                f"{self._asked_long_documents.value!r}: leave the setting out, or build a new "
                "index (colbridge migrate copies one)")
        self.long_documents = recorded
        self._file_lock = FileLock(self.path / layout.LOCK, thread_local=False)
        self._store = DocStore(self.path)
        self._lexical = LexicalIndex(self.path, self._store.texts_by_doc_nos)
        self._reload()

    def _check_codec(self) -> None:
        if self._codec is not None and self._codec != self.manifest.codec:
            raise InvalidInputError(
                f"{self.path} stores its token vectors as {self.manifest.codec}, not "
                f"{self._codec}: open it without codec=, or convert it with "
                f"compact(codec={self._codec!r}) (colbridge compact --codec {self._codec})"
            )

    def _require_index(self) -> None:
        """Raise unless an index exists here; open one another handle created since."""
        self._settle_pending(create=False)

    def _create_if_pending(self) -> None:
        """The first write creates the index (unless another handle did meanwhile)."""
        self._settle_pending(create=True)

    def _settle_pending(self, *, create: bool) -> None:
        self._check_open()
        if self._pending is None:
            return
        with self._write_lock:
            if self._pending is None:
                return
            if (self.path / layout.MANIFEST).exists():  # created by another handle meanwhile
                self._open(self._requested_model)
                self._check_codec()
            elif not create:
                raise IndexNotFoundError(_no_index_message(self.path))
            else:
                self._check_creatable()
                self._create(self.model, self._pending)
                self._open(self.model)
            self._pending = None

    def _create(self, model: ColBERTModel, params: GraphParams) -> None:
        manifest = Manifest(
            model=ModelInfo(model.name, model.dimension, model.query_length, model.document_length,
                            getattr(model, "precision", "float32")),
            graph=params,
            created_by=f"colbridge {__version__}",
            codec=self._codec or NEW_INDEX_CODEC,
            long_documents=self.long_documents.value,
        )
        if self.path.exists():  # an empty folder the caller made: build in place, manifest last
            DocStore(self.path, create=True).close()
            manifest.write(self.path)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.creating-", dir=self.path.parent))
        try:
            DocStore(scratch, create=True).close()
            manifest.write(scratch)
            try:
                os.rename(scratch, self.path)
            except OSError:
                if not (self.path / layout.MANIFEST).exists():  # lost a race to another creator?
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _reload(self) -> None:
        """Read the committed state from disk; keep the in-memory graph when it is still valid.

        Another process may compact between our reading the state and opening its files (and
        delete the files we were about to open): then the state has moved on, and we read again.
        """
        for attempt in range(5):
            try:
                self._load_state()
                return
            except IndexCorruptError:
                if attempt == 4 or self._store.changes() == getattr(self, "_changes_seen", None):
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _load_state(self) -> None:
        state, table = self._store.ranges()
        self._changes_seen = state.changes
        if state.generation != getattr(self, "_generation_seen", state.generation):
            self.manifest = Manifest.read(self.path)  # a compaction may have changed the codec
        self._generation_seen = state.generation
        # The generation's own file says how it is stored: a conversion writes the manifest's
        # new codec before the generation it applies to (see compact).
        self._store_class: type[TokenStore] = store_for_generation(
            self.path, self.manifest.codec, state.generation, self.dimension)
        vectors = self._store_class(self.path, state.generation, self.dimension, state.vector_rows)
        self._vectors = vectors
        self._changes = state.changes
        self._snap, computed = _build_snapshot(vectors.view(), table, self._known_means(),
                                               self._store.passages())
        if computed:
            logger.info("%s: computed %d document means from the vectors", self.path, computed)
            self._means_unsaved = True
        graph = getattr(self, "_graph", None)
        if graph is None or self._graph_generation != state.generation or graph.rows > state.vector_rows:
            checkpoint = self._recorded_checkpoint(state.generation, state.vector_rows)
            if checkpoint is None:
                graph = TokenGraph(self.dimension, self.manifest.graph)
                self._saved_rows = 0
            else:
                graph = TokenGraph.load(checkpoint[0], self.dimension, self.manifest.graph,
                                        checkpoint[1], checkpoint[2])
                self._saved_rows = checkpoint[1]
            self._graph = graph
            self._graph_generation = state.generation
        self._catch_up_graph()

    def _recorded_checkpoint(self, generation: int, rows: int
                             ) -> tuple[Path, int, tuple[int, str]] | None:
        """The newest graph checkpoint with a recorded checksum, with its rows and checksum.
        One without a record (an older colbridge's, or a save interrupted before its record)
        is used only if a child process could load and search it (its checksum is recorded at
        the next flush or close); otherwise it is passed over and its rows are re-added from
        the vectors."""
        for path, covered in checkpoints(self.path, generation, rows):
            recorded = self._store.checksum(path.name)
            if recorded is not None:
                return path, covered, recorded
            probed = probe_unrecorded(path, self.dimension)
            if probed is not None:
                logger.info("%s has no checksum recorded; a child process loaded and searched "
                            "it, so it is used", path.name)
                self._probed[path.name] = probed
                return path, covered, probed
            logger.info("%s has no checksum recorded and failed its probe; not loaded", path.name)
        return None

    def _record_probed(self) -> None:
        """Record the checksums of unrecorded checkpoints that passed their probe (while
        holding the write lock, as every record is written)."""
        present = {name: digest for name, digest in self._probed.items()
                   if (self.path / name).exists()}
        if present:
            self._store.record_checksums(present)
        self._probed.clear()

    def _record_checksums(self, *names: str) -> None:
        self._store.record_checksums({name: file_digest(self.path / name) for name in names})

    def _known_means(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(doc_nos, means)`` known without reading vectors: this process's last snapshot,
        else the saved file (means by document number stay valid, see ``means.py``)."""
        snap = getattr(self, "_snap", None)
        if snap is not None:
            return snap.live, snap.means[snap.live]
        return load_latest(self.path, self.dimension, self._store.checksum)

    def _catch_up_graph(self) -> None:
        """Add rows the graph has not seen (written after its checkpoint, or by another process)."""
        graph, snap = self._graph, self._snap
        if graph.rows < snap.rows:
            uncovered = snap.live[snap.starts[snap.live] >= graph.rows]
            graph.add_documents(snap.vectors, snap.starts[uncovered], snap.counts[uncovered],
                                covered_rows=snap.rows)

    def refresh(self) -> bool:
        """Catch up with writes made by other processes since this one last looked; True if
        there were any. Every read does this first on its own; calling it moves the catch-up
        cost out of the next read."""
        self._require_index()
        with self._write_lock:
            if self._store.changes() == self._changes:
                return False
            self._reload()
            return True

    async def arefresh(self) -> bool:
        """Async :meth:`refresh`."""
        return await run_off_loop(self.refresh)

    # -- writing ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        from filelock import Timeout

        self._require_index()
        with self._write_lock:
            try:
                self._file_lock.acquire(timeout=self._lock_timeout)
            except Timeout:
                raise IndexLockedError(
                    f"{self.path} is locked by another writer (waited {self._lock_timeout:g} s); "
                    "retry later or raise lock_timeout"
                ) from None
            try:
                refuse_links(self.path)
                if self._store.changes() != self._changes:
                    self._reload()
                yield
            finally:
                self._file_lock.release()

    def _upsert(
        self, ids: list[str], texts: list[str], metadata_json: list[str],
        embeddings: list[np.ndarray], passages: list[tuple[Passage, ...] | None] | None = None,
    ) -> None:
        counts = [len(e) for e in embeddings]
        layouts = passages or [None] * len(ids)
        self._create_if_pending()
        with self._writing():
            clipped = self._vectors.clipped_values(embeddings)
            if clipped > _RETRAIN_CLIPPED_SHARE * sum(counts) * self.dimension:
                logger.info("%s: the codec's range would clip %d values of this write; "
                            "retraining it first (a compaction)", self.path, clipped)
                self._compact_locked(retrain_with=np.concatenate(embeddings))
            elif clipped:
                logger.info("%s: %d values clipped to the codec's range", self.path, clipped)
            replaced = self._store.doc_nos_for_ids(ids)
            first, digest = self._vectors.append(embeddings)
            starts = first + np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
            rows = first + sum(counts)
            new_nos = self._store.commit_write(
                delete_doc_nos=list(replaced.values()),
                insert=[
                    NewDocument(i, t, m, int(s), c, p)
                    for i, t, m, s, c, p in zip(ids, texts, metadata_json, starts, counts, layouts,
                                                strict=True)
                ],
                vector_rows=rows, vector_sum=(first, rows - first, digest),
            )
            self._changes += 1
            self._vectors.expose(rows)
            self._graph.add_documents(np.concatenate(embeddings), starts - first,
                                      np.array(counts, np.int64), covered_rows=rows, id_offset=first)
            self._snap = _apply_write(
                self._snap, self._vectors.view(),
                removed=np.fromiter(replaced.values(), np.int64, len(replaced)),
                added=np.array(new_nos, np.int64), starts=starts, counts=np.array(counts, np.int64),
                means=mean_vectors(embeddings, self.dimension),
                passages={n: p for n, p in zip(new_nos, layouts, strict=True) if p},
            )
            self._after_write()

    def _delete(self, ids: list[str], missing_ok: bool) -> int:
        from ..errors import DocumentNotFoundError

        with self._writing():
            found = self._store.doc_nos_for_ids(ids)
            missing = [i for i in ids if i not in found]
            if missing and not missing_ok:
                raise DocumentNotFoundError(missing)
            if not found:
                return 0
            self._store.commit_write(
                delete_doc_nos=list(found.values()), insert=[], vector_rows=self._vectors.rows
            )
            self._changes += 1
            self._snap = _apply_write(
                self._snap, self._vectors.view(),
                removed=np.fromiter(found.values(), np.int64, len(found)),
                added=np.zeros(0, np.int64), starts=np.zeros(0, np.int64),
                counts=np.zeros(0, np.int64), means=np.zeros((0, self.dimension), np.float16),
            )
            self._after_write()
            return len(found)

    def _after_write(self) -> None:
        rows = self._snap.rows
        if rows and self._snap.dead_rows / rows > self._compact_threshold:
            self._compact_locked()
        elif self._graph.rows - self._saved_rows >= max(self._checkpoint_every, self._saved_rows // 4):
            self._checkpoint()

    def _checkpoint(self) -> None:
        self._graph.save(self.path, self._graph_generation)
        self._record_checksums(graph_file_name(self._graph_generation, self._graph.rows))
        self._save_means(self._graph_generation, self._graph.rows)
        self._saved_rows = self._graph.rows
        self._remove_stale_files()

    def _checkpoint_if_behind(self) -> None:
        self._record_probed()
        if self._graph.rows > self._saved_rows and len(self._graph):
            self._checkpoint()
        elif self._means_unsaved and self._saved_rows:
            self._save_means(self._graph_generation, self._saved_rows)

    def _save_means(self, generation: int, rows: int) -> None:
        live = self._snap.live
        save_means(self.path, generation, rows, live, self._snap.means[live])
        self._record_checksums(means_file_name(generation, rows))
        self._means_unsaved = False

    def flush(self) -> None:
        """Save the graph (and the document means) now if rows were added since its last
        checkpoint; close() does too.

        Documents are durable as soon as ``add`` returns; the checkpoint only saves the work of
        re-adding their vectors to the graph when the index is next opened.
        """
        with self._writing():
            self._checkpoint_if_behind()
            self._lexical.checkpoint(self._snap.live)

    def backup(self, destination: str | os.PathLike[str]) -> Path:
        """Copy the index, as of one committed state, into the new folder ``destination``.

        Safe while the index is in use: readers go on, writers (in any process) wait for the
        copy. SQLite's online backup copies the documents; the vectors, graph, means and
        lexical segment are copied as committed. Returns the destination, which opens like
        the original (see ``docs/reliability.md``).
        """
        from ..backup import backup_index

        return backup_index(self, destination)

    async def abackup(self, destination: str | os.PathLike[str]) -> Path:
        """Async :meth:`backup`."""
        return await run_off_loop(self.backup, destination)

    def compact(self, *, codec: str | None = None, retrain: bool = False) -> None:
        """Rewrite the vectors and the graph without deleted documents' rows (no re-encoding
        of texts).

        Args:
            codec: store the token vectors with this codec from now on (``"int8"`` or
                ``"float16"``): converts the index, for instance a float16 folder of an older
                colbridge to int8. Converting to int8 and back is lossy (8 bits per value).
            retrain: fit the int8 codec's range again to the stored vectors (an add whose
                values fall outside it does this on its own, see ``docs/compression.md``).
        """
        target = _checked_codec(codec)
        with self._writing():
            if target is not None and target != self.manifest.codec:
                # Before the generation it applies to: a crash in between leaves the manifest
                # naming the new codec and the old generation current, read by its own file's
                # codec, and the next compaction converts it.
                self.manifest = replace(self.manifest, codec=target).write(self.path)
            self._compact_locked(retrain=retrain)

    async def acompact(self, *, codec: str | None = None, retrain: bool = False) -> None:
        """Async :meth:`compact`."""
        await run_off_loop(lambda: self.compact(codec=codec, retrain=retrain))

    def _compact_locked(self, *, retrain: bool = False,
                        retrain_with: np.ndarray | None = None) -> None:
        self._remove_stale_files()  # orphans of an interrupted compaction must not be reused
        snap = self._snap
        generation = self._vectors.generation + 1
        counts = snap.counts[snap.live]
        new_starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        target = store_class(self.manifest.codec)
        if target is type(self._vectors) and not retrain and retrain_with is None:
            rows, sums = self._vectors.write_generation(generation, snap.starts[snap.live], counts)
        else:
            rows, sums = self._rewrite_vectors(target, generation, snap.starts[snap.live], counts,
                                               retrain_with)
        graph = TokenGraph(self.dimension, self.manifest.graph)
        if rows:
            written = target(self.path, generation, self.dimension, rows)
            graph.add_documents(written.view(), new_starts, counts, covered_rows=rows)
            del written  # its memory map: the reload below opens the generation again
        graph.rows = rows
        graph.save(self.path, generation)
        self._record_checksums(graph_file_name(generation, rows))
        self._save_means(generation, rows)
        self._store.commit_compaction(
            new_starts=list(zip(snap.live.tolist(), new_starts.tolist())),
            generation=generation, vector_rows=rows, vector_sums=sums,
        )
        self._graph, self._graph_generation, self._saved_rows = graph, generation, rows
        self._reload()
        self._remove_stale_files()
        self._lexical.checkpoint(self._snap.live, rebuild_if_dead=True)
        logger.info("compacted %s: %d dead rows dropped", self.path, snap.dead_rows)

    def _rewrite_vectors(self, target: type[TokenStore], generation: int, starts: np.ndarray,
                         counts: np.ndarray, extra: np.ndarray | None
                         ) -> tuple[int, list[tuple[int, int, str]]]:
        """Write the live rows, decoded, as ``generation`` of the codec ``target`` (trained on
        an even sample of them plus ``extra``, rows about to be added)."""
        from .vectors_int8 import TRAIN_ROWS

        view = self._vectors.view()
        rows = rows_of(starts, counts)
        picked = rows[np.linspace(0, len(rows) - 1, min(len(rows), TRAIN_ROWS)).astype(np.int64)
                      ] if len(rows) else rows
        sample = np.asarray(view[picked], dtype=np.float32)
        if extra is not None:
            sample = np.concatenate([sample, np.asarray(extra, dtype=np.float32)])
        step = 2048
        chunks = (np.asarray(view[rows_of(starts[b:b + step], counts[b:b + step])], np.float32)
                  for b in range(0, len(starts), step))
        return target.write_rows(self.path, generation, self.dimension, chunks, sample)

    def _remove_stale_files(self) -> None:
        """Delete superseded vector files and checkpoints (only while holding the write lock)."""
        keep = {*self._vectors.file_names(),
                graph_file_name(self._graph_generation, self._saved_rows),
                means_file_name(self._graph_generation, self._saved_rows)}
        self._store.record_checksums({}, keep=keep)
        for path in layout.stale_files(self.path, self._vectors.generation, keep):
            with contextlib.suppress(OSError):  # a folder (an interrupted lexical save) stays
                os.remove(path)

    # -- reading ----------------------------------------------------------------------------
    def _check_search(self, *args: Any, **kwargs: Any) -> tuple[int, list[Condition], SearchRequest]:
        checked = super()._check_search(*args, **kwargs)
        self._require_index()  # before the query is encoded, which may load the model
        return checked

    def _fresh_snapshot(self) -> _Snapshot:
        """The snapshot a read uses, first brought up to date if another process (or another
        handle on this folder) has committed since this one last looked: one read of the
        store's ``changes`` counter per call."""
        self._require_index()
        if self._store.changes() != self._changes:
            with self._write_lock:
                if self._store.changes() != self._changes:
                    self._reload()
        return self._snap

    def _count(self) -> int:
        return len(self._fresh_snapshot().live)

    def _get(self, ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        self._require_index()  # the store is always current: no snapshot needed
        return self._store.fetch_by_ids(ids)

    def _get_with_vectors(
        self, ids: list[str]
    ) -> dict[str, tuple[str, dict[str, Any], np.ndarray]]:
        for _ in range(3):  # a write of another process may land between the two reads
            snap = self._fresh_snapshot()
            numbers = self._store.doc_nos_for_ids(ids)
            if all(n < len(snap.counts) and snap.counts[n] for n in numbers.values()):
                break
        else:  # writers keep landing: read with theirs held off
            with self._writing():
                snap, numbers = self._snap, self._store.doc_nos_for_ids(ids)
        found = _documents_at(self._store, snap, np.fromiter(numbers.values(), np.int64))
        return {doc_id: (text, metadata, vectors) for doc_id, text, metadata, vectors in found}

    def _passages(self, ids: list[str]) -> dict[str, tuple[Passage, ...]]:
        self._require_index()
        numbers = self._store.doc_nos_for_ids(ids)
        layouts = self._store.passages(numbers.values())
        return {doc_id: layouts[n] for doc_id, n in numbers.items() if n in layouts}

    def _ids(self, conditions: list[Condition]) -> list[str]:
        self._require_index()
        return self._store.ids_matching(conditions)

    def _delete_matching(self, conditions: list[Condition]) -> int:
        with self._writing():  # no write slips in between listing the matches and deleting them
            ids = self._store.ids_matching(conditions)
            return self._delete(ids, True) if ids else 0

    def _export(
        self, batch_size: int
    ) -> Iterator[list[tuple[str, str, dict[str, Any], np.ndarray]]]:
        # Document numbers only grow, so walking them upwards from a fresh snapshot per batch
        # reaches every document written meanwhile too, and never one twice.
        last = -1
        while True:
            snap = self._fresh_snapshot()
            batch = snap.live[np.searchsorted(snap.live, last, side="right"):][:batch_size]
            if not len(batch):
                return
            yield _documents_at(self._store, snap, batch)
            last = int(batch[-1])

    def _search(
        self, embedding: np.ndarray | None, k: int, conditions: list[Condition],
        options: dict[str, Any], mode: SearchRequest,
    ) -> list[tuple[str, float, str, dict[str, Any], tuple[int, int] | None]]:
        snap = self._fresh_snapshot()
        opts = self._search_options(options, len(snap.live))
        view = _SnapshotSearch(self, snap, opts, hits_wanted(k, mode.name))
        with _SEARCHING:
            found = run_search(view, embedding, k, conditions, mode.name, mode.text,
                               mode.hybrid_weight, budget=opts.max_candidates,
                               exact_threshold=opts.exact_threshold)
        if view.filtered_out_all:
            self._warn_of_absent_fields(conditions)
        return found

    def _search_options(self, options: dict[str, Any], documents: int) -> SearchOptions:
        """The options one search runs with: the index's, overridden by the call's, with any
        breadth left unset resolved for ``documents`` (see :class:`SearchOptions`)."""
        opts = replace(self.options, **options) if options else self.options
        return opts._resolved(documents)

    def _warn_of_absent_fields(self, conditions: list[Condition]) -> None:
        """Say which fields of a filter that matched nothing no document has (a typo, often).
        Only fields a match needs count: ``$ne``/``$nin`` of a value hold where a field is
        missing."""
        needed = dict.fromkeys(c.field for c in conditions
                               if c.op not in ("$ne", "$nin") or c.value is None)
        absent = self._store.absent_fields(needed)
        if absent:
            names = ", ".join(repr(n) for n in absent)
            warnings.warn(
                f"no document has the metadata field{'s' if len(absent) > 1 else ''} {names}, "
                f"so the filter matches nothing (a misspelt field name?)",
                UserWarning, stacklevel=5,
            )

    # -- introspection ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Sizes and settings, as shown by ``colbridge info``."""
        snap = self._fresh_snapshot()
        files = {}
        for entry in os.scandir(self.path):
            if entry.is_file():
                files[entry.name] = entry.stat().st_size
            elif entry.is_dir() and entry.name.startswith("lexical-"):
                for inner in os.scandir(entry.path):
                    files[f"{entry.name}/{inner.name}"] = inner.stat().st_size
        live_rows = int(snap.counts.sum())
        resolved = self._search_options({}, len(snap.live))
        return {
            "path": str(self.path),
            "documents": len(snap.live),
            "token_vectors": live_rows,
            "dead_token_vectors": snap.dead_rows,
            "graph_items": len(self._graph),
            "model": self.manifest.model.name,
            "dimension": self.dimension,
            "query_length": self.manifest.model.query_length,
            "document_length": self.manifest.model.document_length,
            "long_documents": self.long_documents.value,
            "split_documents": len(snap.passages),
            "graph": {"M": self.manifest.graph.M, "ef_construction": self.manifest.graph.ef_construction,
                      "storage": self.manifest.graph.storage, "pool": self.manifest.graph.pool,
                      "pooling": self.manifest.graph.pooling},
            # What a search without options of its own uses now (unset breadths resolved).
            "search_options": {f.name: getattr(resolved, f.name) for f in fields(resolved)},
            "bytes_on_disk": sum(files.values()),
            "files": files,
            "codec": self.manifest.codec,
            "format_version": self.manifest.format_version,
            "created_by": self.manifest.created_by,
        }

    def close(self) -> None:
        """Save the graph if rows were added since its last checkpoint, and close the store."""
        if self._closed:
            return
        with self._write_lock:
            if self._pending is not None:  # no index was created: nothing to save or close
                self._closed = True
                return
            try:
                with self._writing():
                    self._checkpoint_if_behind()
                    self._lexical.checkpoint(self._snap.live)
            except IndexLockedError:
                pass  # the next open catches the graph and the lexical index up
            finally:  # closed even when saving the caches failed (that error is raised)
                self._closed = True
                self._store.close()
                # Drop the graph and the memory maps now rather than at interpreter exit.
                self._graph = None  # type: ignore[assignment]
                self._snap = None  # type: ignore[assignment]
                self._vectors = None  # type: ignore[assignment]

    def _check_open(self) -> None:
        if self._closed:
            raise IndexClosedError(f"the index at {self.path} is closed")

    def __repr__(self) -> str:
        return f"EmbeddedIndex({str(self.path)!r}, model={self.model.name!r})"

    # -- copying ------------------------------------------------------------------------------
    def __copy__(self) -> EmbeddedIndex:
        """The index itself: it is a handle on its folder, which a copy would share anyway."""
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> EmbeddedIndex:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        """A pickle carries the folder, the model and the options; unpickling opens the folder
        again (it must still exist there)."""
        self._check_open()
        options = {
            "search_options": self.options,
            "lock_timeout": self._lock_timeout,
            "compact_threshold": self._compact_threshold,
            "checkpoint_rows": self._checkpoint_every,
            "codec": self._codec,
        }
        return (_reopen, (type(self), str(self.path), self.model, options))


def _checked_codec(codec: str | None) -> str | None:
    if codec is not None and (not isinstance(codec, str) or codec not in codec_names()):
        raise InvalidInputError(f"codec must be one of {', '.join(codec_names())}, got {codec!r}")
    return codec


def _reopen(
    cls: type[EmbeddedIndex], path: str, model: ColBERTModel, options: dict[str, Any]
) -> EmbeddedIndex:
    """Unpickle an index: open its folder again."""
    return cls(path, model=model, create=False, **options)


class _SnapshotSearch:
    """The search primitives (:class:`colbridge.search.SearchBackend`) of an embedded index,
    over one snapshot and one search's options; keys are document numbers."""

    def __init__(self, index: EmbeddedIndex, snap: _Snapshot, opts: SearchOptions,
                 exact_hits: int = 0) -> None:
        self._index, self._snap, self._opts = index, snap, opts
        # Candidates scored exactly after the coarse pass (None when rescore is 0: all exact).
        # Only the first stage's candidates take the coarse pass: the exact path stays exact.
        self._rescore = exact_hits + opts.rescore if opts.rescore else None
        self._candidates_from_graph = False
        self._lexical: tuple[str, np.ndarray, np.ndarray] | None = None
        # The best passage of each split document the exact stage scored for _scored_query.
        self._scored_query: np.ndarray | None = None
        self._best_passage: dict[int, int] = {}
        # The first rows of the passages the first stage hit for _hit_query (passage_scores).
        self._hit_query: np.ndarray | None = None
        self._hit_starts: np.ndarray | None = None
        self.filtered_out_all = False  # a filter left no document (the index then warns)

    def pool(self, conditions: list[Condition]) -> Pool:
        keys = self._snap.live
        if conditions:
            keys = np.intersect1d(self._index._store.matching_doc_nos(conditions), keys,
                                  assume_unique=True)
            self.filtered_out_all = len(keys) == 0
        return Pool(size=len(keys), keys=keys, filtered=bool(conditions))

    def first_stage(self, query: np.ndarray, pool: Pool, depth: int) -> Candidates | None:
        """Documents whose token vectors are among the graph's nearest to the query's, or None
        when the graph cannot supply ``depth`` of them."""
        graph, snap, opts = self._index._graph, self._snap, self._opts
        if not len(graph):
            return None
        allowed = pool.keys if pool.filtered else None
        token_k = opts.token_k
        graph_size = len(graph)
        while True:
            ids, sims = graph.query(query, token_k, opts.ef)
            if ids.shape[1] == 0:
                return None
            docs = snap.doc_nos_of_rows(ids)  # the graph may be ahead of this snapshot: -1
            valid = docs >= 0
            if allowed is not None:
                valid &= np.isin(docs, allowed)
            unique, inverse = np.unique(docs[valid], return_inverse=True)
            if len(unique) >= depth:
                break
            if token_k >= min(graph_size, _MAX_TOKEN_K):
                return None
            token_k = min(token_k * 4, graph_size, _MAX_TOKEN_K)
        if snap.passage_rows is not None:  # which passages it hit: the exact stage scores those
            self._hit_query = query
            self._hit_starts = hit_passage_starts(snap, unique, ids[valid])

        def estimate() -> np.ndarray:
            # Estimated MaxSim. A query token adds its best neighbour in the document when
            # the graph found one there; otherwise half its similarity to the document's mean
            # vector, capped by its weakest neighbour anywhere (it found none better in this
            # document). The half (_MEAN_GUESS) is measured, not derived: see "Pre-ranking
            # guesses what the graph did not find" in docs/benchmarks.md.
            token_of_hit = np.broadcast_to(np.arange(len(ids))[:, None], ids.shape)[valid]
            found = np.zeros((len(ids), len(unique)), dtype=np.float32)
            np.maximum.at(found, (token_of_hit, inverse.ravel()), np.maximum(sims[valid], 0))
            to_mean = token_similarities(query, snap.means[unique])
            guess = np.minimum(_MEAN_GUESS * np.maximum(to_mean, 0),
                               sims.min(axis=1, keepdims=True))
            return np.where(found > 0, found, guess).sum(axis=0)

        self._candidates_from_graph = True
        return Candidates(unique, estimate=estimate)

    def exact_maxsim(self, query: np.ndarray, keys: np.ndarray) -> np.ndarray:
        hit = self._hit_starts if query is self._hit_query else None
        rescore = self._rescore if self._candidates_from_graph else None
        scores, best = passage_scores(query, self._snap, keys, hit, rescore=rescore)
        if self._snap.passage_rows is not None:  # kept for best_passages: the hits are among keys
            if query is not self._scored_query:
                self._scored_query, self._best_passage = query, {}
            split = np.flatnonzero(self._snap.passage_rows.count[keys])
            self._best_passage.update(zip(keys[split].tolist(), best[split].tolist(), strict=True))
        return scores

    def _lexical_table(self, text: str, pool: Pool | None) -> tuple[np.ndarray, np.ndarray]:
        """Every allowed document's BM25 score (computed once per search)."""
        if self._lexical is None or self._lexical[0] != text:
            allowed = pool.keys if pool is not None else None
            nos, scores = self._index._lexical.scores(text, self._snap.live, allowed)
            self._lexical = (text, nos, scores)
        return self._lexical[1], self._lexical[2]

    def lexical_candidates(self, text: str, pool: Pool, depth: int
                           ) -> tuple[np.ndarray, np.ndarray]:
        nos, scores = self._lexical_table(text, pool)
        best = top_positions(scores, depth)
        return nos[best], scores[best]

    def lexical_scores(self, text: str, keys: np.ndarray) -> np.ndarray:
        nos, scores = self._lexical_table(text, None)
        return values_at(nos, scores, keys)[0]

    def documents(self, keys: list[int]) -> dict[int, tuple[str, str, dict[str, Any]]]:
        return self._index._store.fetch_by_doc_nos(keys)

    def best_passages(self, query: np.ndarray, keys: np.ndarray) -> dict[int, tuple[int, int]]:
        table = self._snap.passage_rows
        if table is None:
            return {}
        keys = np.asarray(keys, np.int64)
        split = keys[(table.count[keys] > 0) & (self._snap.counts[keys] > 0)].tolist()
        known = self._best_passage if query is self._scored_query else {}
        todo = [key for key in split if key not in known]
        if todo:  # not scored by this search's exact stage: score them now
            hit = self._hit_starts if query is self._hit_query else None
            _, best = passage_scores(query, self._snap, np.array(todo, np.int64), hit)
            known = {**known, **dict(zip(todo, best.tolist(), strict=True))}
        out = {}
        for key in split:
            passage = self._snap.passages[key][known[key]]
            out[key] = (passage.start, passage.end)
        return out


def _traced_search(index: EmbeddedIndex, query: np.ndarray, k: int = 10,
                   **options: Any) -> dict[str, Any]:
    """One unfiltered ColBERT search of the ``(tokens, dim)`` ``query``, run by the same
    pipeline as :meth:`EmbeddedIndex.search_encoded`, with what each stage kept, as document
    numbers: ``first_stage`` (the graph's candidates before the pre-ranking cut; None when the
    whole collection was scored exactly) and ``scored`` (those scored with exact MaxSim), and
    ``hits`` (the ids found, best first). For the scale benchmark's breakdown of where the
    agreement with exact MaxSim is lost (``bench_scale.py --diagnose``); not API."""
    snap = index._fresh_snapshot()
    opts = index._search_options(options, len(snap.live))
    view = _SnapshotSearch(index, snap, opts, hits_wanted(k, "colbert"))
    trace: dict[str, Any] = {"first_stage": None, "scored": None}

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(view, name)

        def first_stage(self, *args: Any) -> Candidates | None:
            found = view.first_stage(*args)
            trace["first_stage"] = None if found is None else found.keys.copy()
            return found

        def exact_maxsim(self, query: np.ndarray, keys: np.ndarray) -> np.ndarray:
            trace["scored"] = np.asarray(keys).copy()
            return view.exact_maxsim(query, keys)

    found = run_search(Recording(), np.asarray(query, np.float32), k, [], "colbert",
                       budget=opts.max_candidates, exact_threshold=opts.exact_threshold)
    trace["hits"] = [hit[0] for hit in found]
    return trace


# -- pure helpers over snapshots ---------------------------------------------------------------

def passage_scores(query: np.ndarray, snap: _Snapshot, doc_nos: np.ndarray,
                   hit_starts: np.ndarray | None = None, *, rescore: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Each document's best passage MaxSim and that passage's position (the first reaching
    the best; 0 for a document stored whole): every passage is scored over its own rows, as
    one document.

    ``hit_starts`` (from :func:`hit_passage_starts`) names the passages the first stage hit,
    by first row: a split document with any of them is scored over those alone, which is a
    lower bound of its best passage's MaxSim; a document with none, over all its passages.

    ``rescore``: when the store has a coarse kernel (``int8`` codes) and there are more
    documents than this, all are scored coarsely and only the ``rescore`` best exactly; the
    others keep their coarse scores.
    """
    doc_nos = np.asarray(doc_nos, np.int64)
    units = _passage_units(snap, doc_nos)
    if units is None:
        scores = _unit_scores(query, snap, np.arange(len(doc_nos)), snap.starts[doc_nos],
                              snap.counts[doc_nos], rescore)
        return scores, np.zeros(len(doc_nos), np.int64)
    owner, bounds, starts, counts, split = units
    keep = np.ones(len(starts), dtype=bool)
    if hit_starts is not None and len(hit_starts):
        hit = split & np.isin(starts, hit_starts)
        was_hit = np.zeros(len(doc_nos), dtype=bool)
        was_hit[owner[hit]] = True
        keep = ~split | hit | ~was_hit[owner]
    scores = np.full(len(starts), -np.inf, np.float32)
    scores[keep] = _unit_scores(query, snap, owner[keep], starts[keep], counts[keep], rescore)
    best = np.maximum.reduceat(scores, bounds)
    reaching = np.where(scores == best[owner], np.arange(len(scores)), len(scores))
    return best.astype(np.float32), np.minimum.reduceat(reaching, bounds) - bounds


def _unit_scores(query: np.ndarray, snap: _Snapshot, owner: np.ndarray, starts: np.ndarray,
                 counts: np.ndarray, rescore: int | None) -> np.ndarray:
    """MaxSim of each unit (rows ``starts[i]:starts[i] + counts[i]``, a passage or a whole
    document) of the documents numbered by ``owner`` (0, 1, …). With ``rescore`` and a store
    the coarse kernel can score, all are scored coarsely first, then the units of the
    ``rescore`` documents with the best coarse score again, exactly."""
    documents = int(owner.max()) + 1 if len(owner) else 0
    coarse = rescore is not None and documents > rescore and has_coarse_kernel(snap.vectors)
    scores = maxsim_ranges(query, snap.vectors, starts, counts, coarse=coarse)
    if coarse:
        best = np.full(documents, -np.inf, np.float32)
        np.maximum.at(best, owner, scores)
        chosen = np.zeros(documents, dtype=bool)
        chosen[np.argpartition(-best, rescore - 1)[:rescore]] = True
        again = chosen[owner]
        scores[again] = maxsim_ranges(query, snap.vectors, starts[again], counts[again])
    return scores


def hit_passage_starts(snap: _Snapshot, doc_nos: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The first rows, ascending, of the passages of split documents among ``doc_nos`` that
    hold one of ``rows`` (graph item ids: the first row of each item found)."""
    units = _passage_units(snap, np.asarray(doc_nos, np.int64))
    if units is None:
        return np.zeros(0, np.int64)
    _, _, starts, counts, split = units
    starts, counts = starts[split], counts[split]
    order = np.argsort(starts)
    starts, counts = starts[order], counts[order]
    rows = np.asarray(rows, np.int64).ravel()
    at = np.searchsorted(starts, rows, side="right") - 1
    rows, at = rows[at >= 0], at[at >= 0]
    return np.unique(starts[at[rows < starts[at] + counts[at]]])


def _passage_units(snap: _Snapshot, doc_nos: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """``doc_nos`` expanded into units scored as one document each: a split document's
    passages, a whole document's rows. ``(owner, bounds, starts, counts, split)``: each unit's
    position in ``doc_nos``, each document's first unit, each unit's rows and whether it is
    a passage of a split document; None when none of ``doc_nos`` is split."""
    doc_starts, doc_counts = snap.starts[doc_nos], snap.counts[doc_nos]
    table = snap.passage_rows
    if table is None:
        return None
    pieces = np.where(doc_counts > 0, table.count[doc_nos], 0)
    if not pieces.any():
        return None
    units = np.maximum(pieces, 1)  # a document stored whole is one unit: all its rows
    bounds = np.cumsum(units) - units
    owner = np.repeat(np.arange(len(doc_nos)), units)
    split = pieces[owner] > 0
    entry = np.where(split, table.first[doc_nos][owner] + np.arange(len(owner)) - bounds[owner], 0)
    starts = doc_starts[owner] + np.where(split, table.offsets[entry], 0)
    counts = np.where(split, table.rows[entry], doc_counts[owner])
    return owner, bounds, starts, counts, split


def _documents_at(store: DocStore, snap: _Snapshot, doc_nos: np.ndarray
                  ) -> list[tuple[str, str, dict[str, Any], np.ndarray]]:
    """``(id, text, metadata, float32 vectors)`` of the documents ``doc_nos`` of ``snap``, in
    that order; those deleted since the snapshot are left out."""
    documents = store.fetch_by_doc_nos(doc_nos.tolist())
    counts = snap.counts[doc_nos]
    rows = np.asarray(snap.vectors[rows_of(snap.starts[doc_nos], counts)], dtype=np.float32)
    ends = np.cumsum(counts)
    return [(*documents[n], rows[end - count : end])
            for n, count, end in zip(doc_nos.tolist(), counts.tolist(), ends.tolist(), strict=True)
            if n in documents]


def _build_snapshot(vectors: Any, table: np.ndarray,
                    known_means: tuple[np.ndarray, np.ndarray] | None,
                    passages: Mapping[int, tuple[Passage, ...]] | None = None,
                    ) -> tuple[_Snapshot, int]:
    """The snapshot of the committed ``table`` of ``(doc_no, start, count)``, and how many
    document means had to be computed from the vectors (those not in ``known_means``)."""
    doc_nos, starts, counts = table[:, 0], table[:, 1], table[:, 2]
    size = int(doc_nos.max()) + 1 if len(doc_nos) else 0
    by_no_start = np.zeros(size, dtype=np.int64)
    by_no_count = np.zeros(size, dtype=np.int64)
    by_no_start[doc_nos] = starts
    by_no_count[doc_nos] = counts
    if len(doc_nos) and int((starts + counts).max()) > len(vectors):
        raise IndexCorruptError("a document points past the end of the vector file")
    means = np.zeros((size, vectors.shape[1]), np.float16)
    missing = np.ones(size, dtype=bool)
    if known_means is not None:
        known_nos, known = known_means
        usable = known_nos < size
        means[known_nos[usable]] = known[usable]
        missing[known_nos[usable]] = False
    todo = doc_nos[missing[doc_nos]]
    if len(todo):
        means[todo] = means_from_rows(vectors, by_no_start[todo], by_no_count[todo])
    live = np.sort(doc_nos)
    unit_starts, unit_nos = _units_by_row(live, by_no_start)
    present = set(doc_nos.tolist())
    layouts = {n: p for n, p in (passages or {}).items() if n in present}
    for n, parts in layouts.items():  # a wrong layout would score other documents' rows
        trouble = layout_problem(parts, int(by_no_count[n]), None)
        if trouble is not None:
            raise IndexCorruptError(f"document number {n} has a passage layout that does not fit "
                                    f"it: {trouble}; run `colbridge check --repair`")
    table = _PassageRows.of(dict(sorted(layouts.items())), size)
    return _Snapshot(vectors, len(vectors), by_no_start, by_no_count, live, means, unit_starts,
                     unit_nos, layouts, table), len(todo)


def _apply_write(
    snap: _Snapshot, vectors: Any, *, removed: np.ndarray, added: np.ndarray,
    starts: np.ndarray, counts: np.ndarray, means: np.ndarray,
    passages: Mapping[int, tuple[Passage, ...]] | None = None,
) -> _Snapshot:
    size = max(len(snap.counts), int(added.max()) + 1 if len(added) else 0)
    by_no_mean = snap.means
    if size > len(by_no_mean):  # grown by doubling; otherwise shared with older snapshots, which
        # is safe: only rows of new document numbers (never reused) are written
        by_no_mean = np.zeros((max(size, 2 * len(snap.means)), snap.means.shape[1]), np.float16)
        by_no_mean[: len(snap.means)] = snap.means
    by_no_start = np.zeros(size, np.int64)
    by_no_count = np.zeros(size, np.int64)
    by_no_start[: len(snap.starts)] = snap.starts
    by_no_count[: len(snap.counts)] = snap.counts
    if len(removed):
        by_no_count[removed] = 0
    if len(added):
        by_no_start[added] = starts
        by_no_count[added] = counts
        by_no_mean[added] = means
    live = np.setdiff1d(snap.live, removed, assume_unique=True)
    live = np.union1d(live, added) if len(added) else live
    unit_starts, unit_nos = _units_by_row(live, by_no_start)
    layouts = dict(snap.passages)
    for n in removed.tolist():
        layouts.pop(n, None)
    layouts.update(passages or {})
    table = snap.passage_rows
    if passages or (table is not None and len(removed)):
        table = _PassageRows.of(passages or {}, size, table, removed)
    elif table is not None and size > len(table.count):
        table = _PassageRows.of({}, size, table)
    return _Snapshot(vectors, len(vectors), by_no_start, by_no_count, live, by_no_mean,
                     unit_starts, unit_nos, layouts, table)
