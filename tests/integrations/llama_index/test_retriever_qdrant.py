"""The LlamaIndex retriever once more, with the Qdrant backend under it (issue 7).

The adapter only speaks ``colbridge.BaseIndex``: nodes round-trip, filters, ``ref_doc_id``
deletes and the async path work the same on ``QdrantIndex`` (in-memory local mode, offline).
"""

from __future__ import annotations

import pytest
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.retrievers.colbridge import ColBERTRetriever

pytest.importorskip("qdrant_client")
from colbridge import QdrantIndex  # noqa: E402


@pytest.fixture
def nodes(sample_corpus):
    result = []
    for number, doc in enumerate(sample_corpus[:30]):
        node = TextNode(text=doc["text"], id_=doc["id"], metadata=dict(doc["metadata"]))
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=f"source-{number % 3}")
        result.append(node)
    return result


@pytest.fixture
def retriever(offline_model, nodes):
    index = QdrantIndex(":memory:", "llamaindex", model=offline_model)
    retriever = ColBERTRetriever.from_nodes(nodes, index, similarity_top_k=3)
    yield retriever
    index.close()


def test_nodes_round_trip_and_rank(retriever, nodes, sample_corpus, demo_queries):
    query = demo_queries[0]
    results = retriever.retrieve(query["query"])
    assert results[0].node.node_id == query["expected_id"]
    original = next(n for n in nodes if n.node_id == query["expected_id"])
    assert results[0].node.text == original.text
    assert results[0].node.metadata == original.metadata
    assert results[0].node.ref_doc_id == original.ref_doc_id


def test_filters_and_ref_doc_delete(retriever):
    retriever.filters = MetadataFilters(filters=[
        MetadataFilter(key="topic", value="cooking", operator=FilterOperator.EQ)])
    hits = retriever.retrieve("how does bread rise")
    assert hits and all(h.node.metadata["topic"] == "cooking" for h in hits)
    retriever.filters = None
    before = retriever.index.count()
    deleted = retriever.delete_ref_doc("source-1")
    assert deleted == 10 and retriever.index.count() == before - 10
    assert all(h.node.ref_doc_id != "source-1" for h in retriever.retrieve("anything at all"))


async def test_async_retrieve_matches_sync(retriever, demo_queries):
    query = demo_queries[2]["query"]
    sync = [n.node.node_id for n in retriever.retrieve(query)]
    async_ = [n.node.node_id for n in await retriever.aretrieve(query)]
    assert async_ == sync
