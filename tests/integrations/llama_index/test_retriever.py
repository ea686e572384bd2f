"""ColBERTRetriever: retrieval, filters, node round trips, maintenance, persistence, async."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from colbridge import ColBERTModel, EmbeddedIndex, InvalidInputError, Reranker
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import (
    Document,
    ImageNode,
    IndexNode,
    MetadataMode,
    NodeRelationship,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.retrievers.colbridge import ColBERTRetriever

TINY_NAME = "tiny-test-model"


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_index_path(tmp_path_factory: pytest.TempPathFactory, tiny_model, sample_nodes) -> Path:
    """The sample nodes indexed with the tiny model: fast, rankings meaningless."""
    path = tmp_path_factory.mktemp("li-tiny") / "index"
    with ColBERTRetriever(path, model=tiny_model, create=True) as retriever:
        retriever.insert_nodes(sample_nodes)
    return path


@pytest.fixture(scope="module")
def tiny_index(tiny_index_path: Path, tiny_model):
    with EmbeddedIndex(tiny_index_path, model=tiny_model) as index:
        yield index


@pytest.fixture(scope="module")
def sample_index(li_index_path: Path, offline_model):
    with EmbeddedIndex(li_index_path, model=offline_model) as index:
        yield index


def rich_nodes() -> list[TextNode]:
    """Nodes exercising everything a node carries: chunk links, exclusions, nested metadata."""
    long_doc = Document(
        id_="doc-long",
        text=" ".join(f"Sentence {i} talks about tides, moons and orbits." for i in range(30)),
        metadata={"topic": "astronomy", "year": 1990},
        excluded_llm_metadata_keys=["year"],
    )
    chunks = SentenceSplitter(chunk_size=64, chunk_overlap=0)([long_doc])
    assert len(chunks) > 2 and chunks[1].next_node is not None
    handmade = TextNode(
        id_="hand-made",
        text="Sourdough bread rises thanks to wild yeast.",
        metadata={"tags": ["bread", "yeast"], "info": {"level": 2}, "rating": 4.5},
        excluded_embed_metadata_keys=["info"],
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="doc-bread")},
        start_char_idx=3,
        end_char_idx=45,
    )
    return [*chunks, handmade]


def dump(node: Any) -> dict[str, Any]:
    return node.model_dump(mode="json", exclude={"embedding"})


# -- public surface ---------------------------------------------------------------------------
def test_exports() -> None:
    import llama_index.retrievers.colbridge as package

    assert package.__all__ == ["ColBERTRetriever"]
    assert issubclass(ColBERTRetriever, BaseRetriever)


# -- retrieval --------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 7])
def test_similarity_top_k(sample_index, k: int) -> None:
    nodes = ColBERTRetriever(sample_index, similarity_top_k=k).retrieve("planets and moons")
    assert len(nodes) == k
    scores = [n.score for n in nodes]
    assert scores == sorted(scores, reverse=True)


def to_llama_filters(spec: dict[str, Any] | None) -> MetadataFilters | None:
    """The demo queries' colbridge filters, written as LlamaIndex filters."""
    if spec is None:
        return None
    ops = {"$gte": FilterOperator.GTE, "$eq": FilterOperator.EQ}
    filters = []
    for key, value in spec.items():
        if isinstance(value, dict):
            filters += [
                MetadataFilter(key=key, value=v, operator=ops[op]) for op, v in value.items()
            ]
        else:
            filters.append(MetadataFilter(key=key, value=value))
    return MetadataFilters(filters=filters)


def test_demo_queries_find_their_passage(sample_index, demo_queries: list[dict]) -> None:
    for case in demo_queries:
        retriever = ColBERTRetriever(
            sample_index, similarity_top_k=3, filters=to_llama_filters(case["filter"])
        )
        top = retriever.retrieve(case["query"])[0]
        assert top.node.ref_doc_id == case["expected_id"], case["query"]


def test_scores_are_exact_maxsim(sample_index, offline_model) -> None:
    query = "How do bats find insects in the dark?"
    nodes = ColBERTRetriever(sample_index, similarity_top_k=5).retrieve(query)
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    exact = {r.index: r for r in Reranker(offline_model).rerank(query, texts)}
    for position, found in enumerate(nodes):
        # the index stores float16 vectors; the reference encodes afresh in float32
        assert found.score == pytest.approx(exact[position].score, abs=0.05)

    normalized = ColBERTRetriever(sample_index, similarity_top_k=5, normalize_scores=True)
    for position, found in enumerate(normalized.retrieve(query)):
        assert 0.0 <= found.score <= 1.0
        assert found.score == pytest.approx(exact[position].normalized_score, abs=0.005)


