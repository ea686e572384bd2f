"""End to end: LlamaIndex query engines built with ColBERTRetriever and ColBERTRerank."""

from __future__ import annotations

from pathlib import Path

import pytest
from colbridge import EmbeddedIndex, Reranker
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, QueryBundle
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters
from llama_index.postprocessor.colbridge_rerank import ColBERTRerank
from llama_index.retrievers.bm25 import BM25Retriever
from llama_index.retrievers.colbridge import ColBERTRetriever

CASES = [
    ("Why do we only ever see one side of the Moon from Earth?", None, "astro-007"),
    ("How can bread rise if I don't have any commercial yeast?",
     MetadataFilters(filters=[MetadataFilter(key="topic", value="cooking")]), "cook-001"),
    ("When was the particle that explains why things have mass finally detected?",
     MetadataFilters(filters=[MetadataFilter(key="year", value=1900, operator=FilterOperator.GTE)]),
     "phys-005"),
]


@pytest.fixture(scope="module")
def sample_index(li_index_path: Path, offline_model):
    with EmbeddedIndex(li_index_path, model=offline_model) as index:
        yield index


def engine_for(
    sample_index, offline_model, filters: MetadataFilters | None
) -> RetrieverQueryEngine:
    return RetrieverQueryEngine.from_args(
        ColBERTRetriever(sample_index, similarity_top_k=8, filters=filters),
        llm=MockLLM(),
        node_postprocessors=[ColBERTRerank(top_n=3, model=offline_model)],
    )


def check_response(response, expected: str, texts: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    sources = response.source_nodes
    assert len(sources) == 3
    assert sources[0].node.ref_doc_id == expected
    assert [s.score for s in sources] == sorted((s.score for s in sources), reverse=True)
    # MockLLM answers with the prompt it was given: the context must hold the passage
    assert texts[expected][:80] in str(response)


@pytest.mark.parametrize(("query", "filters", "expected"), CASES, ids=[c[2] for c in CASES])
def test_query_engine_sync(
    sample_index, offline_model, sample_corpus: list[dict], query: str,
    filters: MetadataFilters | None, expected: str,
) -> None:
    texts = {d["id"]: d["text"] for d in sample_corpus}
    engine = engine_for(sample_index, offline_model, filters)
    check_response(engine.query(query), expected, texts)


@pytest.mark.parametrize(("query", "filters", "expected"), CASES, ids=[c[2] for c in CASES])
async def test_query_engine_async(
    sample_index, offline_model, sample_corpus: list[dict], query: str,
    filters: MetadataFilters | None, expected: str,
) -> None:
    texts = {d["id"]: d["text"] for d in sample_corpus}
    engine = engine_for(sample_index, offline_model, filters)
    response = await engine.aquery(query)
    check_response(response, expected, texts)
    sync = engine.query(query)
    assert [s.node.node_id for s in response.source_nodes] == [
        s.node.node_id for s in sync.source_nodes
    ]


def test_rerank_behind_bm25(sample_nodes: list, offline_model, demo_queries: list[dict]) -> None:
    bm25 = BM25Retriever.from_defaults(nodes=sample_nodes, similarity_top_k=10)
    rerank = ColBERTRerank(top_n=10, model=offline_model)
    engine = RetrieverQueryEngine.from_args(bm25, llm=MockLLM(), node_postprocessors=[rerank])
    reference = Reranker(offline_model)
    changed = 0
    unfiltered = [case for case in demo_queries if case["filter"] is None]
    for case in unfiltered[:3]:
        first = bm25.retrieve(case["query"])
        reranked = engine.retrieve(QueryBundle(case["query"]))
        assert {n.node.node_id for n in reranked} == {n.node.node_id for n in first}
        assert reranked[0].node.ref_doc_id == case["expected_id"]
        # the order is the exact MaxSim order, computed independently
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in first]
        expected_order = [
            first[r.index].node.node_id for r in reference.rerank(case["query"], texts)
        ]
        assert [n.node.node_id for n in reranked] == expected_order
        changed += [n.node.node_id for n in first] != expected_order
    assert changed > 0  # the reranker really reordered BM25's lists


def test_rerank_behind_a_vector_index(sample_corpus: list[dict], offline_model) -> None:
    """A first stage that cannot rank (constant mock embeddings) leaves the answer buried;
    ColBERTRerank must bring it to the top."""
    from llama_index.core.schema import TextNode

    picked = [d for d in sample_corpus if d["id"].endswith("-003")] + [
        d for d in sample_corpus if d["id"] == "bio-001"
    ]
    nodes = [TextNode(id_=d["id"], text=d["text"], metadata=d["metadata"]) for d in picked]
    index = VectorStoreIndex(nodes, embed_model=Settings.embed_model)
    query = "Which tiny creature can survive being dried out, frozen, or exposed to outer space?"
    first = index.as_retriever(similarity_top_k=len(nodes)).retrieve(query)
    assert first[0].node.node_id != "bio-001"  # the mock first stage got it wrong

    engine = index.as_query_engine(
        similarity_top_k=len(nodes), llm=MockLLM(),
        node_postprocessors=[ColBERTRerank(top_n=2, model=offline_model)],
    )
    response = engine.query(query)
    assert response.source_nodes[0].node.node_id == "bio-001"
    assert len(response.source_nodes) == 2
