"""The index contract every backend implements, and the logic they all share.

A backend stores documents with their token vectors and finds the best ones for a query
embedding. Everything else — argument checks, id generation, encoding, hit assembly, the async
twins — lives here, written once. Backends implement these hooks:

* ``_upsert(ids, texts, metadatas, embeddings, passages)``: insert or replace, atomically
  (``passages``: per document its :class:`~colbridge.passages.Passage` tuple, or None);
* ``_delete(ids, missing_ok) -> int``;
* ``_get(ids) -> {id: (text, metadata)}``;
* ``_get_with_vectors(ids) -> {id: (text, metadata, vectors)}``;
* ``_ids(conditions) -> [id]``: the ids of the documents matching a filter;
* ``_export(batch_size) -> iterator of [(id, text, metadata, vectors)]``, in bounded memory;
* ``_count() -> int``;
* ``_search(query_embedding, k, conditions, options, mode)
  -> [(id, score, text, metadata, passage)]``;
* ``_passages(ids) -> {id: (Passage, ...)}``: the passages of the split documents among ``ids``.

Each hook has an async twin (``_aupsert``, ``_adelete``, ``_aget``, ``_acount``, ``_asearch``)
that by default runs the sync hook in a worker thread; a backend with an async client of its own
overrides those. The public ``a*`` methods are written once, here, over the async hooks, so they
differ from their sync twins only where they await.

Searches run in one of three modes (see ``docs/hybrid.md``): ``colbert`` (MaxSim, the default),
``bm25`` (lexical) and ``hybrid`` (both, fused). A backend lists the modes it supports in
``search_modes``; the others are refused before any work.
"""

from __future__ import annotations

import math
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import numpy as np

from .._aio import run_off_loop
from .._linalg import TINY, l2_normalize, row_norms
from .._validate import (
    check_flag,
    check_ids,
    check_k,
    check_metadatas,
    check_text,
    check_texts,
    dump_metadata,
)
from ..errors import DocumentNotFoundError, IndexMismatchError, InvalidInputError
from ..explain import highlights, token_matches
from ..filters import Condition, parse_filter
from ..models import ColBERTModel
from ..passages import LongDocuments, Passage, check_passages, encode_documents, passage_starts
from ..scoring import normalize_score
from ..search.fusion import DEFAULT_HYBRID_WEIGHT
from ..types import Hit, StoredDocument

MODES = ("colbert", "bm25", "hybrid")


def _unit_query(query_embedding: Any, dimension: int) -> np.ndarray:
    """A query's token vectors as unit-length float32 rows, or :class:`InvalidInputError`."""
    try:
        embedding = np.asarray(query_embedding, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"the query embedding must be an array of numbers: {e}") from e
    if embedding.ndim != 2 or embedding.shape[1] != dimension or len(embedding) == 0:
        raise InvalidInputError(
            f"the query embedding must have shape (tokens, {dimension}), got {embedding.shape}"
        )
    if not np.isfinite(embedding).all():
        raise InvalidInputError("the query embedding holds NaN or infinite values")
    norms = row_norms(embedding)
    if (norms < TINY).any():
        row = int(np.flatnonzero(norms[:, 0] < TINY)[0])
        raise InvalidInputError(f"the query embedding's row {row} is all zeros")
    # Leave the model's own (unit) queries bit for bit as they are.
    if not np.allclose(norms, 1.0, rtol=0.0, atol=1e-4):
        embedding = l2_normalize(embedding, norms=norms)
    return embedding


@dataclass(frozen=True)
class SearchRequest:
    """How one search ranks, as the hooks receive it: the mode's name (a plain string, whether
    the caller passed one or a :class:`colbridge.SearchMode`), the query text (for BM25) and the
    hybrid weight."""

    name: str = "colbert"
    text: str | None = None
    hybrid_weight: float = DEFAULT_HYBRID_WEIGHT

    @property
    def lexical(self) -> bool:
        return self.name != "colbert"


