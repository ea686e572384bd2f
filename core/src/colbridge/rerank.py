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
from .scoring import maxsim_many, normalize_score
from .types import RerankResult


class Reranker:
    """Score documents against a query with exact MaxSim and return them best first.

    Args:
        model: an :class:`Encoder` (such as a :class:`ColBERTModel`) or a model name
            (default: ``COLBRIDGE_MODEL`` or the default model).
        cache_size: how many document embeddings to keep, keyed by text content, so a document
            reranked again is not encoded again (0 disables the cache).

    Example:
        >>> reranker = Reranker("offline-minilm")  # doctest: +SKIP
        >>> documents = ["Berlin is...", "Paris is..."]
        >>> ranked = reranker.rerank("capital of France", documents)  # doctest: +SKIP
        >>> [r.index for r in ranked]  # doctest: +SKIP
        [1, 0]
    """

    def __init__(self, model: Encoder | str | None = None, *, cache_size: int = 0) -> None:
        if cache_size < 0:
            raise InvalidInputError(f"cache_size must be >= 0, got {cache_size}")
        self.model = model if isinstance(model, Encoder) else ColBERTModel(model)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles keep the model and ``cache_size``, and start with an empty cache."""
        return {"model": self.model, "cache_size": self.cache_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.model = state["model"]
        self.cache_size = state["cache_size"]
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
        embeddings = self._embed(documents)
        for position, emb in enumerate(embeddings):
            if emb.shape[1] != query.shape[1]:
                raise InvalidInputError(
                    f"documents[{position}] has {emb.shape[1]}-d vectors; the model makes "
                    f"{query.shape[1]}-d ones"
                )
        scores = maxsim_many(query, embeddings)
        order = np.argsort(-scores, kind="stable")[: top_n or len(documents)]
        results = [
            RerankResult(
                index=int(i),
                score=float(scores[i]),
                normalized_score=float(normalize_score(scores[i], len(query))),
                text=documents[i] if isinstance(documents[i], str) else None,
            )
            for i in order
        ]
        return self._explain(query, results, embeddings) if explain else results

    def _explain(self, query: np.ndarray, results: list[RerankResult],
                 embeddings: list[np.ndarray]) -> list[RerankResult]:
        """``results`` with matches and highlights (spans only for documents given as text)."""
        texts = [r.text for r in results if r.text is not None]
        spans = iter((self.model.document_token_spans(texts) if texts else None)
                     or [None] * len(texts))
        explained = []
        for result in results:
            doc_spans = next(spans) if result.text is not None else None
            matches = token_matches(query, embeddings[result.index], doc_spans)
            marked = highlights(result.text, matches) if result.text is not None else []
            explained.append(replace(result, matches=matches, highlights=marked))
        return explained

    def _embed(self, documents: Sequence[str | np.ndarray]) -> list[np.ndarray]:
        """Arrays pass through; texts come from the cache or one batched encoder call."""
        result: list[np.ndarray | None] = [
            l2_normalize(d) if isinstance(d, np.ndarray) else None for d in documents
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
            vectors = self.model.encode_documents(unique_texts)
            encoded = dict(zip(unique_texts, vectors, strict=True))
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


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
