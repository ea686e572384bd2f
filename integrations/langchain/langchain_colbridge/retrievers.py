"""``ColBERTRetriever``: a LangChain retriever over a colbridge index."""

from __future__ import annotations

import os
from typing import Any

from colbridge import BaseIndex, ColBERTModel
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from ._documents import hit_to_document


class ColBERTRetriever(BaseRetriever):
    """Retrieve documents from a colbridge index by ColBERT late interaction (MaxSim).

    Every returned ``Document`` is new: ``id`` is the document id, ``metadata`` is the stored
    metadata plus ``metadata["relevance_score"]``, the hit's normalised MaxSim score in [0, 1]
    (raw MaxSim divided by the query's token count, clipped at 0; see
    ``colbridge.scoring.normalize_score``). Documents come best first.

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

    Example:
        ```python
        from colbridge import EmbeddedIndex
        from langchain_colbridge import ColBERTRetriever

        retriever = ColBERTRetriever(index=EmbeddedIndex("my-index"), k=5)
        docs = retriever.invoke("what is late interaction?", k=3, filter={"topic": "ml"})
        ```
    """

    index: BaseIndex
    k: int = Field(default=4, ge=1)
    filter: dict[str, Any] | None = None
    search_options: dict[str, Any] = Field(default_factory=dict)

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
            **kwargs: the retriever's other fields (``k``, ``filter``, ``search_options``...).
        """
        from colbridge import EmbeddedIndex

        return cls(index=EmbeddedIndex(path, model=model, create=False), **kwargs)

    def _search_arguments(
        self, k: int | None, filter: dict[str, Any] | None, options: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            **self.search_options,
            **options,
            "k": self.k if k is None else k,
            "filter": self.filter if filter is None else filter,
        }

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: dict[str, Any] | None = None,
        **options: Any,
    ) -> list[Document]:
        hits = self.index.search(query, **self._search_arguments(k, filter, options))
        return [hit_to_document(hit, with_score=True) for hit in hits]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: dict[str, Any] | None = None,
        **options: Any,
    ) -> list[Document]:
        hits = await self.index.asearch(query, **self._search_arguments(k, filter, options))
        return [hit_to_document(hit, with_score=True) for hit in hits]
