"""``ColBERTRetriever``: a LangChain retriever over a colbridge index."""

from __future__ import annotations

import os
from typing import Any

from colbridge import BaseIndex, ColBERTModel
from colbridge.search import DEFAULT_HYBRID_WEIGHT
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from ._documents import check_return_passage, hit_to_document


class ColBERTRetriever(BaseRetriever):
    """Retrieve documents from a colbridge index by ColBERT late interaction (MaxSim), BM25, or
    both fused (``mode``).

    Every returned ``Document`` is new: ``id`` is the document id, ``metadata`` is the stored
    metadata plus ``metadata["relevance_score"]``, the hit's normalised score in [0, 1].
    Documents come best first. What the score is depends on the mode:

    * ``colbert``: MaxSim divided by the query's token count, clipped at 0 (see
      ``colbridge.scoring.normalize_score``); it means the same on every index;
    * ``bm25``: the BM25 score divided by the best hit's, so the first document scores 1;
    * ``hybrid``: the fused score, already in [0, 1] (min-max normalised over the candidates).

    Args:
        index: a colbridge index (``colbridge.EmbeddedIndex`` or any other ``BaseIndex``).
            Use :meth:`from_path` to open an index folder instead.
        k: how many documents to return (default 4); ``invoke(query, k=...)`` overrides it.
        filter: a metadata filter in colbridge's syntax, e.g. ``{"topic": "cooking"}`` or
            ``{"year": {"$gte": 1900}}``; ``invoke(query, filter=...)`` replaces it for one
            call (``filter={}`` searches everything).
        search_options: the index's search-breadth knobs, e.g. ``{"token_k": 128}`` (for the
            embedded index: ``token_k``, ``ef``, ``max_candidates``, ``exact_threshold``);
            keyword arguments to ``invoke`` override them one by one.
        mode: how documents are ranked (default ``"colbert"``; a ``colbridge.SearchMode`` or
            its string); ``invoke(query, mode=...)`` overrides it for one call.

            * ``"colbert"``: MaxSim between the query's and the documents' token vectors;
            * ``"bm25"``: BM25 over the stored texts (the query is not encoded; only documents
              sharing a term with the query are returned, so possibly fewer than ``k``);
            * ``"hybrid"``: candidates from both rankings, each scored both ways, the two
              scores min-max normalised and mixed (see ``docs/hybrid.md``).

            ``bm25`` and ``hybrid`` need an index that supports them (``index.search_modes``:
            the embedded index and ``QdrantIndex`` do).
        hybrid_weight: in ``hybrid`` mode, the share of the ColBERT score in [0, 1] (default
            0.5; the rest is BM25's); ``invoke(query, hybrid_weight=...)`` overrides it.
        explain: also say where each document matched (default False;
            ``invoke(query, explain=True)`` for one call): ``metadata["highlights"]``, a list
            of ``[start, end]`` character offsets into ``page_content``, best first, and
            ``metadata["token_matches"]``, one dict per query token (``query_token``,
            ``document_token``, ``span``, ``score``). See ``docs/langchain.md``.
        return_passage: for a document split into passages, return the best passage as
            ``page_content`` instead of the whole text, for tight context windows (default
            False; ``invoke(query, return_passage=True)`` for one call). Highlights and match
            spans then point into the passage. Either way, such a document's
            ``metadata["passage"]`` is the passage's ``[start, end]`` in the whole stored text.

    The index checks every search argument: an unknown mode, a mode the index lacks, a weight
    outside [0, 1], a ``k`` below 1 or a malformed filter raise ``colbridge.InvalidInputError``
    (a ``ValueError``) when the retriever runs.

    Example:
        ```python
        from colbridge import EmbeddedIndex
        from langchain_colbridge import ColBERTRetriever

        retriever = ColBERTRetriever(index=EmbeddedIndex("my-index"), k=5)
        docs = retriever.invoke("what is late interaction?", k=3, filter={"topic": "ml"})
        docs = retriever.invoke("error code XJ-4471", mode="hybrid")  # exact terms count too
        ```
    """

    index: BaseIndex
    k: int = 4
    filter: dict[str, Any] | None = None
    search_options: dict[str, Any] = Field(default_factory=dict)
    mode: str = "colbert"
    hybrid_weight: float = DEFAULT_HYBRID_WEIGHT
    explain: bool = False
    return_passage: bool = False

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        model: ColBERTModel | str | None = None,
        **kwargs: Any,
    ) -> ColBERTRetriever:
        """Open the index folder ``path`` (it must exist) and build a retriever over it.

        Args:
            path: an index folder written by colbridge.
            model: the model that built it (a ``ColBERTModel`` or its name); by default the
                one recorded in the index.
            **kwargs: the retriever's other fields (``k``, ``filter``, ``search_options``,
                ``mode``...).
        """
        from colbridge import EmbeddedIndex

        return cls(index=EmbeddedIndex(path, model=model, create=False), **kwargs)

    def _search_arguments(self, overrides: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """``search_options`` and the fields, overridden by the call's keyword arguments (a
        None ``k``, ``filter``, ``mode``, ``hybrid_weight``, ``explain`` or ``return_passage``
        keeps the field's value), and whether to return passages (not a search argument)."""
        fields = {"k": self.k, "filter": self.filter, "mode": self.mode,
                  "hybrid_weight": self.hybrid_weight, "explain": self.explain,
                  "return_passage": self.return_passage}
        given = {key: value for key, value in overrides.items()
                 if value is not None or key not in fields}
        arguments = {**self.search_options, **fields, **given}
        return arguments, check_return_passage(arguments.pop("return_passage"))

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **overrides: Any
    ) -> list[Document]:
        arguments, return_passage = self._search_arguments(overrides)
        hits = self.index.search(query, **arguments)
        return [hit_to_document(hit, with_score=True, explain=arguments["explain"] is True,
                                return_passage=return_passage) for hit in hits]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **overrides: Any
    ) -> list[Document]:
        arguments, return_passage = self._search_arguments(overrides)
        hits = await self.index.asearch(query, **arguments)
        return [hit_to_document(hit, with_score=True, explain=arguments["explain"] is True,
                                return_passage=return_passage) for hit in hits]
