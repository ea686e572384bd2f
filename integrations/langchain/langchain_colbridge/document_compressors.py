"""``ColBERTRerank``: a LangChain document compressor that reorders documents by MaxSim."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from colbridge import ColBERTModel, Encoder, Reranker, RerankResult
from colbridge.explain import passage_and_metadata
from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from ._documents import scored_copy


class ColBERTRerank(BaseDocumentCompressor):
    """Rerank documents with a ColBERT model: exact MaxSim of the query against each document.

    Returns **copies** of the best ``top_n`` input documents, best first, each with
    ``metadata["relevance_score"]`` set to the normalised MaxSim score in [0, 1] (the key
    LangChain's other rerankers use). ``Document.id`` and all other metadata are kept; the
    input documents are never modified. Documents whose text is blank cannot match anything:
    they score 0.0 and come last. An empty input gives an empty output.

    Use it as the ``base_compressor`` of ``ContextualCompressionRetriever`` (from
    ``langchain_classic``) behind any first-stage retriever, or call
    :meth:`compress_documents` / :meth:`acompress_documents` yourself.

    Args:
        model: a ``colbridge.ColBERTModel``, a model name or folder, or None for
            ``COLBRIDGE_MODEL`` / colbridge's default model. The weights load on first use.
        top_n: how many documents to keep (default 3); None keeps them all, reordered.
        batch_size: documents per encoder call when the model is built from a name (default:
            32). To change it for a ``ColBERTModel`` you pass in, set its ``batch_size``.
        explain: also say where each document matched (default False): the copies get
            ``metadata["highlights"]`` (``[start, end]`` character offsets into
            ``page_content``, best first) and ``metadata["token_matches"]`` (one dict per query
            token: ``query_token``, ``document_token``, ``span``, ``score``); both are empty
            for a blank document. See ``docs/langchain.md``.
        return_passage: for a document the reranker split into passages, return the best
            passage as ``page_content`` instead of the whole text (default False);
            highlights and match spans then point into the passage. Either way, such a copy's
            ``metadata["passage"]`` is the passage's ``[start, end]`` in the input's text.

    Example:
        ```python
        from langchain_classic.retrievers import ContextualCompressionRetriever
        from langchain_colbridge import ColBERTRerank

        reranking = ContextualCompressionRetriever(
            base_compressor=ColBERTRerank(top_n=3), base_retriever=bm25_retriever
        )
        docs = reranking.invoke("what is late interaction?")
        ```
    """

    model: Encoder | str | Path | None = None
    top_n: int | None = Field(default=3, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    explain: bool = False
    return_passage: bool = False

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _reranker: Reranker = PrivateAttr()

    @model_validator(mode="after")
    def _build_reranker(self) -> ColBERTRerank:
        if isinstance(self.model, Encoder):
            if self.batch_size is not None and self.batch_size != self.model.batch_size:
                raise ValueError(
                    "batch_size only applies when the model is given by name; for a ColBERTModel "
                    "set its batch_size (ColBERTModel(..., batch_size=...)) instead"
                )
            model = self.model
        else:
            source = os.fspath(self.model) if self.model is not None else None
            model = ColBERTModel(source, batch_size=self.batch_size or 32)
        self._reranker = Reranker(model)
        return self

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Copies of the best ``top_n`` documents for ``query``, best first, with scores."""
        if not documents:
            return []
        scored = _with_text(documents)
        results = (
            self._reranker.rerank(query, [documents[i].page_content for i in scored], self.top_n,
                                  explain=self.explain)
            if scored
            else []
        )
        return self._assemble(documents, scored, results)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`; the encoding and scoring run off the event loop."""
        if not documents:
            return []
        scored = _with_text(documents)
        results = (
            await self._reranker.arerank(
                query, [documents[i].page_content for i in scored], self.top_n,
                explain=self.explain,
            )
            if scored
            else []
        )
        return self._assemble(documents, scored, results)

    def _assemble(
        self, documents: Sequence[Document], scored: list[int], results: list[RerankResult]
    ) -> list[Document]:
        ranked: list[tuple[int, float, RerankResult | None]] = [
            (scored[r.index], r.normalized_score, r) for r in results
        ]
        room = len(documents) if self.top_n is None else self.top_n
        if len(ranked) < room:
            kept = set(scored)
            blanks = [i for i in range(len(documents)) if i not in kept]
            ranked += [(i, 0.0, None) for i in blanks[: room - len(ranked)]]
        copies = []
        for i, score, result in ranked:
            text, extra = passage_and_metadata(result, documents[i].page_content,
                                               explain=self.explain,
                                               return_passage=self.return_passage)
            copies.append(scored_copy(documents[i], score, extra, text))
        return copies


def _with_text(documents: Sequence[Any]) -> list[int]:
    """Positions of the documents that have some non-blank text to score."""
    return [i for i, doc in enumerate(documents) if doc.page_content.strip()]
