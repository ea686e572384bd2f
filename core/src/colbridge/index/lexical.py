"""The lexical side of the embedded index: BM25 over the stored texts, built with bm25s.

bm25s indexes a corpus in one pass and cannot add to an index afterwards, so the lexical index
is kept in two segments:

* the **base**, a bm25s index over every live document whose ``doc_no`` was at most ``upto``
  when it was built, saved in the folder as ``lexical-<upto>/`` (bm25s's own files: NumPy
  arrays and JSON, never pickle; plus ``doc_nos.npy``, which maps bm25s rows to ``doc_no``, and
  ``colbridge.json``, which records the tokenizer);
* the **tail**, documents added since, indexed in memory by the first search that needs them.

Both are caches of ``documents.sqlite``, as the graph is a cache of the vectors: a missing or
damaged ``lexical-*`` folder is rebuilt from the texts. Deleted and replaced documents stay in
the segments until the base is rebuilt, and are masked at search time.

Scores come from bm25s's precomputed BM25 weights, read term by term from its sparse matrix and
rescaled so that every term has the IDF of the base and the tail together. The tail is indexed
with padding rows (one term bm25s's tokenizer never produces) that give it the base's average
length, so its documents' lengths are normalised as in the base: a document scores the same
whether it sits in the base or the tail.

The base is rebuilt in one bm25s pass over all live texts when the tail outgrows
:func:`tail_limit` (at a search, or at ``flush``/``close``), or when ``compact`` runs and part of
the base was deleted. The cost of segments: a search after a write re-indexes the tail (at most
``tail_limit`` documents), and deleted documents count in the IDF until the next rebuild.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._files import file_digest, fsync_dir, scratch_path
from . import layout

logger = logging.getLogger(__name__)

FORMAT = "colbridge-lexical"
FORMAT_VERSION = 1
TOKENIZER = {"lower": True, "stopwords": "en", "stemmer": "english"}
"""How texts become terms: lowercase, bm25s's English stopwords, Snowball English stemming."""


TextsByDocNo = Callable[[Sequence[int]], dict[int, str]]


