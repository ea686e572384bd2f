"""Reranking without an index: order caller-supplied documents by exact MaxSim."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ._aio import run_off_loop
from ._linalg import l2_normalize
from ._validate import check_flag, check_k, check_text
from .errors import InvalidInputError
from .explain import highlights, token_matches
from .models import ColBERTModel, Encoder
from .passages import (
    DEFAULT_LONG_DOCUMENTS,
    LongDocuments,
    Passage,
    encode_documents,
    long_documents_setting,
    passage_starts,
)
from .scoring import maxsim_many, normalize_score
from .types import RerankResult


class Reranker:
    """Score documents against a query with exact MaxSim and return them best first.

    Args:
        model: an :class:`Encoder` (such as a :class:`ColBERTModel`) or a model name
            (default: ``COLBRIDGE_MODEL`` or the default model).
        cache_size: how many document embeddings to keep, keyed by text content, so a document
            reranked again is not encoded again (0 disables the cache).
        long_documents: what happens to a text longer than the model's document length:
            ``"split"`` (the default) scores its passages and keeps the best
            (MaxP; the result's ``passage`` says which), ``"truncate"`` scores its first
            tokens only, ``"error"`` raises :class:`~colbridge.DocumentTooLongError` (see
            :mod:`colbridge.passages`).

    Example:
        >>> reranker = Reranker("offline-minilm")  # doctest: +SKIP
        >>> documents = ["Berlin is...", "Paris is..."]
        >>> ranked = reranker.rerank("capital of France", documents)  # doctest: +SKIP
        >>> [r.index for r in ranked]  # doctest: +SKIP
        [1, 0]
    """

    def __init__(self, model: Encoder | str | None = None, *, cache_size: int = 0,
                 long_documents: LongDocuments | str = DEFAULT_LONG_DOCUMENTS) -> None:
        if cache_size < 0:
            raise InvalidInputError(f"cache_size must be >= 0, got {cache_size}")
        self.long_documents = long_documents_setting(long_documents)
        self.model = model if isinstance(model, Encoder) else ColBERTModel(model)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[np.ndarray, tuple[Passage, ...] | None]] = (
            OrderedDict())
        self._cache_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles keep the model and ``cache_size``, and start with an empty cache."""
        return {"model": self.model, "cache_size": self.cache_size,
                "long_documents": self.long_documents.value}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.model = state["model"]
        self.cache_size = state["cache_size"]
        self.long_documents = LongDocuments(state.get("long_documents", DEFAULT_LONG_DOCUMENTS))
        self._cache = OrderedDict()
        self._cache_lock = threading.Lock()

    def rerank(
        self, query: str, documents: Sequence[str | np.ndarray], top_n: int | None = None,
        *, explain: bool = False,
    ) -> list[RerankResult]:
        """Order ``documents`` by MaxSim against ``query``.

        Args:
            query: the query text.
            documents: texts, or token-vector arrays ``(n_tokens, dim)`` already encoded with
                this model (mixing both is allowed).
            top_n: keep only the best ``top_n`` (all when None).
            explain: also fill each kept result's ``matches`` and ``highlights``, as
                ``search(..., explain=True)`` does (a document given as vectors has no text,
                so its matches have no spans).

        Returns:
            One :class:`RerankResult` per kept document, best first; ``index`` points into
            ``documents``. Ties keep the input order.
        """
        query = check_text(query, "query")
        check_flag(explain, "explain")
        self._check_documents(documents, top_n)
        if not documents:
            return []
        return self._rank(self.model.encode_query(query), documents, top_n, explain)

    async def arerank(
        self, query: str, documents: Sequence[str | np.ndarray], top_n: int | None = None,
        *, explain: bool = False,
    ) -> list[RerankResult]:
        """Async :meth:`rerank`: query encoding is coalesced, document work runs off the loop."""
        query = check_text(query, "query")
        check_flag(explain, "explain")
        self._check_documents(documents, top_n)
        if not documents:
            return []
        embedding = await self.model.aencode_query(query)
        return await run_off_loop(self._rank, embedding, documents, top_n, explain)

    def _check_documents(self, documents: object, top_n: int | None) -> None:
        if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
            raise InvalidInputError(
                f"documents must be a list of strings or arrays, got {type(documents).__name__}"
            )
        for position, doc in enumerate(documents):
            if not isinstance(doc, np.ndarray):
                check_text(doc, f"documents[{position}]")
            elif doc.ndim != 2 or len(doc) == 0 or not np.isfinite(doc).all():
                raise InvalidInputError(
                    f"documents[{position}] must be a finite (n_tokens, dim) array, got shape "
                    f"{doc.shape}"
                )
        if top_n is not None:
            check_k(top_n, "top_n")

    def _rank(
        self, query: np.ndarray, documents: Sequence[str | np.ndarray], top_n: int | None,
        explain: bool = False,
    ) -> list[RerankResult]:
        embedded = self._embed(documents)
        for position, (emb, _) in enumerate(embedded):
            if emb.shape[1] != query.shape[1]:
                raise InvalidInputError(
                    f"documents[{position}] has {emb.shape[1]}-d vectors; the model makes "
                    f"{query.shape[1]}-d ones"
                )
        # Every passage is scored as a document of its own; a document keeps its best.
        pieces, owner, firsts = [], [], []
        for position, (emb, layout) in enumerate(embedded):
            firsts.append(len(pieces))
            for first, rows in _passage_rows(layout, len(emb)):
                pieces.append(emb[first:first + rows])
                owner.append(position)
        piece_scores = maxsim_many(query, pieces)
        scores = np.full(len(documents), -np.inf)
        np.maximum.at(scores, np.array(owner), piece_scores)
        best = {}  # document position -> its best passage's number
        for number, (position, score) in enumerate(zip(owner, piece_scores.tolist(), strict=True)):
            if position not in best and score == scores[position]:
                best[position] = number - firsts[position]
        order = np.argsort(-scores, kind="stable")[: top_n or len(documents)]
        results = []
        for i in order.tolist():
            layout = embedded[i][1]
            passage = layout[best[i]] if layout is not None else None
            results.append(RerankResult(
                index=int(i),
                score=float(scores[i]),
                normalized_score=float(normalize_score(scores[i], len(query))),
                text=documents[i] if isinstance(documents[i], str) else None,
                passage=None if passage is None else (passage.start, passage.end),
            ))
        return self._explain(query, results, embedded) if explain else results

    def _explain(self, query: np.ndarray, results: list[RerankResult],
                 embedded: list[tuple[np.ndarray, tuple[Passage, ...] | None]]
                 ) -> list[RerankResult]:
        """``results`` with matches and highlights (spans only for documents given as text),
        from the best passage of a split text."""
        scored = []  # (the scored part of the text or None, its start, its vectors)
        for result in results:
            emb, layout = embedded[result.index]
            start, vectors, part = 0, emb, result.text
            if layout is not None and result.passage is not None:
                for passage, first in zip(layout, passage_starts(layout).tolist(), strict=True):
                    if (passage.start, passage.end) == result.passage:
                        start, vectors = passage.start, emb[first:first + passage.rows]
                        part = result.text[passage.start:passage.end] if result.text else None
                        break
            scored.append((part, start, vectors))
        texts = [part for part, _, _ in scored if part is not None]
        spans = iter((self.model.document_token_spans(texts) if texts else None)
                     or [None] * len(texts))
        explained = []
        for result, (part, start, vectors) in zip(results, scored, strict=True):
            doc_spans = next(spans) if part is not None else None
            if doc_spans is not None and start:
                doc_spans = [None if s is None else (s[0] + start, s[1] + start)
                             for s in doc_spans]
            matches = token_matches(query, vectors, doc_spans)
            marked = highlights(result.text, matches) if result.text is not None else []
            explained.append(replace(result, matches=matches, highlights=marked))
        return explained

    def _embed(self, documents: Sequence[str | np.ndarray]
               ) -> list[tuple[np.ndarray, tuple[Passage, ...] | None]]:
        """``(vectors, passages)`` per document: arrays pass through whole; texts come from the
        cache or one batched encoder call (split into passages as ``long_documents`` says)."""
        result: list[tuple[np.ndarray, tuple[Passage, ...] | None] | None] = [
            (l2_normalize(d), None) if isinstance(d, np.ndarray) else None for d in documents
        ]
        keys = {i: _key(d) for i, d in enumerate(documents) if isinstance(d, str)}
        if self.cache_size:
            with self._cache_lock:
                for i, key in keys.items():
                    cached = self._cache.get(key)
                    if cached is not None:
                        self._cache.move_to_end(key)
                        result[i] = cached
        todo = [i for i in keys if result[i] is None]
        unique_texts = list(dict.fromkeys(documents[i] for i in todo))  # type: ignore[misc]
        if unique_texts:
            done = encode_documents(self.model, unique_texts, long_documents=self.long_documents)
            encoded = dict(zip(unique_texts, zip(done.embeddings, done.passages, strict=True),
                               strict=True))
            for i in todo:
                result[i] = encoded[documents[i]]  # type: ignore[index]
            if self.cache_size:
                with self._cache_lock:
                    for text, emb in encoded.items():
                        self._cache[_key(text)] = emb
                        self._cache.move_to_end(_key(text))
                    while len(self._cache) > self.cache_size:
                        self._cache.popitem(last=False)
        return result  # type: ignore[return-value]


def _passage_rows(layout: tuple[Passage, ...] | None, rows: int) -> list[tuple[int, int]]:
    """``(first row, rows)`` of each passage of a document of ``rows`` vectors."""
    if layout is None:
        return [(0, rows)]
    return list(zip(passage_starts(layout).tolist(), (p.rows for p in layout), strict=True))


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
