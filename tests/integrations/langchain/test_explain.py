"""explain=True in the LangChain adapter: highlights and token matches in Document.metadata."""

from __future__ import annotations

import asyncio
import json

import pytest
from colbridge import Reranker
from langchain_colbridge import ColBERTRerank, ColBERTRetriever, ColBERTVectorStore
from langchain_core.documents import Document

QUERY = "neutron stars and radio pulses"
KEYS = {"highlights", "token_matches"}


def _check_explained(doc: Document, hit) -> None:
    """The document's explanation is the core hit's, as JSON values pointing into its text."""
    highlights = doc.metadata["highlights"]
    assert highlights == [list(span) for span in hit.highlights]
    assert highlights, doc.id
    for start, end in highlights:
        assert 0 <= start < end <= len(doc.page_content)
        assert doc.page_content[start:end].strip()
    matches = doc.metadata["token_matches"]
    assert [m["score"] for m in matches] == pytest.approx([m.score for m in hit.matches])
    assert [m["span"] for m in matches] == [None if m.span is None else list(m.span)
                                            for m in hit.matches]
    assert set(matches[0]) == {"query_token", "document_token", "span", "score"}
    json.dumps(doc.metadata)  # plain values only


def _hits(index, query: str = QUERY, k: int = 4, **kwargs):
    return {h.id: h for h in index.search(query, k=k, explain=True, **kwargs)}


# -- retriever --------------------------------------------------------------------------------
def test_retriever_explain_puts_highlights_in_metadata(sample_index):
    docs = ColBERTRetriever(index=sample_index, k=4, explain=True).invoke(QUERY)
    hits = _hits(sample_index)
    assert [d.id for d in docs] == list(hits)
    for doc in docs:
        _check_explained(doc, hits[doc.id])
    # the best hit's highlights cover words of the query
    top = docs[0]
    marked = " ".join(top.page_content[a:b].lower() for a, b in top.metadata["highlights"])
    assert any(word in marked for word in ("neutron", "star", "radio", "pulse"))


def test_retriever_without_explain_leaves_metadata_alone(sample_index):
    for doc in ColBERTRetriever(index=sample_index, k=4).invoke(QUERY):
        assert not KEYS & doc.metadata.keys()


def test_retriever_explain_per_call(sample_index):
    retriever = ColBERTRetriever(index=sample_index, k=3)
    explained = retriever.invoke(QUERY, explain=True)
    assert all(d.metadata.keys() >= KEYS for d in explained)
    assert not any(KEYS & d.metadata.keys() for d in retriever.invoke(QUERY))
    on = ColBERTRetriever(index=sample_index, k=3, explain=True)
    assert not any(KEYS & d.metadata.keys() for d in on.invoke(QUERY, explain=False))


def test_retriever_explain_async(sample_index):
    docs = asyncio.run(ColBERTRetriever(index=sample_index, k=4, explain=True).ainvoke(QUERY))
    hits = _hits(sample_index)
    for doc in docs:
        _check_explained(doc, hits[doc.id])


def test_retriever_explain_in_bm25_mode_is_empty(sample_index):
    docs = ColBERTRetriever(index=sample_index, k=3, mode="bm25", explain=True).invoke(QUERY)
    assert docs
    for doc in docs:
        assert doc.metadata["highlights"] == [] and doc.metadata["token_matches"] == []


