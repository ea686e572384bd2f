"""Reranking caller-supplied documents with exact MaxSim."""

from __future__ import annotations

import numpy as np
import pytest

from colbridge import InvalidInputError, Reranker
from colbridge.scoring import maxsim

DOCS = [
    "Bananas are a yellow fruit rich in potassium.",
    "Paris is the capital and largest city of France.",
    "The Great Barrier Reef lies off the coast of Queensland.",
    "Berlin is the capital of Germany.",
]


def test_unambiguous_answer_comes_first(offline_model):
    results = Reranker(offline_model).rerank("What is the capital of France?", DOCS)
    assert results[0].index == 1 and results[0].text == DOCS[1]
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert sorted(r.index for r in results) == [0, 1, 2, 3]


def test_scores_are_exact_maxsim_joined_on_index(tiny_model):
    results = Reranker(tiny_model).rerank("capital city", DOCS)
    query = tiny_model.encode_query("capital city")
    vectors = tiny_model.encode_documents(DOCS)
    for result in results:
        assert result.score == pytest.approx(maxsim(query, vectors[result.index]), rel=1e-5)
        assert result.normalized_score == pytest.approx(
            max(result.score / tiny_model.query_length, 0.0), rel=1e-6)


def test_top_n_and_empty_input(tiny_model):
    reranker = Reranker(tiny_model)
    assert len(reranker.rerank("capital", DOCS, top_n=2)) == 2
    assert reranker.rerank("capital", []) == []


def test_pre_encoded_documents_mix_with_texts(tiny_model):
    reranker = Reranker(tiny_model)
    encoded = tiny_model.encode_documents([DOCS[2]])[0]
    mixed = reranker.rerank("reef", [DOCS[0], encoded, DOCS[3]])
    plain = reranker.rerank("reef", [DOCS[0], DOCS[2], DOCS[3]])
    assert [(r.index, round(r.score, 4)) for r in mixed] == [(r.index, round(r.score, 4)) for r in plain]
    assert next(r for r in mixed if r.index == 1).text is None


def test_cache_encodes_each_document_once(tiny_model, monkeypatch):
    reranker = Reranker(tiny_model, cache_size=10)
    encoded: list[str] = []
    original = tiny_model.encode_documents

    def spy(texts, **kwargs):
        encoded.extend(texts)
        return original(texts, **kwargs)

    monkeypatch.setattr(tiny_model, "encode_documents", spy)
    first = reranker.rerank("capital", DOCS)
    second = reranker.rerank("city", DOCS + [DOCS[0]])
    assert encoded == DOCS  # the second call hit the cache for every text
    assert {r.index for r in second} == {0, 1, 2, 3, 4}
    assert first and len(reranker._cache) == 4


def test_cache_is_bounded(tiny_model):
    reranker = Reranker(tiny_model, cache_size=2)
    reranker.rerank("q", DOCS)
    assert len(reranker._cache) == 2


@pytest.mark.parametrize("documents", ["a string", [""], [None], [np.zeros((0, 16))], [3]])
def test_bad_documents(tiny_model, documents):
    with pytest.raises(InvalidInputError):
        Reranker(tiny_model).rerank("query", documents)


def test_bad_top_n_and_query(tiny_model):
    reranker = Reranker(tiny_model)
    with pytest.raises(InvalidInputError):
        reranker.rerank("query", DOCS, top_n=0)
    with pytest.raises(InvalidInputError):
        reranker.rerank("", DOCS)


def test_wrong_dimension_documents(tiny_model):
    with pytest.raises(InvalidInputError, match="16-d"):
        Reranker(tiny_model).rerank("query", [np.ones((3, 8), dtype=np.float32)])


async def test_async_rerank_matches_sync(tiny_model):
    reranker = Reranker(tiny_model)
    sync = reranker.rerank("capital of France", DOCS, top_n=3)
    async_ = await reranker.arerank("capital of France", DOCS, top_n=3)
    assert [(r.index, round(r.score, 5)) for r in async_] == [(r.index, round(r.score, 5)) for r in sync]


def test_pre_encoded_documents_of_any_scale_are_normalised_not_zeroed(tiny_model):
    """Squares of float32 values past ~1.8e19 overflow float32: the norm must not."""
    vectors = tiny_model.encode_documents([DOCS[1]])[0]
    scaled = [vectors, vectors * 1e20, vectors * 1e-20]
    results = Reranker(tiny_model).rerank("capital city", scaled)
    assert results[0].score > 0
    assert [r.score for r in results] == pytest.approx([results[0].score] * 3, rel=1e-5)


# -- explain=True ---------------------------------------------------------------------------------
async def test_explained_contributions_add_up_and_spans_only_for_texts(tiny_model):
    reranker = Reranker(tiny_model)
    plain = reranker.rerank("capital city", DOCS)
    mixed = [DOCS[0], tiny_model.encode_documents([DOCS[1]])[0], DOCS[2], DOCS[3]]
    for results in (reranker.rerank("capital city", mixed, explain=True),
                    await reranker.arerank("capital city", mixed, explain=True)):
        assert [r.index for r in results] == [r.index for r in plain]
        for result in results:
            assert len(result.matches) == tiny_model.query_length
            assert abs(sum(m.score for m in result.matches) - result.score) < 1e-4
            if result.index == 1:  # given as vectors: no text to point into
                assert all(m.span is None for m in result.matches) and result.highlights == []
            else:
                assert result.highlights
                assert all(result.text[a:b].strip() for a, b in result.highlights)
    assert all(r.matches is None and r.highlights == [] for r in plain)


def test_explained_rerank_highlights_the_answer(offline_model):
    (best,) = Reranker(offline_model).rerank("What is the capital of France?", DOCS, top_n=1,
                                             explain=True)
    phrase_start = DOCS[1].index("the capital and largest city of France")
    phrase_end = phrase_start + len("the capital and largest city of France")
    assert best.index == 1
    start, end = best.highlights[0]
    assert phrase_start <= start and end <= phrase_end
    assert any("capital" in DOCS[1][a:b] for a, b in best.highlights)


def test_rerank_explain_must_be_a_bool(tiny_model):
    with pytest.raises(InvalidInputError, match="explain must be True or False"):
        Reranker(tiny_model).rerank("q", DOCS, explain="yes")
