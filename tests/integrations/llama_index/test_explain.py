"""explain=True in the LlamaIndex adapters: highlights and token matches in node metadata,
with offsets into the node's own text, kept out of the embedded and LLM text."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from colbridge import EmbeddedIndex, Reranker
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.colbridge_rerank import ColBERTRerank
from llama_index.retrievers.colbridge import ColBERTRetriever

QUERY = "neutron stars and radio pulses"
KEYS = {"highlights", "token_matches"}


@pytest.fixture
def index(li_index_path: Path, offline_model) -> Iterator[EmbeddedIndex]:
    with EmbeddedIndex(li_index_path, model=offline_model) as opened:
        yield opened


def _check(node: TextNode, scored_text: str, core) -> None:
    """``node``'s explanation is ``core``'s (a Hit or RerankResult scored on ``scored_text``),
    its offsets moved into ``node.text``: the same characters, metadata-part matches without a
    span."""
    text = node.get_content(metadata_mode=MetadataMode.NONE)
    assert scored_text != text  # the sample nodes embed their metadata: offsets must move
    highlights = node.metadata["highlights"]
    assert highlights
    kept = [scored_text[a:b] for a, b in core.highlights if scored_text[a:b] in text]
    assert [text[a:b] for a, b in highlights] == kept
    for start, end in highlights:
        assert 0 <= start < end <= len(text)
    matches = node.metadata["token_matches"]
    assert [m["score"] for m in matches] == pytest.approx([m.score for m in core.matches])
    for mine, theirs in zip(matches, core.matches, strict=True):
        if mine["span"] is not None:
            a, b = mine["span"]
            assert text[a:b] == scored_text[theirs.span[0]:theirs.span[1]]
    assert any(m["span"] is not None for m in matches)
    json.dumps(node.metadata)


def _check_out_of_prompts(node: TextNode) -> None:
    for mode in (MetadataMode.LLM, MetadataMode.EMBED):
        content = node.get_content(metadata_mode=mode)
        assert "token_matches" not in content and "highlights" not in content
    assert set(node.excluded_llm_metadata_keys) >= KEYS
    assert set(node.excluded_embed_metadata_keys) >= KEYS


# -- retriever --------------------------------------------------------------------------------
def test_retriever_explain_puts_highlights_into_node_text(index):
    results = ColBERTRetriever(index, similarity_top_k=4, explain=True).retrieve(QUERY)
    hits = {h.id: h for h in index.search(QUERY, k=4, explain=True)}
    assert [r.node.node_id for r in results] == list(hits)
    for result in results:
        hit = hits[result.node.node_id]
        _check(result.node, hit.text, hit)
        _check_out_of_prompts(result.node)
        # the scored text is unchanged by the added keys
        assert result.node.get_content(metadata_mode=MetadataMode.EMBED) == hit.text
    top = results[0].node
    marked = " ".join(top.text[a:b].lower() for a, b in top.metadata["highlights"])
    assert any(word in marked for word in ("neutron", "star", "radio", "pulse"))


def test_retriever_without_explain_leaves_metadata_alone(index):
    for result in ColBERTRetriever(index, similarity_top_k=4).retrieve(QUERY):
        assert not KEYS & result.node.metadata.keys()
        assert not KEYS & set(result.node.excluded_llm_metadata_keys)


def test_retriever_explain_async(index):
    retriever = ColBERTRetriever(index, similarity_top_k=4, explain=True)
    results = asyncio.run(retriever.aretrieve(QUERY))
    hits = {h.id: h for h in index.search(QUERY, k=4, explain=True)}
    for result in results:
        _check(result.node, hits[result.node.node_id].text, hits[result.node.node_id])


# -- node postprocessor -----------------------------------------------------------------------
@pytest.fixture
def candidates(sample_corpus: list[dict]) -> list[NodeWithScore]:
    chosen = [d for d in sample_corpus if d["id"].startswith(("astro", "music"))][:6]
    return [NodeWithScore(node=TextNode(id_=d["id"], text=d["text"],
                                        metadata=dict(d["metadata"])), score=1.0)
            for d in chosen]


def _expected(offline_model, nodes: list[NodeWithScore], top_n: int):
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    results = Reranker(offline_model).rerank(QUERY, texts, top_n, explain=True)
    return [(nodes[r.index].node.node_id, texts[r.index], r) for r in results]


def _check_reranked(reranked: list[NodeWithScore], expected) -> None:
    assert [n.node.node_id for n in reranked] == [node_id for node_id, _, _ in expected]
    for result, (_, scored_text, core) in zip(reranked, expected, strict=True):
        _check(result.node, scored_text, core)
        _check_out_of_prompts(result.node)


def test_postprocessor_explain(offline_model, candidates):
    expected = _expected(offline_model, candidates, 3)
    rerank = ColBERTRerank(top_n=3, model=offline_model, explain=True)
    bundle = QueryBundle(QUERY)
    _check_reranked(rerank.postprocess_nodes(candidates, bundle), expected)
    _check_reranked(asyncio.run(rerank.apostprocess_nodes(candidates, bundle)), expected)
    assert not any(KEYS & n.node.metadata.keys() for n in candidates)  # inputs untouched


def test_postprocessor_explain_with_retrieval_score(offline_model, candidates):
    rerank = ColBERTRerank(top_n=2, model=offline_model, explain=True, keep_retrieval_score=True)
    for result in rerank.postprocess_nodes(candidates, QueryBundle(QUERY)):
        assert result.node.metadata["retrieval_score"] == 1.0
        assert {"retrieval_score", *KEYS} <= set(result.node.excluded_llm_metadata_keys)
        assert result.node.metadata["highlights"]


def test_postprocessor_without_explain_leaves_metadata_alone(offline_model, candidates):
    reranked = ColBERTRerank(top_n=3, model=offline_model).postprocess_nodes(
        candidates, QueryBundle(QUERY))
    assert reranked and not any(KEYS & n.node.metadata.keys() for n in reranked)


def test_postprocessor_explain_text_with_surrounding_whitespace(offline_model):
    # LlamaIndex strips the formatted text, so the node's trailing newline is not in it.
    node = TextNode(id_="n", text="  Neutron stars send radio pulses.\n",
                    metadata={"topic": "astronomy"})
    [result] = ColBERTRerank(top_n=1, model=offline_model, explain=True).postprocess_nodes(
        [NodeWithScore(node=node, score=0.0)], QueryBundle(QUERY))
    highlights = result.node.metadata["highlights"]
    assert highlights
    words = [node.text[a:b] for a, b in highlights]
    assert all(w.strip() == w and w for w in words)
    assert any("Neutron" in w or "pulses" in w or "radio" in w for w in words)
