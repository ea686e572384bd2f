"""``ColBERTVectorStore``: a LangChain vector store backed by a colbridge index."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from colbridge import (
    BaseIndex,
    ColBERTModel,
    EmbeddedIndex,
    Hit,
    InvalidInputError,
    StoredDocument,
    mmr,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from typing_extensions import Self

from ._documents import check_return_passage, hit_to_document, stored_to_document


class ColBERTVectorStore(VectorStore):
    """A LangChain vector store whose documents are searched by ColBERT late interaction (and,
    on the embedded index, also by BM25 or both fused: see *Search modes* below).

    There is no ``Embeddings`` object: the index's ColBERT model encodes every text into one
    vector per token, and documents are scored with MaxSim (``embeddings`` is None). Build a
    store with :meth:`from_path`, :meth:`from_texts` / :meth:`from_documents` (which take a
    model), or around an index you opened yourself.

    Scores (in the default ``colbert`` mode):

    * ``similarity_search_with_score``: raw MaxSim, higher is better (the sum over query
      tokens of each one's best cosine similarity, so it grows with the query length).
    * ``similarity_search_with_relevance_scores``: MaxSim normalised to [0, 1] (raw score over
      the query's token count, clipped at 0), the same on every index, so usable as a
      ``score_threshold`` (``as_retriever(search_type="similarity_score_threshold")``).

    Returned documents carry their ``id`` and stored metadata, never a score: scores come
    separately, as LangChain's vector-store contract expects.

    Search methods take ``filter`` (colbridge's metadata filter syntax, e.g.
    ``{"year": {"$gte": 1900}}``) and the index's search-breadth options as keyword
    arguments (``token_k``, ``ef``, ``max_candidates``, ``exact_threshold`` for the embedded
    index). Every method has a native async twin over colbridge's async API.

    Search modes: every search method (``similarity_search*``, the MMR searches and their
    async twins, hence ``as_retriever(search_kwargs={"mode": ...})`` too) takes ``mode`` and
    ``hybrid_weight`` keyword arguments, passed on to ``index.search``:

    * ``mode="colbert"`` (default): MaxSim, scored as above;
    * ``mode="bm25"``: BM25 over the stored texts, the query is not encoded; only documents
      sharing a term with the query come back. ``..._with_score`` gives the raw BM25 score,
      ``..._with_relevance_scores`` the BM25 score over the best hit's (so the first is 1.0:
      a ``score_threshold`` is relative to the best hit here);
    * ``mode="hybrid"``: candidates from both rankings, each scored both ways, both scores
      min-max normalised over the candidates and mixed, ``hybrid_weight`` (default 0.5) being
      ColBERT's share. Both score kinds are that fused score, in [0, 1].

    ``mode`` may also be a ``colbridge.SearchMode``. ``bm25`` and ``hybrid`` need an index that
    supports them (``index.search_modes``: the embedded index and ``QdrantIndex`` do; an index
    that lacks a mode raises ``colbridge.InvalidInputError``, as for an unknown mode or a weight
    outside [0, 1]). See ``docs/hybrid.md``.

    Where it matched: every search method also takes ``explain=True`` (so does
    ``as_retriever(search_kwargs={"explain": True})``). Each returned document then carries
    ``metadata["highlights"]``, a list of ``[start, end]`` character offsets into
    ``page_content``, best first, and ``metadata["token_matches"]``, one dict per query token
    (``query_token``, ``document_token``, ``span``, ``score``); both are empty in ``bm25``
    mode. Without it, metadata is the stored metadata only. See ``docs/langchain.md``.

    Passages: a document the index split into passages comes back with
    ``metadata["passage"]``, the best passage's ``[start, end]`` in the whole stored text. With
    the search keyword ``return_passage=True`` its ``page_content`` is that passage instead of
    the whole text (highlights and match spans then point into the passage).

    Args:
        index: the colbridge index holding the documents (kept as ``store.index``; close it
            with ``store.index.close()`` when done).

    Example:
        ```python
        from langchain_colbridge import ColBERTVectorStore

        store = ColBERTVectorStore.from_texts(
            ["ColBERT keeps one vector per token.", "BM25 counts words."],
            model="lightonai/answerai-colbert-small-v1",
            path="my-index",
        )
        store.similarity_search("token vectors", k=1)
        ```
    """

    def __init__(self, index: BaseIndex) -> None:
        if not isinstance(index, BaseIndex):
            raise TypeError(
                f"ColBERTVectorStore needs a colbridge index, got {type(index).__name__}; use "
                "ColBERTVectorStore.from_path(path, model=...) to open one"
            )
        self.index = index

    _temporary: _TemporaryFolder | None = None  # set when the index lives in a scratch folder

    # -- copying ------------------------------------------------------------------------------
    def __copy__(self) -> Self:
        """A new store on the same index (a colbridge index is a handle on its folder)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self.__copy__()

    def __getstate__(self) -> dict[str, Any]:
        """A pickle carries the index, which reopens its folder when unpickled; a store in a
        temporary folder (``from_texts`` without ``path``) refuses, as the folder goes away."""
        if self._temporary is not None:
            raise TypeError(
                "cannot pickle a ColBERTVectorStore whose index lives in a temporary folder "
                f"({self._temporary.path}), which is deleted once the store is garbage-collected: "
                "build it with from_texts(..., path=...) or from_path(path) to pickle it"
            )
        return self.__dict__.copy()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        model: ColBERTModel | str | None = None,
        *,
        create: bool = False,
        **index_kwargs: Any,
    ) -> Self:
        """Open the index in the folder ``path``.

        Args:
            path: the index folder.
            model: a ``ColBERTModel`` or model name. For an existing index, by default the
                model that built it; for a new one, ``COLBRIDGE_MODEL`` or colbridge's default.
            create: create an empty index when the folder is missing or empty. Without it
                such a folder (a mistyped path, say) raises ``colbridge.IndexNotFoundError``
                here and nothing is created.
            **index_kwargs: other ``colbridge.EmbeddedIndex`` options (``search_options``...).
        """
        if create:
            return cls(EmbeddedIndex.open_or_create(path, model, **index_kwargs))
        return cls(EmbeddedIndex(path, model=model, create=False, **index_kwargs))

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | ColBERTModel | str | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        model: ColBERTModel | str | None = None,
        path: str | os.PathLike[str] | None = None,
        **index_kwargs: Any,
    ) -> Self:
        """Create (or open) an index, add ``texts`` to it and return the store.

        Args:
            texts: the texts to add.
            embedding: accepted in place of ``model`` (LangChain passes its second argument
                positionally); an ``Embeddings`` object is refused, since ColBERT needs token
                vectors that it cannot produce.
            metadatas: one metadata dict per text.
            ids: one id per text (an id that already exists is replaced).
            model: a ``ColBERTModel`` or model name (see :meth:`from_path`).
            path: the index folder. When omitted the index lives in a temporary folder that
                is deleted when the store is garbage-collected or the interpreter exits.
            **index_kwargs: other ``colbridge.EmbeddedIndex`` options.
        """
        store = cls._create(embedding, model, path, index_kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | ColBERTModel | str | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        model: ColBERTModel | str | None = None,
        path: str | os.PathLike[str] | None = None,
        **index_kwargs: Any,
    ) -> Self:
        """Async :meth:`from_texts` (opening the index, which may load the model, runs off the
        event loop)."""
        store = await asyncio.to_thread(cls._create, embedding, model, path, index_kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    def from_documents(
        cls,
        documents: list[Document],
        embedding: Embeddings | ColBERTModel | str | None = None,
        **kwargs: Any,
    ) -> Self:
        """:meth:`from_texts` for ``Document`` objects; ``Document.id`` is used as the id."""
        texts, metadatas, ids = _unpack(documents, kwargs.pop("ids", None))
        return cls.from_texts(texts, embedding, metadatas, ids=ids, **kwargs)

    @classmethod
    async def afrom_documents(
        cls,
        documents: list[Document],
        embedding: Embeddings | ColBERTModel | str | None = None,
        **kwargs: Any,
    ) -> Self:
        """Async :meth:`from_documents`."""
        texts, metadatas, ids = _unpack(documents, kwargs.pop("ids", None))
        return await cls.afrom_texts(texts, embedding, metadatas, ids=ids, **kwargs)

    @classmethod
    def _create(
        cls,
        embedding: Any,
        model: ColBERTModel | str | None,
        path: str | os.PathLike[str] | None,
        index_kwargs: dict[str, Any],
    ) -> Self:
        if isinstance(embedding, Embeddings):
            raise TypeError(
                "ColBERTVectorStore encodes with a ColBERT model (one vector per token), which an "
                f"Embeddings object ({type(embedding).__name__}) cannot provide: pass model= "
                "(a colbridge.ColBERTModel or a model name) instead"
            )
        if embedding is not None:
            if model is not None:
                raise TypeError("pass the ColBERT model once: as `model` or as `embedding`")
            model = embedding
        index_kwargs = {**index_kwargs, "create": True}
        if path is not None:
            return cls.from_path(path, model, **index_kwargs)
        scratch = tempfile.mkdtemp(prefix="colbridge-langchain-")
        try:
            store = cls.from_path(os.path.join(scratch, "index"), model, **index_kwargs)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        store._temporary = _TemporaryFolder(scratch, store.index)
        return store

    # -- writes -------------------------------------------------------------------------------
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Encode and store ``texts``; returns their ids.

        An id that already exists is replaced (upsert). Missing ids (None) are generated.
        ``kwargs`` may hold ``pool_factor`` (colbridge's token pooling).
        """
        texts = list(texts)
        return self.index.add(texts, _fill_ids(ids, len(texts)), metadatas, **kwargs)

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async :meth:`add_texts`."""
        texts = list(texts)
        return await self.index.aadd(texts, _fill_ids(ids, len(texts)), metadatas, **kwargs)

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Store ``documents``; ``Document.id`` is the id (unless ``ids=`` is given), and an id
        that already exists is replaced. The documents themselves are not modified."""
        texts, metadatas, ids = _unpack(documents, kwargs.pop("ids", None))
        return self.add_texts(texts, metadatas, ids=ids, **kwargs)

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Async :meth:`add_documents`."""
        texts, metadatas, ids = _unpack(documents, kwargs.pop("ids", None))
        return await self.aadd_texts(texts, metadatas, ids=ids, **kwargs)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id; unknown ids are ignored. Returns True.

        ``ids=None`` (LangChain's "delete everything") is refused: delete the index folder
        instead.
        """
        self.index.delete(_ids_to_delete(ids), missing_ok=True)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Async :meth:`delete`."""
        await self.index.adelete(_ids_to_delete(ids), missing_ok=True)
        return True

    # -- reads --------------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents with these ids, in the order asked; unknown ids are skipped."""
        stored = self.index.get(_unique(ids), missing_ok=True)
        return [stored_to_document(s) for s in stored]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Async :meth:`get_by_ids`."""
        stored = await self.index.aget(_unique(ids), missing_ok=True)
        return [stored_to_document(s) for s in stored]

    def similarity_search(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` best documents for ``query``, best first: by MaxSim, or as ``mode=`` says
        (``"bm25"``, ``"hybrid"`` with ``hybrid_weight=``; see the class docstring)."""
        hits = self.index.search(query, k, filter=filter, **_searching(kwargs))
        return _documents(hits, kwargs)

    async def asimilarity_search(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[Document]:
        """Async :meth:`similarity_search`."""
        hits = await self.index.asearch(query, k, filter=filter, **_searching(kwargs))
        return _documents(hits, kwargs)

    def similarity_search_with_score(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Like :meth:`similarity_search`, with each document's raw score: MaxSim, or in
        ``mode="bm25"`` the BM25 score, in ``mode="hybrid"`` the fused score in [0, 1]."""
        hits = self.index.search(query, k, filter=filter, **_searching(kwargs))
        return [(d, h.score) for d, h in zip(_documents(hits, kwargs), hits, strict=True)]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, *, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score`."""
        hits = await self.index.asearch(query, k, filter=filter, **_searching(kwargs))
        return [(d, h.score) for d, h in zip(_documents(hits, kwargs), hits, strict=True)]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        # Behind similarity_search_with_relevance_scores, which applies score_threshold.
        hits = self.index.search(query, k, **_searching(kwargs))
        documents = _documents(hits, kwargs)
        return [(d, h.normalized_score) for d, h in zip(documents, hits, strict=True)]

    async def _asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        hits = await self.index.asearch(query, k, **_searching(kwargs))
        documents = _documents(hits, kwargs)
        return [(d, h.normalized_score) for d, h in zip(documents, hits, strict=True)]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        *,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """``k`` documents that are relevant to ``query`` and different from each other.

        The ``fetch_k`` best documents by MaxSim are candidates. Relevance is their normalised
        MaxSim; the similarity between two candidates is MaxSim between their stored token
        vectors (normalised, averaged over both directions: ``colbridge.mmr``), so no
        single-vector embedding is involved and nothing is encoded again.

        ``mode="bm25"`` or ``"hybrid"`` (keyword arguments, with ``hybrid_weight``) changes how
        candidates are found and what their relevance is (the mode's normalised score, see the
        class docstring); the similarity between candidates stays ColBERT's.

        Args:
            query: the query text.
            k: how many documents to return.
            fetch_k: how many candidates to choose from.
            lambda_mult: 1 ranks by relevance only, 0 by diversity only (default 0.5).
            filter: a metadata filter.
            **kwargs: ``mode``, ``hybrid_weight`` and the index's search options.
        """
        hits = self.index.search(query, max(fetch_k, k), filter=filter, **_searching(kwargs))
        return self._diverse(hits, k, lambda_mult, kwargs)

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        *,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async :meth:`max_marginal_relevance_search`."""
        hits = await self.index.asearch(query, max(fetch_k, k), filter=filter,
                                        **_searching(kwargs))
        return await self._adiverse(hits, k, lambda_mult, kwargs)

    # -- searches by an encoded query ---------------------------------------------------------
    def similarity_search_by_vector(
        self,
        embedding: Any,
        k: int = 4,
        *,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """:meth:`similarity_search` for a query encoded already.

        A ColBERT query is one vector per token, so ``embedding`` is a ``(query_tokens, dim)``
        matrix (an array or nested lists), as ``store.index.model.encode_query(text)`` gives.
        A single vector, such as an ``Embeddings`` object's output, raises
        ``colbridge.InvalidInputError``. ``mode="bm25"`` and ``"hybrid"`` also need the query's
        text, as ``query_text=``.
        """
        hits = self.index.search_encoded(_query_matrix(embedding), k, filter=filter,
                                         **_searching(kwargs))
        return _documents(hits, kwargs)

    async def asimilarity_search_by_vector(
        self,
        embedding: Any,
        k: int = 4,
        *,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async :meth:`similarity_search_by_vector`."""
        matrix = _query_matrix(embedding)
        hits = await self.index.asearch_encoded(matrix, k, filter=filter, **_searching(kwargs))
        return _documents(hits, kwargs)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: Any,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        *,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """:meth:`max_marginal_relevance_search` for a query encoded already, a
        ``(query_tokens, dim)`` matrix (see :meth:`similarity_search_by_vector`)."""
        matrix = _query_matrix(embedding)
        hits = self.index.search_encoded(matrix, max(fetch_k, k), filter=filter,
                                         **_searching(kwargs))
        return self._diverse(hits, k, lambda_mult, kwargs)

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: Any,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        *,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async :meth:`max_marginal_relevance_search_by_vector`."""
        matrix = _query_matrix(embedding)
        hits = await self.index.asearch_encoded(matrix, max(fetch_k, k), filter=filter,
                                                **_searching(kwargs))
        return await self._adiverse(hits, k, lambda_mult, kwargs)

    def _diverse(self, hits: list[Hit], k: int, lambda_mult: float, kwargs: dict[str, Any]
                 ) -> list[Document]:
        """MMR over the candidates ``hits``, with their stored token vectors."""
        stored = self.index.get([h.id for h in hits], missing_ok=True, with_vectors=True)
        return _pick(hits, stored, k, lambda_mult, kwargs)

    async def _adiverse(self, hits: list[Hit], k: int, lambda_mult: float,
                        kwargs: dict[str, Any]) -> list[Document]:
        stored = await self.index.aget([h.id for h in hits], missing_ok=True, with_vectors=True)
        return await asyncio.to_thread(_pick, hits, stored, k, lambda_mult, kwargs)

    def __repr__(self) -> str:
        return f"ColBERTVectorStore({self.index!r})"


# -- helpers ----------------------------------------------------------------------------------
def _pick(hits: list[Hit], stored: list[StoredDocument], k: int, lambda_mult: float,
          kwargs: dict[str, Any]) -> list[Document]:
    """The MMR choice among ``hits`` (those deleted since the search, absent from ``stored``,
    are left out)."""
    vectors = {s.id: s.vectors for s in stored}
    kept = [h for h in hits if h.id in vectors]
    chosen = mmr([h.normalized_score for h in kept], [vectors[h.id] for h in kept], k,
                 lambda_mult=lambda_mult)
    return _documents([kept[i] for i in chosen], kwargs)


def _documents(hits: list[Hit], kwargs: dict[str, Any]) -> list[Document]:
    """The hits as documents without scores, explained and cut to their passages if the
    search's ``kwargs`` asked."""
    explain = kwargs.get("explain") is True  # the index checks the value
    return_passage = kwargs.get("return_passage", False)
    return [hit_to_document(h, with_score=False, explain=explain, return_passage=return_passage)
            for h in hits]


def _searching(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A search's keyword arguments for the index: all but ``return_passage`` (checked here),
    which only shapes the returned documents."""
    check_return_passage(kwargs.get("return_passage", False))
    return {key: value for key, value in kwargs.items() if key != "return_passage"}


def _query_matrix(embedding: Any) -> np.ndarray:
    """The query's token vectors as a float32 matrix; a single vector is refused."""
    try:
        matrix = np.asarray(embedding, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(
            f"the query embedding must be a (tokens, dim) matrix of numbers: {e}"
        ) from e
    if matrix.ndim == 1:
        raise InvalidInputError(
            f"ColBERT scores one vector per query token, a (tokens, dim) matrix, but got a single "
            f"vector of {len(matrix)} numbers: pass store.index.model.encode_query(text), or "
            "search by text with similarity_search"
        )
    return matrix


def _unpack(
    documents: Sequence[Document], ids: Sequence[str | None] | None
) -> tuple[list[str], list[dict[str, Any]], list[str] | None]:
    """Texts, metadatas and ids of documents; explicit ``ids`` win over ``Document.id``."""
    if ids is None and any(doc.id for doc in documents):
        ids = [doc.id for doc in documents]
    texts = [doc.page_content for doc in documents]
    metadatas = [doc.metadata for doc in documents]
    return texts, metadatas, _fill_ids(ids, len(texts))


def _fill_ids(ids: Sequence[str | None] | None, count: int) -> list[str] | None:
    """The ids with a fresh one for each None or empty entry (None stays None)."""
    if ids is None:
        return None
    if len(ids) != count:
        raise ValueError(f"got {len(ids)} ids for {count} texts")
    return [doc_id or uuid.uuid4().hex for doc_id in ids]


def _ids_to_delete(ids: Sequence[str] | None) -> list[str]:
    if ids is None:
        raise ValueError(
            "ColBERTVectorStore.delete needs the ids to delete; to drop everything, remove the "
            "index folder"
        )
    return _unique(ids)


def _unique(ids: Sequence[str]) -> list[str]:
    """Ids without duplicates or empty strings, in first-seen order.

    colbridge refuses repeated and empty ids; here they are simply not found, as LangChain's
    ``get_by_ids`` and ``delete`` expect.
    """
    if isinstance(ids, str):
        raise TypeError("ids must be a list of strings, not one string")
    return [doc_id for doc_id in dict.fromkeys(ids) if doc_id]


class _TemporaryFolder:
    """The scratch folder of a store built without ``path``, shared by the store's copies: once
    none of them holds it, the index is closed and the folder deleted."""

    def __init__(self, path: str, index: BaseIndex) -> None:
        self.path = path
        weakref.finalize(self, _close_and_remove, index, path)


def _close_and_remove(index: BaseIndex, folder: str) -> None:
    try:
        index.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
