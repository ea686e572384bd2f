"""Passages in the LlamaIndex adapters: ``metadata["passage"]`` (offsets into the node's own
text, kept out of prompts) and ``return_passage`` (the passage as the node's text)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from colbridge import EmbeddedIndex, InvalidInputError
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.colbridge_rerank import ColBERTRerank
from llama_index.retrievers.colbridge import ColBERTRetriever

QUERY = "neutron stars and radio pulses"


@pytest.fixture
def passage_li_index(li_index_path: Path, tmp_path: Path, offline_model,
                     passage_index) -> Iterator[EmbeddedIndex]:
    """The LlamaIndex sample index (nodes that embed their metadata), its hits with passages."""
    path = tmp_path / "li-passages"
    shutil.copytree(li_index_path, path)
    with type(passage_index)(path, model=offline_model) as index:
        yield index


def _expected_span(passage: tuple[int, int], scored: str, whole: str) -> list[int] | None:
    """``passage`` (offsets into ``scored``) moved into ``whole`` and cut to it."""
    offset = scored.rfind(whole)
    start, end = max(passage[0] - offset, 0), min(passage[1] - offset, len(whole))
    return [start, end] if start < end else None


def _check(node: TextNode, whole: TextNode, scored: str, result, *, returned: bool) -> int:
    """``node`` is ``whole`` as returned for ``result`` (a Hit or RerankResult on ``scored``);
    returns how many highlights it has."""
    text = whole.get_content(metadata_mode=MetadataMode.NONE)
    assert scored != text  # the sample nodes embed their metadata: offsets must move
    span = _expected_span(result.passage, scored, text)
    assert span is not None and node.metadata["passage"] == span
    start, end = span
    assert node.text == (text[start:end] if returned else text)
    assert node.node_id == whole.node_id
    if returned and whole.start_char_idx is not None:
        assert (node.start_char_idx, node.end_char_idx) == (whole.start_char_idx + start,
                                                            whole.start_char_idx + end)
    base = scored.rfind(text) + (start if returned else 0)  # where node.text is in scored
    kept = [[a - base, b - base] for a, b in result.highlights
            if a >= base and b - base <= len(node.text)]
    assert node.metadata["highlights"] == kept
    for a, b in kept:
        assert node.text[a:b] == scored[a + base:b + base]
    return len(kept)
    for mode in (MetadataMode.LLM, MetadataMode.EMBED):  # the keys stay out of prompts
        header = node.get_metadata_str(mode=mode)
        assert "passage" not in header and "highlights" not in header and header
        assert node.get_content(metadata_mode=mode).endswith(node.text)
    json.dumps(node.metadata)


# -- retriever --------------------------------------------------------------------------------
def test_retriever_gives_the_passage_and_returns_it_when_asked(passage_li_index):
    hits = {h.id: h for h in passage_li_index.search(QUERY, k=4, explain=True)}
    assert all(h.passage is not None for h in hits.values())
    wholes = {r.node.node_id: r.node
              for r in ColBERTRetriever(passage_li_index, similarity_top_k=4).retrieve(QUERY)}
    for return_passage in (False, True):
        retriever = ColBERTRetriever(passage_li_index, similarity_top_k=4, explain=True,
                                     return_passage=return_passage)
        for results in (retriever.retrieve(QUERY), asyncio.run(retriever.aretrieve(QUERY))):
            assert [r.node.node_id for r in results] == list(hits)
            marked = 0
            for r in results:
                hit = hits[r.node.node_id]
                marked += _check(r.node, wholes[hit.id], hit.text, hit, returned=return_passage)
                assert r.score == pytest.approx(hit.score)
            assert marked


def test_retriever_without_explain_still_gives_the_passage(passage_li_index):
    results = ColBERTRetriever(passage_li_index, similarity_top_k=3).retrieve(QUERY)
    for r in results:
        assert set(r.node.metadata) >= {"passage"} and "highlights" not in r.node.metadata
        assert "passage" in r.node.excluded_llm_metadata_keys


def test_retriever_on_whole_documents_is_unchanged_by_return_passage(li_index_path,
                                                                      offline_model):
    with EmbeddedIndex(li_index_path, model=offline_model) as index:
        plain = ColBERTRetriever(index, similarity_top_k=4).retrieve(QUERY)
        cut = ColBERTRetriever(index, similarity_top_k=4, return_passage=True).retrieve(QUERY)
    assert [(r.node, r.score) for r in cut] == [(r.node, r.score) for r in plain]
    assert all("passage" not in r.node.metadata for r in cut)


def test_retriever_refuses_a_return_passage_that_is_not_a_bool(li_index_path, offline_model):
    with EmbeddedIndex(li_index_path, model=offline_model) as index, \
            pytest.raises(InvalidInputError, match="return_passage"):
        ColBERTRetriever(index, return_passage="yes")


# -- node postprocessor -----------------------------------------------------------------------
@pytest.fixture
def candidates(sample_nodes) -> list[NodeWithScore]:
    chosen = [n for n in sample_nodes if n.metadata["topic"] in ("astronomy", "music")][:6]
    return [NodeWithScore(node=n, score=1.0) for n in chosen]


def test_postprocessor_gives_the_passage_and_returns_it_when_asked(
        offline_model, passage_reranker, candidates):
    texts = [c.node.get_content(metadata_mode=MetadataMode.EMBED) for c in candidates]
    results = passage_reranker.rerank(QUERY, texts, 3, explain=True)
    assert all(r.passage is not None for r in results)
    before = [c.node.model_dump() for c in candidates]
    for return_passage in (False, True):
        rerank = ColBERTRerank(top_n=3, model=offline_model, explain=True,
                               return_passage=return_passage)
        rerank._reranker = passage_reranker  # its results carry passages
        bundle = QueryBundle(QUERY)
        for out in (rerank.postprocess_nodes(candidates, bundle),
                    asyncio.run(rerank.apostprocess_nodes(candidates, bundle))):
            assert len(out) == len(results)
            marked = 0
            for got, result in zip(out, results, strict=True):
                whole = candidates[result.index].node
                marked += _check(got.node, whole, texts[result.index], result,
                                 returned=return_passage)
                assert got.score == pytest.approx(result.score)
            assert marked
    assert [c.node.model_dump() for c in candidates] == before  # inputs untouched


def test_postprocessor_on_whole_documents_is_unchanged_by_return_passage(offline_model,
                                                                         candidates):
    bundle = QueryBundle(QUERY)
    plain = ColBERTRerank(top_n=3, model=offline_model).postprocess_nodes(candidates, bundle)
    cut = ColBERTRerank(top_n=3, model=offline_model,
                        return_passage=True).postprocess_nodes(candidates, bundle)
    assert [(r.node, r.score) for r in cut] == [(r.node, r.score) for r in plain]
    assert all("passage" not in r.node.metadata for r in cut)
