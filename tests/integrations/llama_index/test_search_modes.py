"""ColBERTRetriever's search modes (colbert, bm25, hybrid): forwarded, filtered, validated.

The tiny model's rankings mean nothing, so the tests lean on what only the lexical side does:
in ``bm25`` mode only nodes sharing a term with the query come back, and the one holding the
rare identifier ``XJ-4471`` comes first.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from colbridge import EmbeddedIndex, InvalidInputError, QdrantIndex, SearchMode
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.retrievers.colbridge import ColBERTRetriever

PARTS = {
    "pump": ("Replace the seal on pump model XJ-4471 every two years.",
             {"topic": "maintenance", "year": 2020}),
    "valve": ("The valve assembly needs a new gasket after heavy use.",
              {"topic": "maintenance", "year": 2018}),
    "bread": ("Sourdough bread rises thanks to wild yeast in the starter.",
              {"topic": "cooking", "year": 2015}),
    "moon": ("Tidal locking keeps one face of the Moon towards the Earth.",
             {"topic": "astronomy", "year": 1990}),
    "pulsar": ("Pulsars are rotating neutron stars that emit radio beams.",
               {"topic": "astronomy", "year": 1967}),
    "bees": ("Honeybees dance to tell the hive where flowers are.",
             {"topic": "biology", "year": 1973}),
    "impeller": ("A centrifugal pump moves water with a spinning impeller.",
                 {"topic": "engineering", "year": 2001}),
    "kimchi": ("Kimchi is fermented cabbage seasoned with chili and garlic.",
               {"topic": "cooking", "year": 2010}),
}
QUERY = "seal of the XJ-4471 pump"
LEXICAL = ["pump", "impeller"]  # the nodes sharing a term with QUERY, BM25's order
NOT_MAINTENANCE = MetadataFilters(filters=[
    MetadataFilter(key="topic", value="maintenance", operator=FilterOperator.NE)])
CORE_NOT_MAINTENANCE = {"topic": {"$ne": "maintenance"}}


@pytest.fixture(scope="module", params=["embedded", "qdrant"])
def parts_index(request, tmp_path_factory: pytest.TempPathFactory, tiny_model):
    """The eight passages above as nodes (stored with their metadata, as LlamaIndex embeds
    them), indexed with the tiny model on each backend; read-only for the tests."""
    nodes = [TextNode(id_=key, text=text, metadata=metadata)
             for key, (text, metadata) in PARTS.items()]
    if request.param == "qdrant":
        pytest.importorskip("qdrant_client")
        index = QdrantIndex(":memory:", "li-parts", model=tiny_model)
    else:
        index = EmbeddedIndex(tmp_path_factory.mktemp("li-modes") / "index", model=tiny_model)
    with index:
        ColBERTRetriever.from_nodes(nodes, index)
        yield index


class ColbertOnlyIndex(EmbeddedIndex):
    """A backend that searches in ``colbert`` mode only."""

    search_modes = ("colbert",)


def ids(found) -> list[str]:
    return [n.node.node_id for n in found]


def scores(found) -> list[float]:
    return [n.score for n in found]


async def test_bm25_ranks_the_exact_identifier_first(parts_index) -> None:
    retriever = ColBERTRetriever(parts_index, similarity_top_k=5, mode="bm25")
    found = retriever.retrieve(QUERY)
    # Only the nodes sharing a term come back: fewer than similarity_top_k, so BM25 really ran.
    assert ids(found) == LEXICAL
    assert found[0].node.text == PARTS["pump"][0]
    assert found[0].node.metadata == PARTS["pump"][1]
    raw = [h.score for h in parts_index.search(QUERY, k=5, mode="bm25")]
    assert scores(found) == pytest.approx(raw)
    afound = await retriever.aretrieve(QUERY)
    assert ids(afound) == LEXICAL and scores(afound) == pytest.approx(raw)
    # The default mode is still ColBERT, which scores every node.
    assert len(ColBERTRetriever(parts_index, similarity_top_k=5).retrieve(QUERY)) == 5


def test_bm25_normalised_scores_are_relative_to_the_best_hit(parts_index) -> None:
    retriever = ColBERTRetriever(parts_index, similarity_top_k=5, mode="bm25",
                                 normalize_scores=True)
    found = retriever.retrieve(QUERY)
    assert ids(found) == LEXICAL
    assert found[0].score == 1.0 and 0.0 < found[1].score < 1.0


async def test_hybrid_respects_the_filters(parts_index) -> None:
    retriever = ColBERTRetriever(parts_index, similarity_top_k=4, mode="hybrid",
                                 filters=NOT_MAINTENANCE)
    found = retriever.retrieve(QUERY)
    assert len(found) == 4
    assert all(n.node.metadata["topic"] != "maintenance" for n in found)
    expected = parts_index.search(QUERY, k=4, filter=CORE_NOT_MAINTENANCE, mode="hybrid")
    assert ids(found) == [h.id for h in expected]
    assert scores(found) == pytest.approx([h.score for h in expected])
    assert all(0.0 <= s <= 1.0 for s in scores(found))  # fused scores, not raw MaxSim
    assert found[0].node.node_id == "impeller"  # the one matching node sharing a term
    afound = await retriever.aretrieve(QUERY)
    assert ids(afound) == ids(found) and scores(afound) == pytest.approx(scores(found))


async def test_hybrid_weight_is_forwarded(parts_index) -> None:
    def expected(weight: float) -> list[float]:
        return [h.score for h in parts_index.search(QUERY, k=8, mode="hybrid",
                                                    hybrid_weight=weight)]

    assert expected(0.0) != pytest.approx(expected(1.0))  # the weight changes the scores
    for weight in (0.0, 1.0):
        retriever = ColBERTRetriever(parts_index, similarity_top_k=8, mode="hybrid",
                                     hybrid_weight=weight)
        assert scores(retriever.retrieve(QUERY)) == pytest.approx(expected(weight))
        assert scores(await retriever.aretrieve(QUERY)) == pytest.approx(expected(weight))


def test_mode_with_an_index_folder(tmp_path: Path, tiny_model) -> None:
    nodes = [TextNode(id_=key, text=text) for key, (text, _) in PARTS.items()]
    with ColBERTRetriever.from_nodes(nodes, tmp_path / "index", model=tiny_model,
                                     similarity_top_k=5, mode="bm25") as retriever:
        assert ids(retriever.retrieve(QUERY)) == LEXICAL


async def test_invalid_modes_and_weights_are_refused_by_the_index(parts_index) -> None:
    """The adapter passes mode and weight through: the index's typed error (a ValueError)
    comes at query time, whether they were given at construction or set afterwards."""
    for bad in ("semantic", "BM25", None, 1):
        retriever = ColBERTRetriever(parts_index, mode=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="mode must be one of"):
            retriever.retrieve(QUERY)
        with pytest.raises(InvalidInputError, match="mode must be one of"):
            await retriever.aretrieve(QUERY)
    for bad in (-0.1, 1.5, math.nan, True, "0.5"):
        retriever = ColBERTRetriever(parts_index, mode="hybrid", hybrid_weight=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="hybrid_weight"):
            retriever.retrieve(QUERY)
    retriever = ColBERTRetriever(parts_index)
    retriever.mode = "semantic"
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        retriever.retrieve(QUERY)


def test_the_search_mode_enum_works_as_its_string(parts_index) -> None:
    by_enum = ColBERTRetriever(parts_index, similarity_top_k=5, mode=SearchMode.BM25)
    by_string = ColBERTRetriever(parts_index, similarity_top_k=5, mode="bm25")
    assert ids(by_enum.retrieve(QUERY)) == ids(by_string.retrieve(QUERY)) == LEXICAL


def test_modes_a_backend_lacks_are_refused(tmp_path: Path, tiny_model) -> None:
    with ColbertOnlyIndex(tmp_path / "index", model=tiny_model) as index:
        with pytest.raises(InvalidInputError, match="ColbertOnlyIndex searches in the modes"):
            ColBERTRetriever(index, mode="bm25").retrieve(QUERY)
        retriever = ColBERTRetriever.from_nodes([TextNode(id_="pump", text=PARTS["pump"][0])],
                                                index)
        assert ids(retriever.retrieve(QUERY)) == ["pump"]