# -- filters ----------------------------------------------------------------------------------
EQ, NE, GT, GTE, LT, LTE = (
    FilterOperator.EQ, FilterOperator.NE, FilterOperator.GT, FilterOperator.GTE,
    FilterOperator.LT, FilterOperator.LTE,
)
FILTER_CASES: list[tuple[str, MetadataFilters, Callable[[dict], bool]]] = [
    ("eq", MetadataFilters(filters=[MetadataFilter(key="topic", value="cooking")]),
     lambda m: m["topic"] == "cooking"),
    ("ne", MetadataFilters(filters=[MetadataFilter(key="topic", value="cooking", operator=NE)]),
     lambda m: m["topic"] != "cooking"),
    ("in", MetadataFilters(filters=[
        MetadataFilter(key="topic", value=["music", "sports"], operator=FilterOperator.IN)]),
     lambda m: m["topic"] in ("music", "sports")),
    ("nin", MetadataFilters(filters=[
        MetadataFilter(key="topic", value=["music", "sports"], operator=FilterOperator.NIN)]),
     lambda m: m["topic"] not in ("music", "sports")),
    ("gt", MetadataFilters(filters=[MetadataFilter(key="year", value=2015, operator=GT)]),
     lambda m: m["year"] > 2015),
    ("gte", MetadataFilters(filters=[MetadataFilter(key="year", value=2015, operator=GTE)]),
     lambda m: m["year"] >= 2015),
    ("lt", MetadataFilters(filters=[MetadataFilter(key="year", value=1700, operator=LT)]),
     lambda m: m["year"] < 1700),
    ("lte", MetadataFilters(filters=[MetadataFilter(key="year", value=1700, operator=LTE)]),
     lambda m: m["year"] <= 1700),
    ("and", MetadataFilters(
        filters=[MetadataFilter(key="topic", value="history"),
                 MetadataFilter(key="year", value=1800, operator=GTE)],
        condition=FilterCondition.AND),
     lambda m: m["topic"] == "history" and m["year"] >= 1800),
    ("nested-and", MetadataFilters(filters=[
        MetadataFilters(filters=[MetadataFilter(key="year", value=1900, operator=GT),
                                 MetadataFilter(key="year", value=2000, operator=LT)]),
        MetadataFilter(key="topic", value=["physics", "medicine"], operator=FilterOperator.IN)]),
     lambda m: 1900 < m["year"] < 2000 and m["topic"] in ("physics", "medicine")),
]


@pytest.mark.parametrize(
    ("name", "filters", "predicate"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES]
)
def test_filters_return_exactly_the_matching_nodes(
    tiny_index, sample_corpus: list[dict], name: str, filters: MetadataFilters,
    predicate: Callable[[dict], bool],
) -> None:
    expected = {d["id"] for d in sample_corpus if predicate(d["metadata"])}
    assert 0 < len(expected) < len(sample_corpus)  # the case separates something
    retriever = ColBERTRetriever(tiny_index, similarity_top_k=500, filters=filters)
    found = retriever.retrieve("anything at all")
    assert {n.node.ref_doc_id for n in found} == expected
    assert all(predicate(n.node.metadata) for n in found)


def test_filters_keep_k_when_enough_nodes_match(tiny_index) -> None:
    filters = MetadataFilters(filters=[MetadataFilter(key="topic", value="cooking")])
    found = ColBERTRetriever(tiny_index, similarity_top_k=4, filters=filters).retrieve("food")
    assert len(found) == 4
    assert {n.node.metadata["topic"] for n in found} == {"cooking"}


