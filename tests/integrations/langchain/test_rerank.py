"""ColBERTRerank: ordering, copies, ids, empty input, async, and use behind a first stage."""

from __future__ import annotations

import copy

import pytest
from colbridge import Reranker
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_colbridge import ColBERTRerank, ColBERTRetriever
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda


@pytest.fixture(scope="module")
def corpus_documents(sample_corpus) -> list[Document]:
    return [Document(id=d["id"], page_content=d["text"], metadata=d["metadata"])
            for d in sample_corpus]


@pytest.fixture
def bm25(sample_index) -> ColBERTRetriever:
    """A keyword first stage: colbridge's own BM25 over the sample corpus."""
    return ColBERTRetriever(index=sample_index, k=6, mode="bm25")


def _candidates(corpus_documents, answer_id: str) -> list[Document]:
    """Five passages from other topics, then the answer last (so reranking has to move it)."""
    answer = next(d for d in corpus_documents if d.id == answer_id)
    prefix = answer_id.split("-")[0]
    others = [d for d in corpus_documents if not d.id.startswith(prefix)][::13][:5]
    return [*others, answer]


def test_the_answer_moves_to_the_top(offline_model, corpus_documents, demo_queries):
    rerank = ColBERTRerank(model=offline_model, top_n=None)
    reference = Reranker(offline_model, cache_size=64)
    for q in demo_queries[::2]:
        docs = _candidates(corpus_documents, q["expected_id"])
        out = rerank.compress_documents(docs, q["query"])
        assert out[0].id == q["expected_id"], q["query"]
        # Same order and scores as the core reranker: the adapter only translates.
        expected = reference.rerank(q["query"], [d.page_content for d in docs])
        assert [d.id for d in out] == [docs[r.index].id for r in expected]
        assert [d.metadata["relevance_score"] for d in out] == pytest.approx(
            [r.normalized_score for r in expected])


def test_returns_annotated_copies_and_leaves_inputs_alone(offline_model, corpus_documents):
    docs = _candidates(corpus_documents, "astro-007")
    docs[0] = docs[0].model_copy(update={"metadata": {**docs[0].metadata, "relevance_score": -1}})
    before = copy.deepcopy(docs)
    out = ColBERTRerank(model=offline_model, top_n=4).compress_documents(
        docs, "Why do we only ever see one side of the Moon?")
    assert docs == before
    assert len(out) == 4
    originals = {d.id: d for d in docs}
    for doc in out:
        source = originals[doc.id]
        assert doc is not source and doc.metadata is not source.metadata
        assert doc.page_content == source.page_content
        assert {k: v for k, v in doc.metadata.items() if k != "relevance_score"} == {
            k: v for k, v in source.metadata.items() if k != "relevance_score"}
        assert 0.0 <= doc.metadata["relevance_score"] <= 1.0
    scores = [d.metadata["relevance_score"] for d in out]
    assert scores == sorted(scores, reverse=True)


def test_documents_without_ids_keep_none(tiny_model):
    docs = [Document(page_content="first text"), Document(page_content="second text")]
    out = ColBERTRerank(model=tiny_model).compress_documents(docs, "text")
    assert sorted(d.page_content for d in out) == ["first text", "second text"]
    assert all(d.id is None for d in out)


def test_top_n_default_none_and_larger_than_input(tiny_model, corpus_documents):
    docs = corpus_documents[:6]
    assert ColBERTRerank.model_fields["top_n"].default == 3
    assert len(ColBERTRerank(model=tiny_model).compress_documents(docs, "stars")) == 3
    everything = ColBERTRerank(model=tiny_model, top_n=None).compress_documents(docs, "stars")
    assert sorted(d.id for d in everything) == sorted(d.id for d in docs)
    assert len(ColBERTRerank(model=tiny_model, top_n=50).compress_documents(docs, "stars")) == 6


async def test_empty_input_gives_empty_output_without_loading_the_model(tiny_model_path):
    rerank = ColBERTRerank(model=tiny_model_path)
    assert list(rerank.compress_documents([], "anything")) == []
    assert list(await rerank.acompress_documents([], "anything")) == []
    assert not rerank._reranker.model.loaded


