"""Passages in the LangChain adapter: ``metadata["passage"]`` and ``return_passage``."""

from __future__ import annotations

import asyncio
import json

import pytest
from colbridge import Hit, InvalidInputError, TokenMatch
from langchain_colbridge import ColBERTRerank, ColBERTRetriever, ColBERTVectorStore
from langchain_colbridge._documents import hit_to_document
from langchain_core.documents import Document

QUERY = "neutron stars and radio pulses"
TEXT = "Bread rises. Pulsars are neutron stars that send radio pulses. Tea is steamed."
PASSAGE = (13, 62)  # "Pulsars are ... radio pulses."


def _hit(**fields) -> Hit:
    matches = [TokenMatch(0, 1, (0, 5), 0.5), TokenMatch(1, 4, (25, 32), 0.9),
               TokenMatch(2, 9, None, 0.1)]
    return Hit(id="d", score=1.5, normalized_score=0.5, text=TEXT, metadata={"topic": "x"},
               matches=matches, highlights=[(25, 38), (0, 5)], **fields)


def _within(whole: list[int] | None, start: int, end: int) -> list[int] | None:
    """``whole`` (offsets into the whole text) moved into the passage [start, end), or None."""
    if whole is None or whole[0] < start or whole[1] > end:
        return None
    return [whole[0] - start, whole[1] - start]


def _check_passage(doc: Document, hit: Hit, *, returned: bool, explained: bool) -> None:
    """``doc`` is ``hit`` as the adapter should give it (``hit.passage`` set)."""
    start, end = hit.passage
    assert doc.metadata["passage"] == [start, end]
    assert doc.page_content == (hit.text[start:end] if returned else hit.text)
    if not explained:
        assert "highlights" not in doc.metadata and "token_matches" not in doc.metadata
        return
    base, limit = (start, end) if returned else (0, len(hit.text))
    expected = [_within(list(span), base, limit) for span in hit.highlights]
    assert doc.metadata["highlights"] == [s for s in expected if s is not None]
    assert [m["span"] for m in doc.metadata["token_matches"]] == [
        None if m.span is None else _within(list(m.span), base, limit) for m in hit.matches]
    for a, b in doc.metadata["highlights"]:  # the marked words are the same words
        assert doc.page_content[a:b] == hit.text[a + base:b + base]
    json.dumps(doc.metadata)


# -- the translation, on constructed hits -----------------------------------------------------
def test_a_hit_s_passage_goes_in_metadata():
    doc = hit_to_document(_hit(passage=PASSAGE), with_score=False)
    assert doc.metadata == {"topic": "x", "passage": [13, 62]}
    assert doc.page_content == TEXT


def test_return_passage_cuts_the_text_and_moves_the_explanation_into_it():
    doc = hit_to_document(_hit(passage=PASSAGE), with_score=True, explain=True,
                          return_passage=True)
    assert doc.page_content == "Pulsars are neutron stars that send radio pulses."
    assert doc.metadata["passage"] == [13, 62]
    assert doc.metadata["highlights"] == [[12, 25]]  # (0, 5) lies before the passage: dropped
    assert doc.page_content[12:25] == "neutron stars"
    assert [m["span"] for m in doc.metadata["token_matches"]] == [None, [12, 19], None]
    assert doc.metadata["relevance_score"] == 0.5


def test_without_a_passage_nothing_changes():
    for return_passage in (False, True):
        doc = hit_to_document(_hit(), with_score=False, explain=True,
                              return_passage=return_passage)
        assert doc.page_content == TEXT and "passage" not in doc.metadata
        assert doc.metadata["highlights"] == [[25, 38], [0, 5]]


# -- retriever --------------------------------------------------------------------------------
def test_retriever_puts_the_passage_in_metadata(passage_index):
    hits = {h.id: h for h in passage_index.search(QUERY, k=4, explain=True)}
    docs = ColBERTRetriever(index=passage_index, k=4, explain=True).invoke(QUERY)
    assert [d.id for d in docs] == list(hits)
    assert all(h.passage is not None for h in hits.values())
    for doc in docs:
        _check_passage(doc, hits[doc.id], returned=False, explained=True)


def test_retriever_returns_passages_when_asked(passage_index):
    hits = {h.id: h for h in passage_index.search(QUERY, k=4, explain=True)}
    on = ColBERTRetriever(index=passage_index, k=4, explain=True, return_passage=True)
    off = ColBERTRetriever(index=passage_index, k=4, explain=True)
    for docs in (on.invoke(QUERY), off.invoke(QUERY, return_passage=True),
                 asyncio.run(on.ainvoke(QUERY))):
        assert [d.id for d in docs] == list(hits)
        for doc in docs:
            _check_passage(doc, hits[doc.id], returned=True, explained=True)
    for doc in on.invoke(QUERY, return_passage=False, explain=False):
        _check_passage(doc, hits[doc.id], returned=False, explained=False)