UNSUPPORTED = [
    MetadataFilters(filters=[MetadataFilter(key="topic", value="music")],
                    condition=FilterCondition.OR),
    MetadataFilters(filters=[MetadataFilter(key="topic", value="music")],
                    condition=FilterCondition.NOT),
    MetadataFilters(filters=[MetadataFilters(
        filters=[MetadataFilter(key="topic", value="music"),
                 MetadataFilter(key="topic", value="sports")],
        condition=FilterCondition.OR)]),
    *(
        MetadataFilters(filters=[MetadataFilter(key="topic", value=value, operator=op)])
        for op, value in [
            (FilterOperator.TEXT_MATCH, "mus"),
            (FilterOperator.TEXT_MATCH_INSENSITIVE, "MUS"),
            (FilterOperator.CONTAINS, "music"),
            (FilterOperator.ANY, ["music"]),
            (FilterOperator.ALL, ["music"]),
            (FilterOperator.IS_EMPTY, None),
        ]
    ),
]


@pytest.mark.parametrize("filters", UNSUPPORTED, ids=lambda f: repr(f)[:60])
def test_unsupported_filters_are_rejected(tiny_index, filters: MetadataFilters) -> None:
    with pytest.raises(ValueError, match=r"not support|only the 'and'"):
        ColBERTRetriever(tiny_index, filters=filters)
    # also when set after construction: never silently ignored
    retriever = ColBERTRetriever(tiny_index)
    retriever.filters = filters
    with pytest.raises(ValueError, match=r"not support|only the 'and'"):
        retriever.retrieve("music")


def test_filter_value_shapes_are_checked_by_the_index(tiny_index) -> None:
    for value, operator, message in [("music", FilterOperator.IN, "needs a list"),
                                     (["a"], FilterOperator.EQ, "got list")]:
        retriever = ColBERTRetriever(tiny_index, filters=MetadataFilters(
            filters=[MetadataFilter(key="topic", value=value, operator=operator)]))
        with pytest.raises(InvalidInputError, match=message):
            retriever.retrieve("music")


# -- what comes back --------------------------------------------------------------------------
def test_nodes_round_trip(tmp_path: Path, tiny_model) -> None:
    originals = rich_nodes()
    with ColBERTRetriever.from_nodes(
        originals, tmp_path / "index", model=tiny_model, similarity_top_k=100
    ) as retriever:
        found = {n.node.node_id: n.node for n in retriever.retrieve("tides and bread")}
    assert set(found) == {n.node_id for n in originals}
    for original in originals:
        back = found[original.node_id]
        assert type(back) is TextNode
        assert dump(back) == dump(original)
        assert back.get_content(metadata_mode=MetadataMode.LLM) == original.get_content(
            metadata_mode=MetadataMode.LLM
        )
    assert found["hand-made"].ref_doc_id == "doc-bread"
    assert {found[n.node_id].ref_doc_id for n in originals[:-1]} == {"doc-long"}
    assert not any(k.startswith("_llamaindex_") for n in found.values() for k in n.metadata)


def test_encoded_text_is_what_llama_index_embeds(tmp_path: Path, tiny_model) -> None:
    node = TextNode(id_="n", text="The text.", metadata={"shown": "yes", "hidden": "no"},
                    excluded_embed_metadata_keys=["hidden"])
    with ColBERTRetriever.from_nodes([node], tmp_path / "index", model=tiny_model) as retriever:
        stored = retriever.index.get(["n"])[0]
    assert stored.text == node.get_content(metadata_mode=MetadataMode.EMBED)
    assert "shown: yes" in stored.text and "hidden" not in stored.text


def test_a_node_without_any_bm25_term_closes_cleanly(tmp_path: Path, tiny_model) -> None:
    """Issue 13, item 10: close() raised bm25s's ValueError (and left the index open) when no
    stored text had a BM25 term."""
    retriever = ColBERTRetriever.from_nodes([TextNode(id_="i", text="I")], tmp_path / "index",
                                            model=tiny_model)
    assert [n.node.node_id for n in retriever.retrieve("x")] == ["i"]
    retriever.close()
    with EmbeddedIndex(tmp_path / "index", model=tiny_model) as reopened:
        assert reopened.count() == 1 and reopened.search("x", k=1, mode="bm25") == []


def test_index_nodes_come_back_as_index_nodes(tmp_path: Path, tiny_model) -> None:
    node = IndexNode(id_="ix", text="A summary of another index.", index_id="sub-index")
    with ColBERTRetriever.from_nodes([node], tmp_path / "index", model=tiny_model) as retriever:
        back = retriever.retrieve("summary")[0].node
    assert isinstance(back, IndexNode)
    assert back.index_id == "sub-index" and back.text == node.text