def tail_limit(base_documents: int) -> int:
    """Tail documents tolerated before the base is rebuilt: a fifth of the base, at least 1,000
    and at most 50,000 (so re-indexing the tail after a write stays cheap)."""
    return max(1_000, min(base_documents // 5, 50_000))


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """The terms of each text, as both the index and the queries see them."""
    import bm25s

    return bm25s.tokenize(list(texts), lower=True, stopwords=TOKENIZER["stopwords"],
                          stemmer=_stemmer(), return_ids=False, show_progress=False)


_PAD = "\x00"  # a term the tokenizer never produces, for the tail's length-balancing rows


@dataclass(frozen=True)
class Segment:
    """One bm25s index and the ``doc_no`` of each of its rows (-1 for padding rows)."""

    retriever: object
    doc_nos: np.ndarray
    upto: int
    average_length: float

    @classmethod
    def build(cls, doc_nos: np.ndarray, texts: Sequence[str], upto: int,
              average_length: float | None = None) -> Segment:
        """Index ``texts``. With ``average_length`` (the base's, when building a tail), rows
        holding only a padding term are added so that bm25s normalises lengths by that average,
        as it would if the texts were part of the base."""
        import bm25s

        terms = tokenize(texts)
        lengths = [max(len(t), 1) for t in terms]
        own_average = sum(lengths) / max(len(lengths), 1)
        doc_nos = np.asarray(doc_nos, dtype=np.int64)
        if average_length is not None and len(terms):
            pads = _padding(sum(lengths), len(lengths), average_length)
            terms = terms + pads
            doc_nos = np.concatenate([doc_nos, np.full(len(pads), -1, np.int64)])
        if not any(terms):
            # No text holds a BM25 term ("no", "I", "?"): a valid state, but bm25s cannot index
            # an empty vocabulary. One padding row gives it a term no query ever has.
            terms = [*terms, [_PAD]]
            doc_nos = np.concatenate([doc_nos, np.full(1, -1, np.int64)])
        retriever = bm25s.BM25()
        retriever.index(terms, show_progress=False)
        return cls(retriever, doc_nos, upto, own_average)

    @property
    def documents(self) -> int:
        """Rows that are documents (padding rows left out)."""
        return int((self.doc_nos >= 0).sum())

    @property
    def num_docs(self) -> int:
        return int(self.retriever.scores["num_docs"])

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """``(doc_nos, weights)`` of the documents holding ``term``: bm25s's precomputed BM25
        weight of the term in each (its IDF times the saturated term frequency)."""
        column = self.retriever.vocab_dict.get(term)
        if column is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        matrix = self.retriever.scores
        begin, end = int(matrix["indptr"][column]), int(matrix["indptr"][column + 1])
        rows = np.asarray(matrix["indices"][begin:end], dtype=np.int64)
        return self.doc_nos[rows], np.asarray(matrix["data"][begin:end], dtype=np.float32)

    def save(self, folder: Path) -> Path:
        """Write this segment as ``lexical-<upto>/``: built aside, renamed into place."""
        target = folder / layout.lexical_folder_name(self.upto)
        scratch = scratch_path(target)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        self.retriever.save(str(scratch), show_progress=False)
        np.save(scratch / "doc_nos.npy", self.doc_nos)
        files = {entry.name: list(file_digest(Path(entry.path))) for entry in os.scandir(scratch)}
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "upto": self.upto,
                "documents": self.documents, "average_length": self.average_length,
                "tokenizer": TOKENIZER, "files": files}
        (scratch / "colbridge.json").write_text(json.dumps(meta, indent=2) + "\n")
        for entry in os.scandir(scratch):
            with open(entry.path, "rb+") as f:
                os.fsync(f.fileno())
        fsync_dir(scratch)
        if target.exists():
            shutil.rmtree(target)
        os.rename(scratch, target)
        fsync_dir(folder)
        return target

    @classmethod
    def load(cls, path: Path) -> Segment:
        """Read a saved segment; raises ``ValueError`` when it is damaged or foreign.

        Every file must match the size and SHA-256 recorded in ``colbridge.json`` when the
        segment was saved (segments saved before that was recorded count as damaged, and are
        rebuilt), and the arrays must describe a sound index.
        """
        import bm25s

        try:
            meta = json.loads((path / "colbridge.json").read_text())
            if (meta.get("format"), meta.get("format_version")) != (FORMAT, FORMAT_VERSION):
                raise ValueError(f"{path} is not a {FORMAT} v{FORMAT_VERSION} segment")
            if meta.get("tokenizer") != TOKENIZER:
                raise ValueError(f"{path} was tokenized differently")
            _verify_files(path, meta.get("files"))
            upto, average_length = int(meta["upto"]), float(meta["average_length"])
            doc_nos = np.load(path / "doc_nos.npy", allow_pickle=False)
            retriever = bm25s.BM25.load(str(path), mmap=True, show_progress=False, verbosity=0)
            segment = cls(retriever, np.asarray(doc_nos, dtype=np.int64), upto, average_length)
            _validate(segment, doc_nos)
        except ValueError as e:
            if str(e).startswith(str(path)):
                raise
            raise ValueError(f"{path} is damaged: {e}") from e
        except Exception as e:  # bm25s and NumPy raise EOFError, IndexError, ... on bad files
            raise ValueError(f"{path} cannot be read: {e!r}") from e
        return segment

    def rows_terms(self) -> list[set[str]]:
        """The terms of each row (what it was indexed with), from the sparse matrix."""
        matrix = self.retriever.scores
        indptr, indices = np.asarray(matrix["indptr"]), np.asarray(matrix["indices"])
        column_term = {column: term for term, column in self.retriever.vocab_dict.items()}
        rows: list[set[str]] = [set() for _ in range(len(self.doc_nos))]
        for column in range(len(indptr) - 1):
            term = column_term.get(column)
            for row in indices[indptr[column]:indptr[column + 1]].tolist():
                rows[row].add(term)
        return rows


class UnrecordedSegment(ValueError):
    """A segment saved before colbridge recorded its files' checksums: not trusted, rebuilt."""


def _verify_files(path: Path, files: object) -> None:
    """The folder holds exactly the files recorded, each of its recorded size and SHA-256."""
    if not isinstance(files, dict):
        raise UnrecordedSegment(f"{path} has no file checksums (saved by an older colbridge)")
    present = {entry.name for entry in os.scandir(path)} - {"colbridge.json"}
    if present != set(files):
        raise ValueError(f"{path} holds {sorted(present)}, its description lists {sorted(files)}")
    for name, recorded in files.items():
        if list(file_digest(path / name)) != recorded:
            raise ValueError(f"{path}: {name} does not match the checksum recorded when it was "
                             "saved")


def _validate(segment: Segment, doc_nos: np.ndarray) -> None:
    """The arrays must describe a sound index: search then never reads out of bounds."""
    matrix = segment.retriever.scores
    rows = int(matrix["num_docs"])
    indptr, indices = np.asarray(matrix["indptr"]), np.asarray(matrix["indices"])
    data = np.asarray(matrix["data"])
    columns = len(indptr) - 1
    if (doc_nos.ndim != 1 or doc_nos.dtype != np.int64 or len(doc_nos) != rows
            or indptr.ndim != 1 or indices.ndim != 1 or data.shape != indices.shape):
        raise ValueError("its arrays do not fit together")
    if columns < 0 or indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
        raise ValueError("its column pointers are not a sparse matrix's")
    if len(indices) and (indices.min() < 0 or indices.max() >= rows):
        raise ValueError("it points at rows it does not have")
    if not np.isfinite(data).all():
        raise ValueError("it holds weights that are not finite")
    terms = {term: column for term, column in segment.retriever.vocab_dict.items() if term}
    if any(type(c) is not int or not 0 <= c < columns for c in terms.values()):
        raise ValueError("its vocabulary points at columns it does not have")
    numbered = doc_nos[doc_nos >= 0]
    if (doc_nos < -1).any() or (np.diff(numbered) <= 0).any() or (
            len(numbered) and numbered[-1] > segment.upto):
        raise ValueError("its document numbers are not ascending up to its upto")


def disagreement(segment: Segment, texts: dict[int, str]) -> str | None:
    """How ``segment`` disagrees with the store, whose live documents numbered up to the
    segment's ``upto`` have ``texts``; None when every one of them is a row indexed with its
    text's terms. Catches a segment of another index, or with its rows' numbers reordered."""
    row_of = {int(n): row for row, n in enumerate(segment.doc_nos.tolist()) if n >= 0}
    missing = [n for n in texts if n not in row_of]
    if missing:
        return f"lacks {len(missing)} stored document(s) it should hold"
    rows_terms = segment.rows_terms()
    numbers = sorted(texts)
    wrong = 0
    for begin in range(0, len(numbers), 10_000):
        part = numbers[begin:begin + 10_000]
        for n, terms in zip(part, tokenize([texts[n] for n in part]), strict=True):
            wrong += set(terms) != rows_terms[row_of[n]]
    if wrong:
        return (f"indexes {wrong} document(s) with terms other than their stored texts' (a "
                "segment of another index, or its rows renumbered)")
    return None


def saved_segments(folder: Path) -> list[tuple[int, Path]]:
    """``(upto, path)`` of every ``lexical-<upto>`` folder, newest first."""
    return [(name.rows, path) for name, path in layout.files_of(folder, layout.LEXICAL)
            if path.is_dir()]


class LexicalIndex:
    """BM25 over an index folder's live documents: a saved base segment plus an in-memory tail.

    Args:
        folder: the index folder.
        texts: reads the texts of the given ``doc_no``s from the document store.
    """

    def __init__(self, folder: Path, texts: TextsByDocNo) -> None:
        self.folder = folder
        self._texts = texts
        self._lock = threading.Lock()
        self._base: Segment | None = None
        self._base_saved = False
        self._saved_upto = -1
        self._tail: Segment | None = None

    def scores(self, query: str, live: np.ndarray, allowed: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """BM25 scores of the documents that share a term with ``query``.

        Args:
            query: the query text.
            live: sorted ``doc_no``s of the documents that exist now.
            allowed: sorted ``doc_no``s that may be returned (a filter's matches); all live
                documents when None.

        Returns:
            ``(doc_nos, scores)``, ``doc_nos`` ascending; documents scoring 0 are left out.
        """
        base, tail = self._segments(live)
        doc_nos, scores = segment_scores([s for s in (base, tail) if s is not None], query)
        keep = np.isin(doc_nos, live if allowed is None else allowed, assume_unique=True)
        return doc_nos[keep], scores[keep]

    def checkpoint(self, live: np.ndarray, *, rebuild_if_dead: bool = False) -> None:
        """Rebuild the base if the tail outgrew it, then save it if it is newer than on disk.

        Call only while holding the index's write lock. ``rebuild_if_dead`` (used by
        ``compact``) rebuilds only a base that exists, and also when documents of it were
        deleted.
        """
        with self._lock:
            if not rebuild_if_dead and self._base is None and self._saved_base_covers(live):
                return  # loading it (importing bm25s: most of a reader's close) changes nothing
            self._load_newer_from_disk(live)
            base = self._base
            if rebuild_if_dead and base is None:
                return  # never built: the next flush, close or lexical search builds it
            if rebuild_if_dead and len(live) and not np.isin(base.doc_nos, live,
                                                             assume_unique=True).all():
                self._rebuild(live)
            else:
                self._ensure_base(live)
            if self._base is not None and not self._base_saved:
                self._base.save(self.folder)
                self._base_saved, self._saved_upto = True, self._base.upto
                self.remove_stale()

    def _saved_base_covers(self, live: np.ndarray) -> bool:
        """Whether the newest saved base holds every live document and describes itself as a
        trusted one (format, tokenizer, recorded checksums): then loading it would leave
        nothing to build or save. Its files are verified when a search loads it, which
        rebuilds a damaged one then."""
        saved = saved_segments(self.folder)
        if not saved or (len(live) and int(live[-1]) > saved[0][0]):
            return False
        try:
            meta = json.loads((saved[0][1] / "colbridge.json").read_text("utf-8"))
        except (OSError, ValueError):
            return False
        return (isinstance(meta, dict) and isinstance(meta.get("files"), dict)
                and (meta.get("format"), meta.get("format_version")) == (FORMAT, FORMAT_VERSION)
                and meta.get("tokenizer") == TOKENIZER)

    def remove_stale(self) -> None:
        """Delete superseded ``lexical-*`` folders and leftovers of interrupted saves."""
        for upto, path in saved_segments(self.folder):
            if upto != self._saved_upto:
                shutil.rmtree(path, ignore_errors=True)
        for entry in os.scandir(self.folder):
            if entry.name.startswith(".lexical-") and layout.is_temporary(entry.name):
                shutil.rmtree(entry.path, ignore_errors=True)

    # -- internals ---------------------------------------------------------------------------
    def _segments(self, live: np.ndarray) -> tuple[Segment | None, Segment | None]:
        with self._lock:
            self._load_newer_from_disk(live)
            self._ensure_base(live)
            base = self._base
            newest = int(live[-1]) if len(live) else -1
            upto = base.upto if base is not None else -1
            if newest <= upto:
                self._tail = None
            elif self._tail is None or self._tail.upto < newest:
                fresh, texts = self._read(live[live > upto])
                self._tail = Segment.build(
                    fresh, texts, newest,
                    average_length=base.average_length if base is not None else None,
                ) if len(fresh) else None
            return base, self._tail

    @staticmethod
    def _tail_size(base: Segment, live: np.ndarray) -> int:
        return int(len(live) - np.searchsorted(live, base.upto, side="right"))

    def _ensure_base(self, live: np.ndarray) -> None:
        """Build the base when there is none, or when the tail has outgrown it."""
        base = self._base
        if len(live) and (base is None
                          or self._tail_size(base, live) > tail_limit(len(base.doc_nos))):
            self._rebuild(live)

    def _read(self, doc_nos: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """The texts of those of ``doc_nos`` still stored, in batches; ``(doc_nos, texts)``."""
        texts: dict[int, str] = {}
        for begin in range(0, len(doc_nos), 10_000):
            texts.update(self._texts(doc_nos[begin:begin + 10_000].tolist()))
        present = np.array(sorted(texts), np.int64)
        return present, [texts[n] for n in present.tolist()]

    def _rebuild(self, live: np.ndarray) -> None:
        doc_nos, texts = self._read(live)
        self._base = Segment.build(doc_nos, texts, int(live[-1]))
        self._base_saved = False
        self._tail = None
        logger.info("lexical index rebuilt over %d documents", len(doc_nos))

    def _load_newer_from_disk(self, live: np.ndarray) -> None:
        """Adopt a base another process saved, if it is newer than the one in memory and holds
        every live document it should (``live``: the sorted live ``doc_no``s)."""
        current = self._base.upto if self._base is not None else -1
        for upto, path in saved_segments(self.folder):
            if upto <= current:
                return
            try:
                segment = Segment.load(path)
                expected = live[live <= segment.upto]
                if not np.isin(expected, segment.doc_nos).all():
                    raise ValueError(f"{path} lacks live documents it should hold")
            except UnrecordedSegment as e:
                logger.info("not loading a lexical segment: %s; rebuilding it", e)
                continue
            except ValueError as e:
                logger.warning("ignoring a damaged lexical segment: %s", e)
                continue
            self._base = segment
            self._base_saved, self._saved_upto = True, upto
            if self._tail is not None and self._tail.upto <= upto:
                self._tail = None
            return


def segment_scores(segments: Sequence[Segment], query: str) -> tuple[np.ndarray, np.ndarray]:
    """BM25 scores of ``query`` over ``segments`` taken as one collection: ``(doc_nos,
    scores)``, ``doc_nos`` ascending, only documents sharing a term with the query (padding
    rows, ``doc_no`` -1, never do: their term is no query's)."""
    total_docs = sum(segment.documents for segment in segments)
    parts_nos, parts_scores = [], []
    for term in tokenize([query])[0]:  # a repeated query term counts again, as in bm25s
        postings = [segment.postings(term) for segment in segments]
        df = sum(len(nos) for nos, _ in postings)
        if df == 0:
            continue
        # Each segment weighs the term with the IDF of its own documents; rescale to the
        # IDF over all segments so base and tail documents are scored alike.
        for segment, (nos, weights) in zip(segments, postings, strict=True):
            if len(nos):
                ratio = _idf(df, total_docs) / _idf(len(nos), segment.num_docs)
                parts_nos.append(nos)
                parts_scores.append(weights * np.float32(ratio))
    if not parts_nos:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    doc_nos, inverse = np.unique(np.concatenate(parts_nos), return_inverse=True)
    return doc_nos, np.bincount(inverse, weights=np.concatenate(parts_scores)).astype(np.float32)


def _padding(total_length: int, documents: int, target: float) -> list[list[str]]:
    """Rows of padding terms that bring the average length of ``documents`` texts holding
    ``total_length`` terms to about ``target``: one long row when they are shorter on average,
    rows of one term when they are longer (at most 100,000 rows)."""
    if total_length < documents * target:
        return [[_PAD] * max(1, round(target * (documents + 1) - total_length))]
    if target <= 1:
        return []
    return [[_PAD]] * min(round((total_length - documents * target) / (target - 1)), 100_000)


def _idf(df: int, documents: int) -> float:
    """BM25's IDF as bm25s computes it by default (the Lucene variant)."""
    return math.log(1 + (documents - df + 0.5) / (df + 0.5))


_local = threading.local()


def _stemmer():  # PyStemmer's stemmers are not thread-safe: one per thread
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        import Stemmer

        stemmer = _local.stemmer = Stemmer.Stemmer(TOKENIZER["stemmer"])
    return stemmer