class BaseIndex(ABC):
    """A collection of documents searchable by ColBERT late interaction.

    Subclasses: :class:`~colbridge.EmbeddedIndex` (one folder on disk). Every method has an
    ``a``-prefixed async twin that runs the work off the event loop.
    """

    model: ColBERTModel
    dimension: int
    long_documents: LongDocuments = LongDocuments.TRUNCATE
    """What ``add`` does with a text longer than the model's document length (see
    :mod:`colbridge.passages`); backends record it with the collection."""

    # -- writes -----------------------------------------------------------------------------
    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        pool_factor: int = 1,
        show_progress: bool | None = None,
    ) -> list[str]:
        """Encode and store documents; an id that already exists is replaced (upsert).

        Args:
            texts: the documents' texts, each a non-empty string.
            ids: one unique id per text; random ids are generated when omitted.
            metadatas: one JSON-serialisable dict (or None) per text.
            pool_factor: PyLate token pooling; 2 stores about half as many vectors.
            show_progress: force the encoding progress bar on or off.

        Returns:
            The documents' ids, in order. Either every document is stored or none is.

        A text longer than the model's document length is split into passages, truncated,
        or refused (:class:`~colbridge.DocumentTooLongError`, nothing stored), as the index's
        :attr:`long_documents` says.
        """
        texts, ids, metadatas = self._check_new(texts, ids, metadatas)
        if not texts:
            return []
        encoded = encode_documents(self.model, texts, long_documents=self.long_documents, ids=ids,
                                   pool_factor=pool_factor, show_progress=show_progress)
        self._check_dimension(encoded.embeddings)
        self._upsert(ids, texts, metadatas, encoded.embeddings, encoded.passages)
        return ids

    async def aadd(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        pool_factor: int = 1,
    ) -> list[str]:
        """Async :meth:`add`: encoding runs in a worker thread, storing in :meth:`_aupsert`."""
        texts, ids, metadatas = self._check_new(texts, ids, metadatas)
        if not texts:
            return []
        encoded = await run_off_loop(encode_documents, self.model, texts,
                                     long_documents=self.long_documents, ids=ids,
                                     pool_factor=pool_factor, show_progress=False)
        self._check_dimension(encoded.embeddings)
        await self._aupsert(ids, texts, metadatas, encoded.embeddings, encoded.passages)
        return ids

    def add_encoded(
        self,
        embeddings: Sequence[np.ndarray],
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        passages: Sequence[Sequence[Passage] | None] | None = None,
    ) -> list[str]:
        """Store documents whose token vectors were computed already (``(n_tokens, dim)`` each).

        The vectors must come from this index's model; they are L2-normalised here.
        ``passages`` gives, per document, the passages its rows hold one after another (as
        :func:`colbridge.passages.encode_documents` returns them), or None for one encoded
        whole.
        """
        texts, ids, metadatas, checked = self._check_encoded(embeddings, texts, ids, metadatas)
        layouts = self._check_layouts(passages, texts, checked)
        if texts:
            self._upsert(ids, texts, metadatas, checked, layouts)
        return ids

    async def aadd_encoded(
        self,
        embeddings: Sequence[np.ndarray],
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        passages: Sequence[Sequence[Passage] | None] | None = None,
    ) -> list[str]:
        """Async :meth:`add_encoded`: the vectors are checked in a worker thread."""
        texts, ids, metadatas, checked = await run_off_loop(
            self._check_encoded, embeddings, texts, ids, metadatas)
        layouts = self._check_layouts(passages, texts, checked)
        if texts:
            await self._aupsert(ids, texts, metadatas, checked, layouts)
        return ids

    def delete(
        self, ids: Sequence[str] | None = None, *, filter: Mapping[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> int:
        """Delete documents by id, or every document matching ``filter``; returns how many
        were deleted.

        Pass exactly one of ``ids`` and ``filter`` (:class:`~colbridge.InvalidInputError`
        otherwise). Unknown ids raise :class:`~colbridge.DocumentNotFoundError` and delete
        nothing, unless ``missing_ok`` is set. A filter that matches nothing deletes nothing; a
        filter with no condition (``{}``) is refused rather than read as "delete everything"
        (``index.delete(index.ids())`` does that). Deleted documents stop appearing in results
        at once.
        """
        if (ids is None) == (filter is None):
            raise InvalidInputError("delete takes either ids or filter=..., "
                                    f"got {'both' if ids is not None else 'neither'}")
        if filter is not None:
            conditions = parse_filter(filter)
            if not conditions:
                raise InvalidInputError(
                    "delete(filter=...) needs at least one condition; to delete every document, "
                    "pass its ids: index.delete(index.ids())")
            return self._delete_matching(conditions)
        ids = check_ids(ids)
        return self._delete(ids, missing_ok) if ids else 0

    async def adelete(
        self, ids: Sequence[str] | None = None, *, filter: Mapping[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> int:
        """Async :meth:`delete`."""
        if ids is None or filter is not None:
            return await run_off_loop(self.delete, ids, filter=filter, missing_ok=missing_ok)
        ids = check_ids(ids)
        return await self._adelete(ids, missing_ok) if ids else 0

    # -- reads ------------------------------------------------------------------------------
    def get(
        self, ids: Sequence[str], *, missing_ok: bool = False, with_vectors: bool = False
    ) -> list[StoredDocument]:
        """The stored documents for ``ids``, in the order asked.

        Unknown ids raise :class:`~colbridge.DocumentNotFoundError`; with ``missing_ok`` they
        are left out of the result instead. With ``with_vectors`` each document's
        ``vectors`` holds its stored token vectors, ``(n_tokens, dim)`` float32 (None
        otherwise): what MMR or a copy to another index needs, without re-encoding.
        """
        ids = check_ids(ids)
        if not with_vectors:
            return self._assemble_get(ids, self._get(ids) if ids else {}, missing_ok)
        found = self._get_with_vectors(ids) if ids else {}
        missing = [i for i in ids if i not in found]
        if missing and not missing_ok:
            raise DocumentNotFoundError(missing)
        return [StoredDocument(i, *found[i]) for i in ids if i in found]

    async def aget(
        self, ids: Sequence[str], *, missing_ok: bool = False, with_vectors: bool = False
    ) -> list[StoredDocument]:
        """Async :meth:`get`."""
        if with_vectors:
            return await run_off_loop(self.get, ids, missing_ok=missing_ok, with_vectors=True)
        ids = check_ids(ids)
        return self._assemble_get(ids, await self._aget(ids) if ids else {}, missing_ok)

    def ids(self, filter: Mapping[str, Any] | None = None) -> list[str]:
        """The ids of the documents matching ``filter`` (all of them without one)."""
        return self._ids(parse_filter(filter))

    async def aids(self, filter: Mapping[str, Any] | None = None) -> list[str]:
        """Async :meth:`ids`."""
        return await run_off_loop(self.ids, filter)

    def export(self, *, batch_size: int = 256) -> Iterator[StoredDocument]:
        """Every document with its token vectors (``StoredDocument.vectors`` filled), read
        ``batch_size`` documents at a time, so memory stays bounded whatever the index size.

        Writers are not blocked meanwhile. Each document present for the whole export comes
        out once; one added or replaced while it runs may come out in its old version, its
        new one, or both, and one deleted meanwhile may be missing.
        """
        batch_size = check_k(batch_size, "batch_size")
        for batch in self._export(batch_size):
            for doc_id, text, metadata, vectors in batch:
                yield StoredDocument(doc_id, text, metadata, vectors)

    async def aexport(self, *, batch_size: int = 256) -> AsyncIterator[StoredDocument]:
        """Async :meth:`export`: each batch is read off the event loop."""
        batches = self._export(check_k(batch_size, "batch_size"))
        while (batch := await run_off_loop(next, batches, None)) is not None:
            for doc_id, text, metadata, vectors in batch:
                yield StoredDocument(doc_id, text, metadata, vectors)

    def count(self) -> int:
        """Number of documents stored."""
        return self._count()

    async def acount(self) -> int:
        """Async :meth:`count`."""
        return await self._acount()

    def __len__(self) -> int:
        return self.count()

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        mode: str = "colbert",
        hybrid_weight: float = DEFAULT_HYBRID_WEIGHT,
        explain: bool = False,
        **options: Any,
    ) -> list[Hit]:
        """The ``k`` best documents for ``query``, best first.

        Args:
            query: the query text.
            k: how many hits at most (fewer only when fewer documents match; in ``bm25`` mode,
                only documents sharing a term with the query match).
            filter: a metadata filter (see :mod:`colbridge.filters`); ``k`` hits come back
                whenever ``k`` matching documents exist.
            mode: ``"colbert"`` ranks by MaxSim; ``"bm25"`` by BM25 over the stored texts (the
                query is not encoded); ``"hybrid"`` gathers candidates both ways, scores each
                with both and fuses the scores (see ``docs/hybrid.md``).
            hybrid_weight: in ``hybrid`` mode, the share of the ColBERT score in [0, 1].
            explain: also say where each hit matched: its ``matches`` (each query token's
                best document token, its span in the text and its contribution) and its
                ``highlights`` (see ``docs/concepts.md``, "Where it matched"). Computed after
                ranking, for the returned hits only; ``bm25`` hits get neither.
            **options: backend search knobs (for the embedded index: ``token_k``, ``ef``,
                ``max_candidates``, ``exact_threshold``).

        Each hit's ``score`` is raw MaxSim, the BM25 score or the fused score, by mode.
        """
        query = check_text(query, "query")
        check_flag(explain, "explain")
        k, conditions, how = self._check_search(k, filter, options, mode, hybrid_weight, query)
        embedding = None if how.name == "bm25" else self.model.encode_query(query)
        hits = self._finish(self._search_checked(embedding, k, conditions, options, how),
                            embedding, how)
        return self._explain(hits, embedding) if explain else hits

    async def asearch(
        self,
        query: str,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        mode: str = "colbert",
        hybrid_weight: float = DEFAULT_HYBRID_WEIGHT,
        explain: bool = False,
        **options: Any,
    ) -> list[Hit]:
        """Async :meth:`search`: concurrent calls share encoder batches; nothing blocks the loop."""
        query = check_text(query, "query")
        check_flag(explain, "explain")
        k, conditions, how = self._check_search(k, filter, options, mode, hybrid_weight, query)
        embedding = None if how.name == "bm25" else await self.model.aencode_query(query)
        found = await self._asearch_checked(embedding, k, conditions, options, how)
        hits = self._finish(found, embedding, how)
        return await run_off_loop(self._explain, hits, embedding) if explain else hits

    def search_encoded(
        self,
        query_embedding: np.ndarray,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        mode: str = "colbert",
        hybrid_weight: float = DEFAULT_HYBRID_WEIGHT,
        query_text: str | None = None,
        explain: bool = False,
        **options: Any,
    ) -> list[Hit]:
        """:meth:`search` for a query already encoded, ``(query_tokens, dim)``.

        Rows that are not of unit length are L2-normalised (the model's own queries are); rows
        that are all zeros or hold NaN or infinity are refused. The ``bm25`` and ``hybrid``
        modes also need the query's text, as ``query_text``. ``explain`` is :meth:`search`'s.
        """
        check_flag(explain, "explain")
        embedding, k, conditions, how = self._check_search_encoded(
            query_embedding, k, filter, options, mode, hybrid_weight, query_text)
        hits = self._finish(self._search_checked(embedding, k, conditions, options, how),
                            embedding, how)
        return self._explain(hits, embedding) if explain else hits

    async def asearch_encoded(
        self,
        query_embedding: np.ndarray,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        mode: str = "colbert",
        hybrid_weight: float = DEFAULT_HYBRID_WEIGHT,
        query_text: str | None = None,
        explain: bool = False,
        **options: Any,
    ) -> list[Hit]:
        """Async :meth:`search_encoded`."""
        check_flag(explain, "explain")
        embedding, k, conditions, how = self._check_search_encoded(
            query_embedding, k, filter, options, mode, hybrid_weight, query_text)
        found = await self._asearch_checked(embedding, k, conditions, options, how)
        hits = self._finish(found, embedding, how)
        return await run_off_loop(self._explain, hits, embedding) if explain else hits

    # -- shared helpers ---------------------------------------------------------------------
    def _check_search(
        self, k: Any, filter: Mapping[str, Any] | None, options: dict[str, Any],
        mode: Any = "colbert", hybrid_weight: Any = DEFAULT_HYBRID_WEIGHT,
        text: str | None = None,
    ) -> tuple[int, list[Condition], SearchRequest]:
        """Validate the arguments every search variant takes; returns ``(k, conditions, mode)``."""
        k, conditions = check_k(k), parse_filter(filter)
        self._check_options(options)
        if isinstance(mode, Enum):  # colbridge.SearchMode, a str Enum: its plain value
            mode = mode.value
        if mode not in MODES:
            raise InvalidInputError(f"mode must be one of {MODES}, got {mode!r}")
        if mode not in self.search_modes:
            raise InvalidInputError(
                f"{type(self).__name__} searches in the modes {self.search_modes}, not {mode!r}; "
                "see docs/hybrid.md"
            )
        if (isinstance(hybrid_weight, bool) or not isinstance(hybrid_weight, (int, float))
                or not math.isfinite(hybrid_weight) or not 0 <= hybrid_weight <= 1):
            raise InvalidInputError(
                f"hybrid_weight must be a number in [0, 1], got {hybrid_weight!r}")
        if mode != "colbert" and text is None:
            raise InvalidInputError(f"{mode} search needs the query text: pass query_text=...")
        return k, conditions, SearchRequest(mode, text, float(hybrid_weight))

    def _check_search_encoded(
        self, query_embedding: Any, k: Any, filter: Mapping[str, Any] | None,
        options: dict[str, Any], mode: Any, hybrid_weight: Any, query_text: str | None,
    ) -> tuple[np.ndarray, int, list[Condition], SearchRequest]:
        """:meth:`_check_search` for ``search_encoded``, with the query made unit-length."""
        embedding = _unit_query(query_embedding, self.dimension)
        if query_text is not None:
            query_text = check_text(query_text, "query_text")
        k, conditions, how = self._check_search(k, filter, options, mode, hybrid_weight, query_text)
        return embedding, k, conditions, how

    @staticmethod
    def _assemble_get(
        ids: list[str], found: dict[str, tuple[str, dict[str, Any]]], missing_ok: bool
    ) -> list[StoredDocument]:
        """The documents of ``ids`` in order; unknown ids raise unless ``missing_ok``."""
        missing = [i for i in ids if i not in found]
        if missing and not missing_ok:
            raise DocumentNotFoundError(missing)
        return [StoredDocument(i, found[i][0], found[i][1]) for i in ids if i in found]

    def _search_checked(
        self, embedding: np.ndarray | None, k: int, conditions: list[Condition],
        options: dict[str, Any], mode: SearchRequest = SearchRequest(),
    ) -> list[tuple[str, float, str, dict[str, Any], tuple[int, int] | None]]:
        if embedding is not None:
            self._check_dimension([embedding])
        return self._search(embedding, k, conditions, options, mode)

    async def _asearch_checked(
        self, embedding: np.ndarray | None, k: int, conditions: list[Condition],
        options: dict[str, Any], mode: SearchRequest,
    ) -> list[tuple[str, float, str, dict[str, Any], tuple[int, int] | None]]:
        if embedding is not None:
            self._check_dimension([embedding])
        return await self._asearch(embedding, k, conditions, options, mode)

    @staticmethod
    def _finish(
        found: list[tuple[str, float, str, dict[str, Any], tuple[int, int] | None]],
        embedding: np.ndarray | None, mode: SearchRequest = SearchRequest(),
    ) -> list[Hit]:
        scores = [hit[1] for hit in found]
        if mode.name == "colbert":
            raw = np.array(scores, dtype=np.float64)
            normalized = (np.atleast_1d(normalize_score(raw, len(embedding))).tolist()
                          if found else [])
        elif mode.name == "bm25":  # BM25 has no fixed scale: relative to the best hit
            best = max(scores, default=0.0)
            normalized = [float(s / best) if best > 0 else 0.0 for s in scores]
        else:  # fused scores are in [0, 1] already
            normalized = [float(min(max(s, 0.0), 1.0)) for s in scores]
        return [
            Hit(id=i, score=float(s), normalized_score=n, text=t, metadata=m, passage=p)
            for (i, s, t, m, p), n in zip(found, normalized, strict=True)
        ]

    def _explain(self, hits: list[Hit], embedding: np.ndarray | None) -> list[Hit]:
        """``hits`` with their matches and highlights, from the stored vectors of just these
        hits. A hit replaced since it was scored keeps none (its vectors are not the ones
        that were scored); ``bm25`` hits (no query embedding) have none."""
        if embedding is None or not hits:
            return hits
        wanted = list(dict.fromkeys(h.id for h in hits))
        stored = self._get_with_vectors(wanted)
        layouts = self._passages([h.id for h in hits if h.passage is not None])
        current = []  # (hit, the scored part of its text, its start, its vectors)
        for hit in hits:
            if hit.id not in stored or stored[hit.id][0] != hit.text:
                continue
            vectors = stored[hit.id][2]
            if hit.passage is None:
                current.append((hit, hit.text, 0, vectors))
                continue
            for passage, first in zip(layouts.get(hit.id, ()),
                                      passage_starts(layouts.get(hit.id, ())), strict=True):
                if (passage.start, passage.end) == hit.passage:
                    current.append((hit, hit.text[passage.start:passage.end], passage.start,
                                    vectors[first:first + passage.rows]))
                    break
        spans = (self.model.document_token_spans([c[1] for c in current]) if current else None
                 ) or [None] * len(current)
        explained_of = {}
        for (hit, _, start, vectors), doc_spans in zip(current, spans, strict=True):
            if doc_spans is not None and start:
                doc_spans = [None if s is None else (s[0] + start, s[1] + start)
                             for s in doc_spans]
            matches = token_matches(embedding, vectors, doc_spans)
            explained_of[id(hit)] = replace(hit, matches=matches,
                                            highlights=highlights(hit.text, matches))
        return [explained_of.get(id(hit), hit) for hit in hits]

    def _check_layouts(
        self, passages: Any, texts: list[str], embeddings: list[np.ndarray]
    ) -> list[tuple[Passage, ...] | None]:
        """``add_encoded``'s ``passages``, checked against the texts and vectors."""
        if passages is None:
            return [None] * len(texts)
        if isinstance(passages, (str, bytes)) or len(passages) != len(texts):
            raise InvalidInputError(f"passages must hold one entry per text ({len(texts)})")
        return [check_passages(p, len(e), len(t), f"passages[{i}]")
                for i, (p, t, e) in enumerate(zip(passages, texts, embeddings, strict=True))]

    def _check_new(
        self, texts: Any, ids: Any, metadatas: Any
    ) -> tuple[list[str], list[str], list[str]]:
        texts = check_texts(texts)
        if ids is None:
            ids = [uuid.uuid4().hex for _ in texts]
        else:
            ids = check_ids(ids, expected=len(texts))
        metadata_json = [dump_metadata(m) for m in check_metadatas(metadatas, len(texts))]
        return texts, ids, metadata_json

    def _check_encoded(
        self, embeddings: Any, texts: Any, ids: Any, metadatas: Any
    ) -> tuple[list[str], list[str], list[str], list[np.ndarray]]:
        """:meth:`_check_new`, plus the vectors checked and L2-normalised (``add_encoded``)."""
        texts, ids, metadatas = self._check_new(texts, ids, metadatas)
        if len(embeddings) != len(texts):
            raise InvalidInputError(f"got {len(embeddings)} embeddings for {len(texts)} texts")
        checked = []
        for position, emb in enumerate(embeddings):
            emb = np.asarray(emb, dtype=np.float32)
            if emb.ndim != 2 or len(emb) == 0 or not np.isfinite(emb).all():
                raise InvalidInputError(
                    f"embeddings[{position}] must be a finite (n_tokens, dim) array, got shape "
                    f"{emb.shape}"
                )
            norms = row_norms(emb)
            zero = np.flatnonzero(norms[:, 0] < TINY)
            if len(zero):  # it has no direction, so no cosine: nothing could score or check it
                raise InvalidInputError(
                    f"embeddings[{position}] row {zero[0]} is all zeros ({len(zero)} such row(s)); "
                    "every token vector needs a direction"
                )
            checked.append(l2_normalize(emb, norms=norms))
        self._check_dimension(checked)
        return texts, ids, metadatas, checked

    def _check_dimension(self, embeddings: Sequence[np.ndarray]) -> None:
        for emb in embeddings:
            if emb.ndim != 2 or emb.shape[1] != self.dimension:
                raise IndexMismatchError(
                    f"the model produces vectors of shape {emb.shape}, but this index stores "
                    f"{self.dimension}-d vectors: open it with the model that built it"
                )

    def _check_options(self, options: dict[str, Any]) -> None:
        unknown = set(options) - set(self.search_option_names)
        if unknown:
            raise InvalidInputError(
                f"unknown search option(s) {sorted(unknown)}; this index takes "
                f"{sorted(self.search_option_names)}"
            )

    search_option_names: tuple[str, ...] = ()
    search_modes: tuple[str, ...] = ("colbert",)

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - optional for backends holding nothing
        """Release files and write pending checkpoints. The index is unusable afterwards."""

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- backend hooks ----------------------------------------------------------------------
    @abstractmethod
    def _upsert(
        self, ids: list[str], texts: list[str], metadata_json: list[str],
        embeddings: list[np.ndarray], passages: list[tuple[Passage, ...] | None] | None = None,
    ) -> None: ...

    def _passages(self, ids: list[str]) -> dict[str, tuple[Passage, ...]]:
        """The passages of the split documents among ``ids`` (a backend that stores passages
        overrides this)."""
        return {}

    @abstractmethod
    def _delete(self, ids: list[str], missing_ok: bool) -> int: ...

    @abstractmethod
    def _get(self, ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]: ...

    @abstractmethod
    def _get_with_vectors(
        self, ids: list[str]
    ) -> dict[str, tuple[str, dict[str, Any], np.ndarray]]: ...

    @abstractmethod
    def _ids(self, conditions: list[Condition]) -> list[str]: ...

    @abstractmethod
    def _export(
        self, batch_size: int
    ) -> Iterator[list[tuple[str, str, dict[str, Any], np.ndarray]]]: ...

    def _delete_matching(self, conditions: list[Condition]) -> int:
        """Delete the documents matching ``conditions`` (at least one); how many were."""
        ids = self._ids(conditions)
        return self._delete(ids, True) if ids else 0

    @abstractmethod
    def _count(self) -> int: ...

    @abstractmethod
    def _search(
        self, embedding: np.ndarray | None, k: int, conditions: list[Condition],
        options: dict[str, Any], mode: SearchRequest,
    ) -> list[tuple[str, float, str, dict[str, Any], tuple[int, int] | None]]: ...

    # -- async hooks: the sync hook in a worker thread, unless a backend awaits its own I/O ----
    async def _aupsert(
        self, ids: list[str], texts: list[str], metadata_json: list[str],
        embeddings: list[np.ndarray], passages: list[tuple[Passage, ...] | None] | None = None,
    ) -> None:
        await run_off_loop(self._upsert, ids, texts, metadata_json, embeddings, passages)

    async def _adelete(self, ids: list[str], missing_ok: bool) -> int:
        return await run_off_loop(self._delete, ids, missing_ok)

    async def _aget(self, ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        return await run_off_loop(self._get, ids)

    async def _acount(self) -> int:
        return await run_off_loop(self._count)

    async def _asearch(
        self, embedding: np.ndarray | None, k: int, conditions: list[Condition],
        options: dict[str, Any], mode: SearchRequest,
    ) -> list[tuple[str, float, str, dict[str, Any], tuple[int, int] | None]]:
        return await run_off_loop(self._search, embedding, k, conditions, options, mode)