def test_documents_added_without_llama_index(tmp_path: Path, tiny_model) -> None:
    with EmbeddedIndex(tmp_path / "index", model=tiny_model) as index:
        index.add(["plain text one", "plain text two"], ids=["p1", "p2"],
                  metadatas=[{"topic": "a"}, {"topic": "b"}])
        found = {n.node.node_id: n.node for n in ColBERTRetriever(index).retrieve("plain")}
    assert set(found) == {"p1", "p2"}
    assert found["p1"].text == "plain text one" and found["p1"].metadata == {"topic": "a"}
    assert found["p2"].ref_doc_id is None


# -- building and maintaining -----------------------------------------------------------------
def test_from_documents_runs_the_transformations(tmp_path: Path, tiny_model) -> None:
    documents = [
        Document(id_="a", text=" ".join(["Alpha sentence about rivers."] * 40), metadata={"k": 1}),
        Document(id_="b", text="Bravo is short.", metadata={"k": 2}),
    ]
    splitter = SentenceSplitter(chunk_size=48, chunk_overlap=0)
    expected_chunks = len(splitter(documents))
    assert expected_chunks > 2
    with ColBERTRetriever.from_documents(
        documents, tmp_path / "index", model=tiny_model, transformations=[splitter],
        similarity_top_k=100,
    ) as retriever:
        assert retriever.index.count() == expected_chunks
        found = retriever.retrieve("rivers")
    assert {n.node.ref_doc_id for n in found} == {"a", "b"}
    assert {n.node.metadata["k"] for n in found if n.node.ref_doc_id == "a"} == {1}


def test_from_documents_defaults_to_settings_transformations(tmp_path: Path, tiny_model) -> None:
    from llama_index.core import Settings

    document = Document(id_="d", text="One document. " * 400)
    expected = len(Settings.transformations[0]([document]))
    assert expected > 1  # the default SentenceSplitter really splits it
    with ColBERTRetriever.from_documents([document], tmp_path / "index", model=tiny_model) as r:
        assert r.index.count() == expected


def test_insert_then_delete_by_ref_doc(tmp_path: Path, tiny_model) -> None:
    splitter = SentenceSplitter(chunk_size=40, chunk_overlap=0)
    keep = Document(id_="keep", text="Gardening notes about compost and mulch.")
    first = Document(id_="first", text=" ".join(["Tempering chocolate sets cocoa butter."] * 30))
    with ColBERTRetriever.from_documents(
        [keep], tmp_path / "index", model=tiny_model, transformations=[splitter],
        similarity_top_k=1000,
    ) as retriever:
        inserted = retriever.insert_documents([first], transformations=[splitter])
        assert len(inserted) > 3
        assert retriever.index.count() == len(inserted) + 1
        found = retriever.retrieve("chocolate")
        assert {n.node.node_id for n in found if n.node.ref_doc_id == "first"} == set(inserted)

        assert retriever.delete_ref_doc("first") == len(inserted)
        remaining = retriever.retrieve("chocolate")
        assert [n.node.ref_doc_id for n in remaining] == ["keep"]
        assert retriever.delete_ref_doc("first") == 0
        assert retriever.delete_ref_doc("never-indexed") == 0


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_delete_ref_doc_lists_nodes_by_filter_without_encoding(
    tmp_path: Path, tiny_model, monkeypatch, use_async: bool
) -> None:
    nodes = [TextNode(id_=f"n{i}", text=f"Node {i} about the tides.", relationships={
        NodeRelationship.SOURCE: RelatedNodeInfo(node_id="a" if i % 3 else "b")}) for i in range(9)]
    with ColBERTRetriever.from_nodes(nodes, tmp_path / "index", model=tiny_model) as retriever:
        encoded: list[list[str]] = []
        encode = tiny_model._encode
        monkeypatch.setattr(tiny_model, "_encode",
                            lambda texts, **kw: encoded.append(list(texts)) or encode(texts, **kw))
        deleted = (await retriever.adelete_ref_doc("a") if use_async
                   else retriever.delete_ref_doc("a"))
        assert deleted == 6 and encoded == []
        assert retriever.index.ids() == ["n0", "n3", "n6"]


def test_insert_nodes_upserts_by_node_id(tmp_path: Path, tiny_model) -> None:
    with ColBERTRetriever.from_nodes(
        [TextNode(id_="x", text="old text")], tmp_path / "index", model=tiny_model
    ) as retriever:
        retriever.insert_nodes([TextNode(id_="x", text="new text", metadata={"v": 2})])
        assert retriever.index.count() == 1
        node = retriever.retrieve("text")[0].node
    assert (node.text, node.metadata) == ("new text", {"v": 2})


