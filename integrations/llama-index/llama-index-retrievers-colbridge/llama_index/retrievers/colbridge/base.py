"""``ColBERTRetriever``: a LlamaIndex retriever over a colbridge index."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import llama_index.core.instrumentation as instrument
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.ingestion import arun_transformations, run_transformations
from llama_index.core.schema import (
    BaseNode,
    Document,
    IndexNode,
    NodeWithScore,
    QueryBundle,
    TransformComponent,
)
from llama_index.core.settings import Settings
from llama_index.core.vector_stores.types import MetadataFilters

from colbridge import BaseIndex, ColBERTModel, EmbeddedIndex, Hit, InvalidInputError
from colbridge.search import DEFAULT_HYBRID_WEIGHT

from ._convert import REF_DOC_KEY, hit_to_node, node_to_record, to_core_filter
from ._explain import shaped_copy

if TYPE_CHECKING:
    from types import TracebackType

dispatcher = instrument.get_dispatcher(__name__)


class ColBERTRetriever(BaseRetriever):
    """Retrieve nodes from a colbridge index by ColBERT late interaction (MaxSim), BM25, or
    both fused (``mode``).

    Args:
        index: a colbridge index (any ``colbridge.BaseIndex``), or the folder of an embedded
            index, which is opened. A folder without an index raises
            ``colbridge.IndexNotFoundError`` here, unless ``create`` is set.
        model: only with a folder: the ``ColBERTModel`` or model name to open it with
            (default: the model that built it; for a new index ``COLBRIDGE_MODEL`` or the
            default model).
        create: only with a folder: create an empty index in it when it is missing or empty
            (``from_documents``/``from_nodes`` set it).
        similarity_top_k: how many nodes to return (1 to 100,000).
        filters: LlamaIndex ``MetadataFilters`` applied to every query. Supported operators
            ``==``, ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``in``, ``nin``, under the ``and``
            condition (also nested); others raise ``ValueError`` here.
        normalize_scores: give the normalised score in [0, 1] (for MaxSim,
            ``score / query_length``) instead of the raw score.
        mode: how nodes are ranked: ``"colbert"`` (default) by MaxSim; ``"bm25"`` by BM25
            over the stored texts (the query is not encoded, and only nodes sharing a term
            with the query come back, so possibly fewer than ``similarity_top_k``);
            ``"hybrid"`` gathers candidates both ways, scores each with both and mixes the
            min-max normalised scores (see ``docs/hybrid.md``). A ``colbridge.SearchMode``
            works too. ``bm25`` and ``hybrid`` need an index that supports them
            (``index.search_modes``: the embedded index and ``QdrantIndex`` do).
        hybrid_weight: in ``hybrid`` mode, the share of the ColBERT score, in [0, 1]
            (default 0.5; the rest is BM25's).
        explain: also say where each node matched: ``node.metadata["highlights"]``, a list
            of ``[start, end]`` character offsets into the node's text (``node.text``), best
            first, and ``node.metadata["token_matches"]``, one dict per query token
            (``query_token``, ``document_token``, ``span``, ``score``). Both keys are added to
            the node's ``excluded_embed_metadata_keys`` and ``excluded_llm_metadata_keys``,
            so they stay out of prompts. See ``docs/llamaindex.md``.
        return_passage: for a node the index split into passages, return the best passage
            as the node's text instead of the whole text, for tight context windows (default
            False); ``start_char_idx``/``end_char_idx`` move to the passage and highlights
            point into it. Either way, such a node's ``metadata["passage"]`` is the passage's
            ``[start, end]`` in the node's whole text (excluded from prompts too).
        callback_manager, objects, object_map, verbose: as for any LlamaIndex retriever.

    The index checks the search arguments: a ``similarity_top_k``, mode or weight it cannot
    take, or a filter value of the wrong shape, raises ``colbridge.InvalidInputError`` (a
    ``ValueError``) when the retriever runs.

    Scores depend on the mode. ``colbert``: exact MaxSim, the sum over query tokens of the
    best cosine similarity among the node's tokens (normalised: divided by the query's token
    count, clipped at 0). ``bm25``: the BM25 score (normalised: divided by the best hit's).
    ``hybrid``: the fused score, in [0, 1] either way.

    Nodes are stored with what LlamaIndex embeds for them
    (``get_content(metadata_mode=MetadataMode.EMBED)``) as the encoded text, and come back
    with their id, text, metadata and relationships. Two metadata keys are reserved
    (``_llamaindex_node``, ``_llamaindex_ref_doc_id``); they never appear on returned nodes.

    Example:
        >>> retriever = ColBERTRetriever.from_documents(docs, "my-index")   # doctest: +SKIP
        >>> retriever.retrieve("what is late interaction?")                # doctest: +SKIP
    """

    def __init__(
        self,
        index: BaseIndex | str | os.PathLike[str],
        *,
        model: ColBERTModel | str | None = None,
        create: bool = False,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        filters: MetadataFilters | None = None,
        normalize_scores: bool = False,
        mode: str = "colbert",
        hybrid_weight: float = DEFAULT_HYBRID_WEIGHT,
        explain: bool = False,
        return_passage: bool = False,
        callback_manager: CallbackManager | None = None,
        objects: list[IndexNode] | None = None,
        object_map: dict[str, Any] | None = None,
        verbose: bool = False,
    ) -> None:
        to_core_filter(filters)  # reject unsupported filters now, not at the first query
        if not isinstance(return_passage, bool):
            raise InvalidInputError(f"return_passage must be True or False, got {return_passage!r}")
        if isinstance(index, BaseIndex):
            if model is not None or create:
                raise ValueError("pass model or create only with an index folder; an index "
                                 "has its own")
            self._owns_index = False
        elif isinstance(index, (str, os.PathLike)):
            if create:
                index = EmbeddedIndex.open_or_create(index, model)
            else:
                index = EmbeddedIndex(index, model=model, create=False)
            self._owns_index = True
        else:
            raise TypeError(
                f"index must be a colbridge index or a folder, got {type(index).__name__}"
            )
        self.index: BaseIndex = index
        self.similarity_top_k = similarity_top_k
        self.filters = filters
        self.normalize_scores = normalize_scores
        self.mode = mode
        self.hybrid_weight = hybrid_weight
        self.explain = explain
        self.return_passage = return_passage
        super().__init__(
            callback_manager=callback_manager,
            object_map=object_map,
            objects=objects,
            verbose=verbose,
        )

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_documents(
        cls,
        documents: Sequence[Document],
        index: BaseIndex | str | os.PathLike[str],
        *,
        transformations: Sequence[TransformComponent] | None = None,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> ColBERTRetriever:
        """Split ``documents`` into nodes (``transformations``, default
        ``Settings.transformations``: a ``SentenceSplitter``), index them and return a
        retriever over ``index`` (a folder without an index gets one). ``kwargs`` go to the
        constructor."""
        retriever = cls(index, **_creating(index, kwargs))
        retriever.insert_documents(
            documents, transformations=transformations, show_progress=show_progress
        )
        return retriever

    @classmethod
    def from_nodes(
        cls, nodes: Sequence[BaseNode], index: BaseIndex | str | os.PathLike[str], **kwargs: Any
    ) -> ColBERTRetriever:
        """Index ready-made nodes and return a retriever over ``index`` (a folder without an
        index gets one)."""
        retriever = cls(index, **_creating(index, kwargs))
        retriever.insert_nodes(nodes)
        return retriever

    # -- maintenance ----------------------------------------------------------------------
    def insert_nodes(self, nodes: Sequence[BaseNode]) -> list[str]:
        """Encode and store nodes; a node whose id is already indexed is replaced.

        Returns the node ids. Either every node is stored or none is.
        """
        ids, texts, metadatas = _records(nodes)
        return self.index.add(texts, ids=ids, metadatas=metadatas) if ids else []

    async def ainsert_nodes(self, nodes: Sequence[BaseNode]) -> list[str]:
        """Async :meth:`insert_nodes`."""
        ids, texts, metadatas = _records(nodes)
        return await self.index.aadd(texts, ids=ids, metadatas=metadatas) if ids else []

    def insert_documents(
        self,
        documents: Sequence[Document],
        *,
        transformations: Sequence[TransformComponent] | None = None,
        show_progress: bool = False,
    ) -> list[str]:
        """Run ``transformations`` (default ``Settings.transformations``) over ``documents``
        and store the resulting nodes; returns their ids."""
        nodes = run_transformations(
            list(documents), _transformations(transformations), show_progress=show_progress
        )
        return self.insert_nodes(nodes)

    async def ainsert_documents(
        self,
        documents: Sequence[Document],
        *,
        transformations: Sequence[TransformComponent] | None = None,
        show_progress: bool = False,
    ) -> list[str]:
        """Async :meth:`insert_documents`."""
        nodes = await arun_transformations(
            list(documents), _transformations(transformations), show_progress=show_progress
        )
        return await self.ainsert_nodes(nodes)

    def delete_ref_doc(self, ref_doc_id: str) -> int:
        """Delete every node that came from the source document ``ref_doc_id``.

        Returns how many nodes were deleted (0 when none came from it).
        """
        return self.index.delete(filter=_ref_doc_filter(ref_doc_id))

    async def adelete_ref_doc(self, ref_doc_id: str) -> int:
        """Async :meth:`delete_ref_doc`."""
        return await self.index.adelete(filter=_ref_doc_filter(ref_doc_id))

    # -- retrieval ------------------------------------------------------------------------
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._to_nodes(self.index.search(query_bundle.query_str, **self._arguments()))

    @dispatcher.span
    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = await self.index.asearch(query_bundle.query_str, **self._arguments())
        return self._to_nodes(hits)

    def _arguments(self) -> dict[str, Any]:
        """The search's arguments, translated; the index checks them."""
        return {"k": self.similarity_top_k, "filter": to_core_filter(self.filters),
                "mode": self.mode, "hybrid_weight": self.hybrid_weight, "explain": self.explain}

    def _to_nodes(self, hits: list[Hit]) -> list[NodeWithScore]:
        return [
            NodeWithScore(
                node=self._node(hit),
                score=hit.normalized_score if self.normalize_scores else hit.score,
            )
            for hit in hits
        ]

    def _node(self, hit: Hit) -> BaseNode:
        return shaped_copy(hit_to_node(hit), hit, hit.text, explain=self.explain is True,
                           return_passage=self.return_passage is True)

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Close the index if this retriever opened it from a folder (a given index is left
        open for its owner)."""
        if self._owns_index:
            self.index.close()

    def __enter__(self) -> ColBERTRetriever:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _creating(index: object, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments that let a folder be created, for the building class methods."""
    return {"create": True, **kwargs} if isinstance(index, (str, os.PathLike)) else kwargs


def _records(nodes: Sequence[BaseNode]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    if isinstance(nodes, BaseNode):
        raise TypeError("insert_nodes takes a list of nodes, got a single node")
    ids, texts, metadatas = [], [], []
    for node in nodes:
        node_id, text, metadata = node_to_record(node)
        ids.append(node_id)
        texts.append(text)
        metadatas.append(metadata)
    return ids, texts, metadatas


def _transformations(
    transformations: Sequence[TransformComponent] | None,
) -> list[TransformComponent]:
    return list(transformations) if transformations is not None else Settings.transformations


def _ref_doc_filter(ref_doc_id: str) -> dict[str, Any]:
    """The filter matching a source document's nodes: the reserved ref-doc key."""
    if not isinstance(ref_doc_id, str) or not ref_doc_id:
        raise ValueError(f"ref_doc_id must be a non-empty string, got {ref_doc_id!r}")
    return {REF_DOC_KEY: ref_doc_id}