def test_retriever_on_whole_documents_is_unchanged_by_return_passage(sample_index):
    plain = ColBERTRetriever(index=sample_index, k=4).invoke(QUERY)
    cut = ColBERTRetriever(index=sample_index, k=4, return_passage=True).invoke(QUERY)
    assert cut == plain and all("passage" not in d.metadata for d in cut)


def test_retriever_refuses_a_return_passage_that_is_not_a_bool(sample_index):
    with pytest.raises(InvalidInputError, match="return_passage"):
        ColBERTRetriever(index=sample_index).invoke(QUERY, return_passage="yes")


# -- vector store -----------------------------------------------------------------------------
def test_vector_store_searches_take_return_passage(passage_index):
    store = ColBERTVectorStore(passage_index)
    hits = {h.id: h for h in passage_index.search(QUERY, k=8, explain=True)}
    searches = [
        store.similarity_search(QUERY, k=4, explain=True, return_passage=True),
        [d for d, _ in store.similarity_search_with_score(QUERY, k=4, explain=True,
                                                          return_passage=True)],
        [d for d, _ in store.similarity_search_with_relevance_scores(
            QUERY, k=4, explain=True, return_passage=True)],
        store.max_marginal_relevance_search(QUERY, k=3, fetch_k=8, explain=True,
                                            return_passage=True),
        asyncio.run(store.asimilarity_search(QUERY, k=4, explain=True, return_passage=True)),
        asyncio.run(store.amax_marginal_relevance_search(QUERY, k=3, fetch_k=8, explain=True,
                                                         return_passage=True)),
        store.as_retriever(search_kwargs={"k": 4, "explain": True,
                                          "return_passage": True}).invoke(QUERY),
    ]
    for docs in searches:
        assert docs
        for doc in docs:
            _check_passage(doc, hits[doc.id], returned=True, explained=True)
    for doc in store.similarity_search(QUERY, k=4):
        _check_passage(doc, hits[doc.id], returned=False, explained=False)


def test_vector_store_return_passage_on_whole_documents(sample_index):
    store = ColBERTVectorStore(sample_index)
    matrix = sample_index.model.encode_query(QUERY)
    assert (store.similarity_search_by_vector(matrix, k=3, return_passage=True)
            == store.similarity_search_by_vector(matrix, k=3))
    with pytest.raises(InvalidInputError, match="return_passage"):
        store.similarity_search(QUERY, k=3, return_passage=1)


# -- document compressor ----------------------------------------------------------------------
@pytest.fixture
def candidates(sample_corpus) -> list[Document]:
    chosen = [d for d in sample_corpus if d["id"].startswith(("astro", "music"))][:6]
    return [Document(id=d["id"], page_content=d["text"], metadata=dict(d["metadata"]))
            for d in chosen]


def test_compressor_puts_the_passage_in_metadata_and_returns_it_when_asked(
        offline_model, passage_reranker, candidates):
    results = passage_reranker.rerank(QUERY, [d.page_content for d in candidates], 3,
                                      explain=True)
    expected = {candidates[r.index].id: Hit(id=candidates[r.index].id, score=r.score,
                                            normalized_score=r.normalized_score,
                                            text=candidates[r.index].page_content,
                                            matches=r.matches, highlights=r.highlights,
                                            passage=r.passage) for r in results}
    for return_passage in (False, True):
        rerank = ColBERTRerank(model=offline_model, top_n=3, explain=True,
                               return_passage=return_passage)
        rerank._reranker = passage_reranker  # its results carry passages
        for docs in (rerank.compress_documents(candidates, QUERY),
                     asyncio.run(rerank.acompress_documents(candidates, QUERY))):
            assert [d.id for d in docs] == list(expected)
            for doc in docs:
                _check_passage(doc, expected[doc.id], returned=return_passage, explained=True)
                assert doc.metadata["relevance_score"] == pytest.approx(
                    expected[doc.id].normalized_score)
    assert all("passage" not in d.metadata for d in candidates)  # inputs untouched


def test_compressor_on_whole_documents_is_unchanged_by_return_passage(offline_model, candidates):
    plain = ColBERTRerank(model=offline_model, top_n=3).compress_documents(candidates, QUERY)
    cut = ColBERTRerank(model=offline_model, top_n=3, return_passage=True).compress_documents(
        candidates, QUERY)
    assert cut == plain and all("passage" not in d.metadata for d in cut)