async def test_async_insert_and_delete(tmp_path: Path, tiny_model) -> None:
    splitter = SentenceSplitter(chunk_size=40, chunk_overlap=0)
    documents = [
        Document(id_="one", text=" ".join(["Octopuses have three hearts."] * 20)),
        Document(id_="two", text="Honeybees dance to share directions."),
    ]
    with ColBERTRetriever(tmp_path / "index", model=tiny_model, create=True,
                          similarity_top_k=1000) as retriever:
        ids = await retriever.ainsert_documents(documents, transformations=[splitter])
        assert await retriever.index.acount() == len(ids)
        extra = await retriever.ainsert_nodes([TextNode(id_="three", text="Bats echolocate.")])
        assert extra == ["three"]
        ones = {n.node.node_id for n in await retriever.aretrieve("hearts")
                if n.node.ref_doc_id == "one"}
        assert len(ones) > 1
        assert await retriever.adelete_ref_doc("one") == len(ones)
        left = await retriever.aretrieve("hearts")
    assert {n.node.ref_doc_id for n in left} == {"two", None}
    assert {n.node.node_id for n in left} & ones == set()


def test_a_folder_without_an_index_fails_at_construction(tmp_path: Path, tiny_model) -> None:
    from colbridge import IndexNotFoundError

    with pytest.raises(IndexNotFoundError, match="typo"):
        ColBERTRetriever(tmp_path / "typo", model=tiny_model)
    assert list(tmp_path.iterdir()) == []
    built = ColBERTRetriever.from_nodes([TextNode(id_="n", text="Bats echolocate.")],
                                        tmp_path / "new", model=tiny_model)
    assert [n.node.node_id for n in built.retrieve("bats")] == ["n"]
    built.close()
    with ColBERTRetriever(tmp_path / "new", model=tiny_model) as reopened:
        assert reopened.index.count() == 1


def test_rejected_inputs(tmp_path: Path, tiny_model, tiny_index) -> None:
    with pytest.raises(ValueError, match="only with an index folder"):
        ColBERTRetriever(tiny_index, model=tiny_model)
    for bad_k in (0, -1, 2.5, True, 100_001):
        with pytest.raises(InvalidInputError, match="k must be"):
            ColBERTRetriever(tiny_index, similarity_top_k=bad_k).retrieve("music")
    with pytest.raises(TypeError, match="colbridge index or a folder"):
        ColBERTRetriever(42)  # type: ignore[arg-type]
    with ColBERTRetriever(tmp_path / "index", model=tiny_model, create=True) as retriever:
        with pytest.raises(ValueError, match="reserved"):
            retriever.insert_nodes([TextNode(text="x", metadata={"_llamaindex_node": 1})])
        with pytest.raises(ValueError, match="text nodes only"):
            retriever.insert_nodes([ImageNode(text="a caption")])
        with pytest.raises(ValueError, match="no text"):
            retriever.insert_nodes([TextNode(text="   ")])
        with pytest.raises(TypeError, match="list of nodes"):
            retriever.insert_nodes(TextNode(text="alone"))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="ref_doc_id"):
            retriever.delete_ref_doc("")
        assert retriever.index.count() == 0  # nothing half-written