def test_blank_documents_score_zero_and_come_last(tiny_model):
    docs = [Document(page_content="  ", id="blank"), Document(page_content="real text", id="a"),
            Document(page_content="more real text", id="b")]
    out = ColBERTRerank(model=tiny_model, top_n=None).compress_documents(docs, "text")
    assert [d.id for d in out][-1] == "blank"
    assert out[-1].metadata["relevance_score"] == 0.0
    kept = ColBERTRerank(model=tiny_model, top_n=2).compress_documents(docs, "text")
    assert {d.id for d in kept} == {"a", "b"}


def test_model_options(tiny_model, tiny_model_path):
    by_path = ColBERTRerank(model=tiny_model_path, batch_size=2, top_n=None)
    docs = [Document(page_content=f"passage number {i}", id=str(i)) for i in range(5)]
    from_path = by_path.compress_documents(docs, "passage")
    from_object = ColBERTRerank(model=tiny_model, top_n=None).compress_documents(docs, "passage")
    assert [d.id for d in from_path] == [d.id for d in from_object]
    with pytest.raises(ValueError, match="batch_size"):
        ColBERTRerank(model=tiny_model, batch_size=tiny_model.batch_size + 1)
    with pytest.raises(ValueError):
        ColBERTRerank(model=tiny_model, top_n=0)


async def test_async_matches_sync(offline_model, corpus_documents, demo_queries):
    rerank = ColBERTRerank(model=offline_model, top_n=4)
    for q in demo_queries[:3]:
        docs = _candidates(corpus_documents, q["expected_id"])
        assert await rerank.acompress_documents(docs, q["query"]) == list(
            rerank.compress_documents(docs, q["query"]))


async def test_acompress_does_not_block_the_event_loop(slow_model, measure_loop, corpus_documents):
    rerank = ColBERTRerank(model=slow_model, top_n=2)
    docs = corpus_documents[:5]
    out, stall, beats = await measure_loop(rerank.acompress_documents(docs, "a question"))
    assert len(out) == 2
    assert stall < slow_model.delay / 2
    assert beats >= 10


def test_contextual_compression_over_bm25_reranks(offline_model, bm25, demo_queries):
    pipeline = ContextualCompressionRetriever(
        base_compressor=ColBERTRerank(model=offline_model, top_n=3), base_retriever=bm25)
    reference = Reranker(offline_model)
    for q in demo_queries:
        first_stage = bm25.invoke(q["query"])
        reranked = pipeline.invoke(q["query"])
        assert len(reranked) == 3
        assert {d.id for d in reranked} <= {d.id for d in first_stage}  # reranks, never adds
        expected = reference.rerank(q["query"], [d.page_content for d in first_stage], top_n=3)
        assert [d.id for d in reranked] == [first_stage[r.index].id for r in expected]
        # ColBERT's score replaces the first stage's BM25 one, on copies
        assert [d.metadata["relevance_score"] for d in reranked] == pytest.approx(
            [r.normalized_score for r in expected])
        assert [d.metadata for d in bm25.invoke(q["query"])] == [d.metadata for d in first_stage]
        if q["expected_id"] in {d.id for d in first_stage}:
            assert reranked[0].id == q["expected_id"], q["query"]


@pytest.fixture
def weak_first_stage(corpus_documents, demo_queries) -> RunnableLambda:
    """A first stage that always puts the answer last among six candidates."""
    answers = {q["query"]: q["expected_id"] for q in demo_queries}
    return RunnableLambda(lambda query: _candidates(corpus_documents, answers[query]))


async def test_contextual_compression_async_and_in_an_lcel_chain(
    offline_model, weak_first_stage, demo_queries
):
    pipeline = ContextualCompressionRetriever(
        base_compressor=ColBERTRerank(model=offline_model, top_n=2),
        base_retriever=weak_first_stage)
    chain = pipeline | RunnableLambda(lambda docs: [d.id for d in docs])
    q = next(q for q in demo_queries if q["expected_id"] == "bio-001")
    assert weak_first_stage.invoke(q["query"])[-1].id == "bio-001"
    assert chain.invoke(q["query"])[0] == "bio-001"  # moved up from last place
    assert (await chain.ainvoke(q["query"]))[0] == "bio-001"
    assert await chain.abatch([q["query"]] * 2) == [chain.invoke(q["query"])] * 2