# -- vector store -----------------------------------------------------------------------------
def test_vector_store_searches_take_explain(sample_index):
    store = ColBERTVectorStore(sample_index)
    hits = _hits(sample_index)
    for doc in store.similarity_search(QUERY, k=4, explain=True):
        _check_explained(doc, hits[doc.id])
    for doc, score in store.similarity_search_with_score(QUERY, k=4, explain=True):
        _check_explained(doc, hits[doc.id])
        assert score == pytest.approx(hits[doc.id].score)
    for doc, _ in store.similarity_search_with_relevance_scores(QUERY, k=4, explain=True):
        _check_explained(doc, hits[doc.id])
    query = sample_index.model.encode_query(QUERY)
    for doc in store.similarity_search_by_vector(query, k=4, explain=True):
        _check_explained(doc, hits[doc.id])
    wide = _hits(sample_index, k=8)
    for doc in store.max_marginal_relevance_search(QUERY, k=3, fetch_k=8, explain=True):
        _check_explained(doc, wide[doc.id])
    retriever = store.as_retriever(search_kwargs={"k": 4, "explain": True})
    for doc in retriever.invoke(QUERY):
        _check_explained(doc, hits[doc.id])


def test_vector_store_without_explain_leaves_metadata_alone(sample_index):
    store = ColBERTVectorStore(sample_index)
    docs = [*store.similarity_search(QUERY, k=4),
            *store.max_marginal_relevance_search(QUERY, k=3, fetch_k=8)]
    assert docs and not any(KEYS & d.metadata.keys() for d in docs)


def test_vector_store_explain_async(sample_index):
    store = ColBERTVectorStore(sample_index)
    hits = _hits(sample_index)
    wide = _hits(sample_index, k=8)

    async def run():
        return (await store.asimilarity_search(QUERY, k=4, explain=True),
                await store.amax_marginal_relevance_search(QUERY, k=3, fetch_k=8, explain=True))

    plain, diverse = asyncio.run(run())
    for doc in plain:
        _check_explained(doc, hits[doc.id])
    for doc in diverse:
        _check_explained(doc, wide[doc.id])


# -- document compressor ----------------------------------------------------------------------
@pytest.fixture
def candidates(sample_corpus) -> list[Document]:
    chosen = [d for d in sample_corpus if d["id"].startswith(("astro", "music"))][:6]
    return [Document(id=d["id"], page_content=d["text"], metadata=dict(d["metadata"]))
            for d in chosen]


def _check_reranked(docs: list[Document], expected) -> None:
    assert [d.id for d in docs] == [doc_id for doc_id, _ in expected]
    for doc, (_, result) in zip(docs, expected, strict=True):
        assert doc.metadata["highlights"] == [list(span) for span in result.highlights]
        assert doc.metadata["highlights"]
        for start, end in doc.metadata["highlights"]:
            assert 0 <= start < end <= len(doc.page_content)
        assert [m["score"] for m in doc.metadata["token_matches"]] == pytest.approx(
            [m.score for m in result.matches])


def _reranked(offline_model, candidates, top_n):
    """``(document id, RerankResult)`` pairs from core's explained rerank, best first."""
    results = Reranker(offline_model).rerank(
        QUERY, [d.page_content for d in candidates], top_n, explain=True)
    return [(candidates[r.index].id, r) for r in results]


def test_compressor_explain(offline_model, candidates):
    expected = _reranked(offline_model, candidates, 3)
    rerank = ColBERTRerank(model=offline_model, top_n=3, explain=True)
    _check_reranked(list(rerank.compress_documents(candidates, QUERY)), expected)
    _check_reranked(list(asyncio.run(rerank.acompress_documents(candidates, QUERY))), expected)
    assert all(not KEYS & d.metadata.keys() for d in candidates)  # inputs untouched


def test_compressor_without_explain_adds_score_only(offline_model, candidates):
    out = ColBERTRerank(model=offline_model, top_n=3).compress_documents(candidates, QUERY)
    assert out
    assert not any(KEYS & d.metadata.keys() for d in out)


def test_compressor_explain_blank_document_has_empty_explanation(offline_model, candidates):
    docs = [*candidates[:2], Document(id="blank", page_content="   ")]
    out = ColBERTRerank(model=offline_model, top_n=None, explain=True).compress_documents(
        docs, QUERY)
    assert out[-1].id == "blank"
    assert out[-1].metadata["highlights"] == [] and out[-1].metadata["token_matches"] == []
    assert all(d.metadata["highlights"] for d in out[:-1])