# -- persistence ------------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import json, sys
    from colbridge import ColBERTModel
    from llama_index.retrievers.colbridge import ColBERTRetriever

    model = ColBERTModel(sys.argv[2], name=sys.argv[3], device="cpu")
    with ColBERTRetriever(sys.argv[1], model=model, similarity_top_k=100) as retriever:
        found = retriever.retrieve("tides and bread")
    print(json.dumps([[n.score, n.node.model_dump(mode="json", exclude={"embedding"})]
                      for n in found]))
    """
)


def test_persistence_across_processes(tmp_path: Path, tiny_model, tiny_model_path: Path) -> None:
    originals = {n.node_id: n for n in rich_nodes()}
    path = tmp_path / "index"
    with ColBERTRetriever.from_nodes(
        list(originals.values()), path, model=tiny_model, similarity_top_k=100
    ) as retriever:
        here = retriever.retrieve("tides and bread")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(tiny_model_path), TINY_NAME],
        capture_output=True, text=True, timeout=240, env={**os.environ},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    there = json.loads(result.stdout.strip().splitlines()[-1])
    assert [d["id_"] for _, d in there] == [n.node.node_id for n in here]
    for (score, data), mine in zip(there, here, strict=True):
        assert data == dump(originals[data["id_"]])
        assert score == pytest.approx(mine.score, abs=1e-4)


# -- async ------------------------------------------------------------------------------------
class SlowQueryModel(ColBERTModel):
    """The tiny model with query encoding that takes 0.3 s of blocking work."""

    def encode_queries(self, queries):  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        return super().encode_queries(queries)


async def count_ticks_while(awaitable: Any) -> tuple[Any, int]:
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)  # let the heartbeat start
    start = ticks
    try:
        result = await awaitable
    finally:
        beat.cancel()
    return result, ticks - start


async def test_aretrieve_does_not_block_the_event_loop(
    tiny_index_path: Path, tiny_model_path: Path
) -> None:
    slow = SlowQueryModel(tiny_model_path, name=TINY_NAME, device="cpu")
    with EmbeddedIndex(tiny_index_path, model=slow) as index:
        retriever = ColBERTRetriever(index, similarity_top_k=3)
        nodes, ticks = await count_ticks_while(retriever.aretrieve("moons"))
        assert len(nodes) == 3
        assert ticks >= 10  # 0.3 s of encoding ran while the loop kept ticking every 10 ms

        # Control: LlamaIndex's default _aretrieve runs the sync path on the loop and stalls it.
        _, stalled = await count_ticks_while(
            BaseRetriever._aretrieve(retriever, QueryBundle("moons"))
        )
        assert stalled <= 2


async def test_aretrieve_matches_retrieve(sample_index) -> None:
    filters = MetadataFilters(filters=[MetadataFilter(key="year", value=1900, operator=GTE)])
    retriever = ColBERTRetriever(sample_index, similarity_top_k=5, filters=filters)
    query = "When was the particle that explains mass detected?"
    sync = retriever.retrieve(query)
    concurrent = await asyncio.gather(*(retriever.aretrieve(query) for _ in range(3)))
    for result in concurrent:
        assert [n.node.node_id for n in result] == [n.node.node_id for n in sync]
        assert [n.score for n in result] == pytest.approx([n.score for n in sync], abs=1e-4)


# -- instrumentation --------------------------------------------------------------------------
async def test_retrieval_events_and_spans(sample_index, instrumentation, span_names) -> None:
    events, spans = instrumentation
    retriever = ColBERTRetriever(sample_index, similarity_top_k=2)
    sync_nodes = retriever.retrieve("tardigrades")
    async_nodes = await retriever.aretrieve("tardigrades")

    starts, ends = events.of_type("RetrievalStartEvent"), events.of_type("RetrievalEndEvent")
    assert [e.str_or_query_bundle for e in starts] == ["tardigrades", "tardigrades"]
    assert [[n.node.node_id for n in e.nodes] for e in ends] == [
        [n.node.node_id for n in sync_nodes], [n.node.node_id for n in async_nodes]
    ]
    names = span_names(spans)
    for expected in ("ColBERTRetriever.retrieve", "ColBERTRetriever._retrieve",
                     "ColBERTRetriever.aretrieve", "ColBERTRetriever._aretrieve"):
        assert expected in names
    # the events belong to the public spans, as for LlamaIndex's own retrievers
    assert starts[0].span_id.startswith("ColBERTRetriever.retrieve-")
    assert starts[1].span_id.startswith("ColBERTRetriever.aretrieve-")



def test_similarity_top_k_accepts_an_integral_numpy_scalar(tiny_model, tmp_path) -> None:
    import numpy as np

    nodes = [TextNode(id_=f"n{i}", text=f"passage {i} about tides") for i in range(4)]
    with ColBERTRetriever.from_nodes(nodes, tmp_path / "ix", model=tiny_model,
                                     similarity_top_k=np.int64(2)) as retriever:
        assert len(retriever.retrieve("tides")) == 2
    with (ColBERTRetriever(tmp_path / "ix", model=tiny_model, similarity_top_k=np.float64(2))
          as retriever, pytest.raises(InvalidInputError, match="k must be an integer")):
        retriever.retrieve("tides")
