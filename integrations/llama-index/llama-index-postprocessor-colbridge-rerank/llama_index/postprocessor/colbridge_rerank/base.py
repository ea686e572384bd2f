"""``ColBERTRerank``: a LlamaIndex node postprocessor that reorders nodes by exact MaxSim."""

from __future__ import annotations

from typing import Any

import llama_index.core.instrumentation as instrument
from colbridge import ColBERTModel, Encoder, Reranker, RerankResult
from llama_index.core.bridge.pydantic import BaseModel, Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
from llama_index.retrievers.colbridge._explain import shaped_copy

dispatcher = instrument.get_dispatcher(__name__)

RETRIEVAL_SCORE_KEY = "retrieval_score"


class ColBERTRerank(BaseNodePostprocessor):
    """Rerank nodes with a ColBERT model: exact MaxSim between the query and each node.

    Args:
        top_n: how many nodes to return, best first.
        model: a ``colbridge.ColBERTModel`` (shared, e.g. with a ``ColBERTRetriever``) or a
            model name: hub id, local folder or ``"offline-minilm"`` (default:
            ``COLBRIDGE_MODEL`` or ``lightonai/answerai-colbert-small-v1``).
        device: where a model given by name runs (chosen automatically when omitted).
        batch_size: nodes per encoder call for a model given by name (default 32); all the
            nodes of one call are encoded together, in batches of this size.
        keep_retrieval_score: copy each node's previous score into its metadata under
            ``"retrieval_score"`` (also added to the node's excluded LLM and embedding
            metadata keys, so it does not leak into prompts).
        normalize_scores: set ``score / query_length`` in [0, 1] instead of raw MaxSim.
        explain: also say where each node matched: the returned node copies get
            ``metadata["highlights"]``, a list of ``[start, end]`` character offsets into the
            node's text (``node.text``), best first, and ``metadata["token_matches"]``, one dict
            per query token (``query_token``, ``document_token``, ``span``, ``score``); both
            keys are added to the copies' excluded LLM and embedding metadata keys, so they do
            not leak into prompts. See ``docs/llamaindex.md``.
        return_passage: for a node the reranker split into passages, return the best passage
            as the copy's text instead of the whole text (default False);
            ``start_char_idx``/``end_char_idx`` move to the passage and highlights point into
            it. Either way, such a copy's ``metadata["passage"]`` is the passage's
            ``[start, end]`` in the node's whole text (excluded from prompts too).

    The score set on each returned node is exact MaxSim — the sum over query tokens of the
    best cosine similarity among the node's tokens — raw unless ``normalize_scores``. The text
    scored is ``node.get_content(metadata_mode=MetadataMode.EMBED)``, as for LlamaIndex's own
    rerankers. The nodes passed in are not changed: new ``NodeWithScore`` objects are returned
    (with copied nodes when ``keep_retrieval_score`` or ``explain`` is set, or a node has a
    best passage).

    Example:
        >>> rerank = ColBERTRerank(top_n=3)  # doctest: +SKIP
        >>> engine = index.as_query_engine(  # doctest: +SKIP
        ...     similarity_top_k=20, node_postprocessors=[rerank]
        ... )
    """

    model: str = Field(description="Name of the ColBERT model.")
    top_n: int = Field(default=5, gt=0, description="Number of nodes to return.")
    device: str | None = Field(default=None, description="Device the model runs on.")
    batch_size: int = Field(default=32, gt=0, description="Texts per encoder call.")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the previous score in metadata['retrieval_score']."
    )
    normalize_scores: bool = Field(
        default=False, description="Set MaxSim / query length instead of raw MaxSim."
    )
    explain: bool = Field(
        default=False, description="Put highlights and token matches in node metadata."
    )
    return_passage: bool = Field(
        default=False, description="Return the best passage as the node's text."
    )
    _reranker: Reranker = PrivateAttr()

    def __init__(
        self,
        top_n: int = 5,
        model: Encoder | str | None = None,
        *,
        device: str | None = None,
        batch_size: int | None = None,
        keep_retrieval_score: bool = False,
        normalize_scores: bool = False,
        explain: bool = False,
        return_passage: bool = False,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if isinstance(model, Encoder):
            if device is not None or batch_size is not None:
                raise ValueError(
                    "device and batch_size configure a model given by name; set them on the "
                    "ColBERTModel you pass instead"
                )
            encoder = model
        else:
            if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
                raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
            encoder = ColBERTModel(model, device=device, batch_size=batch_size or 32)
        super().__init__(
            model=encoder.name,
            top_n=top_n,
            device=device,
            batch_size=encoder.batch_size,
            keep_retrieval_score=keep_retrieval_score,
            normalize_scores=normalize_scores,
            explain=explain,
            return_passage=return_passage,
            callback_manager=callback_manager or CallbackManager([]),
        )
        self._reranker = Reranker(encoder)

    @classmethod
    def class_name(cls) -> str:
        return "ColBERTRerank"

    # Pickle as a plain pydantic model. LlamaIndex's BaseComponent would silently drop whatever
    # fails to pickle and, on loading, rebuild the encoder from its name alone, which need not
    # be loadable (a model given as an object may carry any name).
    def __getstate__(self) -> dict[Any, Any]:
        return BaseModel.__getstate__(self)

    def __setstate__(self, state: dict[Any, Any]) -> None:
        BaseModel.__setstate__(self, state)

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        texts = self._start(nodes, query_bundle)
        assert query_bundle is not None  # checked by _start
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._payload(nodes, query_bundle)
        ) as event:
            results = (
                self._reranker.rerank(
                    query_bundle.query_str, texts, top_n=self.top_n, explain=self.explain
                )
                if texts
                else []
            )
            reranked = self._assemble(nodes, texts, results)
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    @dispatcher.span
    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        texts = self._start(nodes, query_bundle)
        assert query_bundle is not None  # checked by _start
        with self.callback_manager.event(
            CBEventType.RERANKING, payload=self._payload(nodes, query_bundle)
        ) as event:
            results = (
                await self._reranker.arerank(
                    query_bundle.query_str, texts, top_n=self.top_n, explain=self.explain
                )
                if texts
                else []
            )
            reranked = self._assemble(nodes, texts, results)
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    # -- shared by both twins -------------------------------------------------------------
    def _start(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> list[str]:
        """Check the inputs, announce the rerank, and return the texts to score."""
        if query_bundle is None:
            raise ValueError("Missing query bundle: ColBERTRerank needs the query to rerank by.")
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        empty = [n.node.node_id for n, text in zip(nodes, texts, strict=True) if not text.strip()]
        if empty:
            raise ValueError(
                f"ColBERTRerank scores text, but {len(empty)} node(s) have none: {empty[:5]}"
            )
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=self.top_n, model_name=self.model
            )
        )
        return texts

    def _payload(self, nodes: list[NodeWithScore], query_bundle: QueryBundle) -> dict[str, Any]:
        return {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.model,
            EventPayload.QUERY_STR: query_bundle.query_str,
            EventPayload.TOP_K: self.top_n,
        }

    def _assemble(
        self, nodes: list[NodeWithScore], texts: list[str], results: list[RerankResult]
    ) -> list[NodeWithScore]:
        """One new ``NodeWithScore`` per result, joined on ``RerankResult.index`` (``texts``
        are the texts that were scored)."""
        reranked = []
        for result in results:
            original = nodes[result.index]
            node = original.node
            if self.keep_retrieval_score:
                node = node.model_copy(
                    update={
                        "metadata": {**node.metadata, RETRIEVAL_SCORE_KEY: original.score},
                        "excluded_llm_metadata_keys": _with_key(node.excluded_llm_metadata_keys),
                        "excluded_embed_metadata_keys": _with_key(
                            node.excluded_embed_metadata_keys
                        ),
                    }
                )
            node = shaped_copy(node, result, texts[result.index], explain=self.explain,
                               return_passage=self.return_passage)
            score = result.normalized_score if self.normalize_scores else result.score
            reranked.append(NodeWithScore(node=node, score=score))
        return reranked


def _with_key(keys: list[str]) -> list[str]:
    return keys if RETRIEVAL_SCORE_KEY in keys else [*keys, RETRIEVAL_SCORE_KEY]
