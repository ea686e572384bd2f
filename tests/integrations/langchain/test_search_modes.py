"""Search modes (colbert, bm25, hybrid) through the retriever and the vector store.

The tiny model's rankings mean nothing, so the tests lean on what only the lexical side does:
in ``bm25`` mode only documents sharing a term with the query come back, and the one holding
the rare identifier ``XJ-4471`` comes first.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from colbridge import EmbeddedIndex, InvalidInputError, QdrantIndex
from colbridge.index.base import BaseIndex
from langchain_colbridge import ColBERTRetriever, ColBERTVectorStore
from pydantic import ValidationError

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
LEXICAL = ["pump", "impeller"]  # the documents sharing a term with QUERY, BM25's order
NOT_MAINTENANCE = {"topic": {"$in": ["engineering", "cooking", "astronomy"]}}


@pytest.fixture(scope="module", params=["embedded", "qdrant"])
def parts_index(request, tmp_path_factory: pytest.TempPathFactory, tiny_model
                ) -> Iterator[BaseIndex]:
    """The eight passages above, indexed with the tiny model on each backend (read-only for
    the tests)."""
    if request.param == "qdrant":
        pytest.importorskip("qdrant_client")
        index: BaseIndex = QdrantIndex(":memory:", "parts", model=tiny_model)
    else:
        index = EmbeddedIndex(tmp_path_factory.mktemp("modes") / "index", model=tiny_model)
    with index:
        index.add([text for text, _ in PARTS.values()], ids=list(PARTS),
                  metadatas=[metadata for _, metadata in PARTS.values()])
        yield index


class ColbertOnlyIndex(EmbeddedIndex):
    """A backend that searches in ``colbert`` mode only."""

    search_modes = ("colbert",)


@pytest.fixture
def parts_store(parts_index: EmbeddedIndex) -> ColBERTVectorStore:
    return ColBERTVectorStore(parts_index)


def ids(docs) -> list[str]:
    return [d.id for d in docs]


def scores(docs) -> list[float]:
    return [d.metadata["relevance_score"] for d in docs]


# -- ColBERTRetriever -------------------------------------------------------------------------
async def test_retriever_bm25_ranks_the_exact_identifier_first(parts_index):
    retriever = ColBERTRetriever(index=parts_index, k=5, mode="bm25")
    docs = retriever.invoke(QUERY)
    # Only the documents sharing a term come back: fewer than k, so BM25 really ran.
    assert ids(docs) == LEXICAL
    assert scores(docs)[0] == 1.0 and 0.0 < scores(docs)[1] < 1.0  # relative to the best hit
    assert docs[0].page_content == PARTS["pump"][0]
    assert await retriever.ainvoke(QUERY) == docs
    # The default mode is still ColBERT, which scores every document.
    assert len(ColBERTRetriever(index=parts_index, k=5).invoke(QUERY)) == 5


async def test_retriever_mode_per_call_overrides_and_does_not_stick(parts_index):
    retriever = ColBERTRetriever(index=parts_index, k=5)
    assert ids(retriever.invoke(QUERY, mode="bm25")) == LEXICAL
    assert ids(await retriever.ainvoke(QUERY, mode="bm25")) == LEXICAL
    assert retriever.mode == "colbert"
    assert len(retriever.invoke(QUERY)) == 5
    lexical = ColBERTRetriever(index=parts_index, k=5, mode="bm25")
    assert len(lexical.invoke(QUERY, mode="colbert")) == 5


async def test_retriever_hybrid_respects_the_filter(parts_index):
    retriever = ColBERTRetriever(index=parts_index, k=4, mode="hybrid", filter=NOT_MAINTENANCE)
    docs = retriever.invoke(QUERY)
    assert len(docs) == 4
    assert all(d.metadata["topic"] in {"engineering", "cooking", "astronomy"} for d in docs)
    assert "pump" not in ids(docs)
    expected = parts_index.search(QUERY, k=4, filter=NOT_MAINTENANCE, mode="hybrid")
    assert ids(docs) == [h.id for h in expected]
    assert scores(docs) == pytest.approx([h.normalized_score for h in expected])
    # Hybrid scores, not ColBERT's: the fused ones are min-max normalised, ColBERT's are not.
    colbert = parts_index.search(QUERY, k=4, filter=NOT_MAINTENANCE)
    assert scores(docs) != pytest.approx([h.normalized_score for h in colbert])
    assert docs[0].id == "impeller"  # the one matching document sharing a term ("pump")
    adocs = await retriever.ainvoke(QUERY)
    assert ids(adocs) == ids(docs)
    assert scores(adocs) == pytest.approx(scores(docs))


async def test_retriever_hybrid_weight_in_constructor_and_per_call(parts_index):
    def expected(weight: float) -> list[float]:
        hits = parts_index.search(QUERY, k=8, mode="hybrid", hybrid_weight=weight)
        return [h.normalized_score for h in hits]

    assert expected(0.0) != pytest.approx(expected(1.0))  # the weight changes the scores
    lexical_only = ColBERTRetriever(index=parts_index, k=8, mode="hybrid", hybrid_weight=0.0)
    assert scores(lexical_only.invoke(QUERY)) == pytest.approx(expected(0.0))
    assert scores(lexical_only.invoke(QUERY, hybrid_weight=1.0)) == pytest.approx(expected(1.0))
    assert scores(await lexical_only.ainvoke(QUERY, hybrid_weight=1.0)) == pytest.approx(
        expected(1.0))
    assert lexical_only.hybrid_weight == 0.0


async def test_retriever_refuses_invalid_modes_and_weights(parts_index):
    """The index checks them (its typed error is a ValueError), given at construction or per
    call; the retriever only passes them on."""
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        ColBERTRetriever(index=parts_index, mode="semantic").invoke(QUERY)
    for weight in (-0.1, 1.5):
        with pytest.raises(InvalidInputError, match="hybrid_weight"):
            ColBERTRetriever(index=parts_index, mode="hybrid", hybrid_weight=weight).invoke(QUERY)
    with pytest.raises(InvalidInputError, match="k must be at least 1"):
        ColBERTRetriever(index=parts_index, k=0).invoke(QUERY)
    with pytest.raises(ValidationError, match="k"):  # pydantic still checks the field's type
        ColBERTRetriever(index=parts_index, k="many")
    retriever = ColBERTRetriever(index=parts_index)
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        retriever.invoke(QUERY, mode="semantic")
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        await retriever.ainvoke(QUERY, mode="semantic")
    with pytest.raises(InvalidInputError, match="hybrid_weight"):
        retriever.invoke(QUERY, mode="hybrid", hybrid_weight=2.0)


def test_modes_a_backend_lacks_are_refused(tmp_path, tiny_model):
    with ColbertOnlyIndex(tmp_path / "index", model=tiny_model) as index:
        index.add([PARTS["pump"][0]], ids=["pump"])
        with pytest.raises(InvalidInputError, match="ColbertOnlyIndex searches in the modes"):
            ColBERTRetriever(index=index, mode="bm25").invoke(QUERY)
        assert ids(ColBERTRetriever(index=index).invoke(QUERY)) == ["pump"]
        with pytest.raises(InvalidInputError, match="hybrid"):
            ColBERTVectorStore(index).similarity_search(QUERY, mode="hybrid")


# -- ColBERTVectorStore -----------------------------------------------------------------------
async def test_store_searches_forward_the_mode(parts_store, parts_index):
    assert ids(parts_store.similarity_search(QUERY, k=5, mode="bm25")) == LEXICAL
    assert ids(await parts_store.asimilarity_search(QUERY, k=5, mode="bm25")) == LEXICAL
    raw = [h.score for h in parts_index.search(QUERY, k=5, mode="bm25")]
    with_score = parts_store.similarity_search_with_score(QUERY, k=5, mode="bm25")
    assert [(d.id, s) for d, s in with_score] == list(zip(LEXICAL, raw, strict=True))
    assert await parts_store.asimilarity_search_with_score(QUERY, k=5, mode="bm25") == with_score
    relevance = parts_store.similarity_search_with_relevance_scores(QUERY, k=5, mode="bm25")
    assert [d.id for d, _ in relevance] == LEXICAL
    assert relevance[0][1] == 1.0 and relevance[1][1] == pytest.approx(raw[1] / raw[0])
    assert await parts_store.asimilarity_search_with_relevance_scores(
        QUERY, k=5, mode="bm25") == relevance


async def test_store_hybrid_respects_the_filter(parts_store, parts_index):
    docs = parts_store.similarity_search(QUERY, k=4, mode="hybrid", hybrid_weight=0.3,
                                         filter=NOT_MAINTENANCE)
    assert len(docs) == 4 and "pump" not in ids(docs)
    assert all(d.metadata["topic"] in {"engineering", "cooking", "astronomy"} for d in docs)
    expected = parts_index.search(QUERY, k=4, mode="hybrid", hybrid_weight=0.3,
                                  filter=NOT_MAINTENANCE)
    assert ids(docs) == [h.id for h in expected]
    scored = await parts_store.asimilarity_search_with_score(
        QUERY, k=4, mode="hybrid", hybrid_weight=0.3, filter=NOT_MAINTENANCE)
    assert [d for d, _ in scored] == docs
    assert [s for _, s in scored] == pytest.approx([h.score for h in expected])


async def test_store_as_retriever_with_a_mode(parts_store):
    lexical = parts_store.as_retriever(search_kwargs={"k": 5, "mode": "bm25"})
    assert ids(lexical.invoke(QUERY)) == LEXICAL
    assert ids(await lexical.ainvoke(QUERY)) == LEXICAL
    assert len(parts_store.as_retriever(search_kwargs={"k": 5}).invoke(QUERY)) == 5
    # The best BM25 hit scores 1.0, the next one less: a threshold just under 1 keeps one.
    best_only = parts_store.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"k": 5, "mode": "bm25", "score_threshold": 0.999},
    )
    assert ids(best_only.invoke(QUERY)) == ["pump"]
    assert ids(await best_only.ainvoke(QUERY)) == ["pump"]
    hybrid = parts_store.as_retriever(
        search_kwargs={"k": 3, "mode": "hybrid", "filter": {"topic": "astronomy"}})
    found = hybrid.invoke(QUERY)
    assert len(found) == 2 and {d.metadata["topic"] for d in found} == {"astronomy"}


async def test_store_mmr_takes_its_candidates_from_the_mode(parts_store):
    lexical = parts_store.max_marginal_relevance_search(QUERY, k=4, fetch_k=8, mode="bm25")
    assert sorted(ids(lexical)) == sorted(LEXICAL)  # BM25 found two candidates only
    assert lexical[0].id == "pump"  # the most relevant is always picked first
    assert ids(await parts_store.amax_marginal_relevance_search(
        QUERY, k=4, fetch_k=8, mode="bm25")) == ids(lexical)
    mmr = parts_store.as_retriever(search_type="mmr",
                                   search_kwargs={"k": 4, "fetch_k": 8, "mode": "bm25"})
    assert ids(mmr.invoke(QUERY)) == ids(lexical)
    assert len(parts_store.max_marginal_relevance_search(QUERY, k=4, fetch_k=8)) == 4
    hybrid = parts_store.max_marginal_relevance_search(
        QUERY, k=3, fetch_k=8, mode="hybrid", filter={"topic": "cooking"})
    assert len(hybrid) == 2 and {d.metadata["topic"] for d in hybrid} == {"cooking"}


async def test_store_refuses_an_invalid_mode(parts_store):
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        parts_store.similarity_search(QUERY, mode="semantic")
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        await parts_store.asimilarity_search_with_relevance_scores(QUERY, mode="semantic")
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        parts_store.max_marginal_relevance_search(QUERY, mode="semantic")
    with pytest.raises(InvalidInputError, match="hybrid_weight"):
        parts_store.as_retriever(
            search_kwargs={"mode": "hybrid", "hybrid_weight": -1}).invoke(QUERY)
