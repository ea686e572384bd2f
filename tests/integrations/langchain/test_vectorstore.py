"""ColBERTVectorStore: writes, scores, retrievers, MMR, construction, async, persistence."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from colbridge import EmbeddedIndex, InvalidInputError, mmr
from langchain_colbridge import ColBERTVectorStore
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import VectorStore

EIFFEL = {
    "e1": "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
    "e2": "Completed in 1889 for the World's Fair, the Eiffel Tower stands in Paris.",
    "e3": "The Eiffel Tower, finished in 1889 for the Paris World's Fair, is built of "
    "wrought iron.",
    "louvre": "The Louvre in Paris is the most visited art museum in the world.",
    "photo": "Photosynthesis converts light into chemical energy in plants.",
}
EIFFEL_QUERY = "When was the Eiffel Tower in Paris built?"


@pytest.fixture
def store(tmp_path, tiny_model):
    store = ColBERTVectorStore.from_path(tmp_path / "index", model=tiny_model, create=True)
    yield store
    store.index.close()


@pytest.fixture
def sample_store(sample_index):
    return ColBERTVectorStore(sample_index)


# -- writes ----------------------------------------------------------------------------------
def test_add_texts_upserts_by_id(store):
    assert store.add_texts(["alpha text", "beta text"], [{"n": 1}, {"n": 2}], ids=["a", "b"]) == [
        "a", "b"]
    store.add_texts(["alpha replaced"], [{"n": 10}], ids=["a"])
    assert store.index.count() == 2
    assert store.get_by_ids(["a"]) == [Document(id="a", page_content="alpha replaced",
                                                metadata={"n": 10})]


def test_add_documents_keeps_document_ids_and_fills_missing_ones(store):
    docs = [Document(id="given", page_content="has an id", metadata={"k": "v"}),
            Document(page_content="has none")]
    before = [d.model_copy(deep=True) for d in docs]
    ids = store.add_documents(docs)
    assert ids[0] == "given" and ids[1] and ids[1] != "given"
    assert docs == before  # not modified (no id written into them)
    got = {d.id: d for d in store.get_by_ids(ids)}
    assert got["given"] == Document(id="given", page_content="has an id", metadata={"k": "v"})
    assert got[ids[1]].page_content == "has none"
    # Explicit ids win over Document.id.
    assert store.add_documents([Document(id="ignored", page_content="x")], ids=["chosen"]) == [
        "chosen"]
    assert store.get_by_ids(["ignored"]) == []


def test_delete_single_bulk_unknown_and_none(store):
    store.add_texts(["one", "two", "three", "four"], ids=["1", "2", "3", "4"])
    assert store.delete(["1"]) is True
    assert store.delete(["2", "3", "2"]) is True
    assert store.delete(["unknown", "4"]) is True
    assert store.index.count() == 0
    with pytest.raises(ValueError, match="ids"):
        store.delete(None)


def test_deleting_the_last_document_with_a_bm25_term(store):
    """Issue 13, item 10: the delete committed, then the lexical rebuild over texts without
    any BM25 term raised from bm25s; a write that succeeded must report success."""
    store.add_texts(["Paris landmarks", "no"], ids=["paris", "stop"])
    store.index.flush()  # the lexical base exists
    assert store.delete(["paris"]) is True
    assert [d.id for d in store.get_by_ids(["stop", "paris"])] == ["stop"]
    assert store.similarity_search("Paris", k=2, mode="bm25") == []


def test_get_by_ids_order_unknown_and_duplicates(store):
    store.add_texts(["one", "two", "three"], ids=["1", "2", "3"])
    assert [d.id for d in store.get_by_ids(["3", "nope", "1", "3", ""])] == ["3", "1"]
    assert store.get_by_ids([]) == []
    assert store.delete(["", "2", "2"]) is True
    assert store.index.count() == 2


# -- search ----------------------------------------------------------------------------------
def test_similarity_search_matches_the_index_and_keeps_scores_out(sample_store, sample_index):
    query = "How do pulsars keep time?"
    hits = sample_index.search(query, k=5)
    docs = sample_store.similarity_search(query, k=5)
    assert [d.id for d in docs] == [h.id for h in hits]
    assert [d.metadata for d in docs] == [h.metadata for h in hits]
    with_score = sample_store.similarity_search_with_score(query, k=5)
    assert [d for d, _ in with_score] == docs
    assert [s for _, s in with_score] == pytest.approx([h.score for h in hits])
    relevance = sample_store.similarity_search_with_relevance_scores(query, k=5)
    assert [d for d, _ in relevance] == docs
    assert [s for _, s in relevance] == pytest.approx([h.normalized_score for h in hits])
    assert all(0.0 <= s <= 1.0 for _, s in relevance)


def test_filter_and_search_options(sample_store):
    docs = sample_store.similarity_search("old recipes", k=6, filter={"topic": "cooking"})
    assert len(docs) == 6 and all(d.metadata["topic"] == "cooking" for d in docs)
    graph = sample_store.similarity_search("Why does the Moon show one face?", k=2,
                                           exact_threshold=0, token_k=4)
    assert graph[0].id == "astro-007"


def test_score_threshold(sample_store):
    query = "Which tiny creature can survive being dried out or frozen?"
    scored = sample_store.similarity_search_with_relevance_scores(query, k=3)
    cut = (scored[0][1] + scored[1][1]) / 2
    kept = sample_store.similarity_search_with_relevance_scores(query, k=3, score_threshold=cut)
    assert [d.id for d, _ in kept] == [scored[0][0].id]


async def test_as_retriever_similarity_and_threshold(sample_store):
    query = "How can bread rise without commercial yeast?"
    top = sample_store.similarity_search_with_relevance_scores(query, k=4)
    plain = sample_store.as_retriever(search_kwargs={"k": 4})
    assert [d.id for d in plain.invoke(query)] == [d.id for d, _ in top]
    assert [d.id for d in await plain.ainvoke(query)] == [d.id for d, _ in top]
    filtered = sample_store.as_retriever(search_kwargs={"k": 3, "filter": {"topic": "history"}})
    assert {d.metadata["topic"] for d in filtered.invoke(query)} == {"history"}
    cut = float((top[1][1] + top[2][1]) / 2)
    threshold = sample_store.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"k": 4, "score_threshold": cut},
    )
    assert [d.id for d in threshold.invoke(query)] == [d.id for d, _ in top[:2]]
    assert [d.id for d in await threshold.ainvoke(query)] == [d.id for d, _ in top[:2]]


async def test_empty_store_searches_return_nothing(store):
    assert store.similarity_search("anything") == []
    assert await store.asimilarity_search_with_score("anything") == []
    assert store.max_marginal_relevance_search("anything") == []
    assert await store.amax_marginal_relevance_search("anything") == []


# -- maximal marginal relevance --------------------------------------------------------------
# (colbridge.mmr itself is tested in tests/core/test_diversity.py)
@pytest.fixture
def eiffel_store(tmp_path, offline_model):
    store = ColBERTVectorStore.from_texts(list(EIFFEL.values()), offline_model,
                                          ids=list(EIFFEL), path=tmp_path / "eiffel")
    yield store
    store.index.close()


async def test_mmr_trades_relevance_for_diversity(eiffel_store):
    top = [d.id for d in eiffel_store.similarity_search(EIFFEL_QUERY, k=3)]
    assert set(top) == {"e1", "e2", "e3"}  # near-duplicates crowd plain similarity
    pure = eiffel_store.max_marginal_relevance_search(EIFFEL_QUERY, k=3, lambda_mult=1.0)
    assert [d.id for d in pure] == top
    diverse = eiffel_store.max_marginal_relevance_search(EIFFEL_QUERY, k=3, lambda_mult=0.5)
    assert diverse[0].id == top[0]
    assert sum(d.id.startswith("e") for d in diverse) == 1
    assert "relevance_score" not in diverse[0].metadata
    adiverse = await eiffel_store.amax_marginal_relevance_search(EIFFEL_QUERY, k=3, lambda_mult=0.5)
    assert adiverse == diverse
    mmr = eiffel_store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "lambda_mult": 0.5})
    assert [d.id for d in mmr.invoke(EIFFEL_QUERY)] == [d.id for d in diverse[:2]]
    with pytest.raises(ValueError, match="lambda_mult"):
        eiffel_store.max_marginal_relevance_search(EIFFEL_QUERY, lambda_mult=1.5)


async def test_mmr_uses_the_stored_vectors_and_encodes_only_the_query(eiffel_store, monkeypatch):
    model = eiffel_store.index.model
    encoded: list[tuple[bool, int]] = []
    encode = model._encode
    monkeypatch.setattr(model, "_encode", lambda texts, **kw: encoded.append(
        (kw["is_query"], len(texts))) or encode(texts, **kw))
    found = eiffel_store.max_marginal_relevance_search(EIFFEL_QUERY, k=3, fetch_k=6)
    afound = await eiffel_store.amax_marginal_relevance_search(EIFFEL_QUERY, k=3, fetch_k=6)
    assert afound == found and len(found) == 3
    assert [is_query for is_query, _ in encoded] == [True, True]  # the two queries, no document
    hits = eiffel_store.index.search(EIFFEL_QUERY, k=6)
    stored = eiffel_store.index.get([h.id for h in hits], with_vectors=True)
    expected = mmr([h.normalized_score for h in hits], [d.vectors for d in stored], 3)
    assert [d.id for d in found] == [hits[i].id for i in expected]


# -- construction ----------------------------------------------------------------------------
async def test_from_texts_and_documents_take_a_model(tmp_path, tiny_model):
    docs = [Document(id="a", page_content="first", metadata={"n": 1}),
            Document(id="b", page_content="second", metadata={"n": 2})]
    built = [
        ColBERTVectorStore.from_documents(docs, tiny_model, path=tmp_path / "1"),
        ColBERTVectorStore.from_documents(docs, model=tiny_model, path=tmp_path / "2"),
        await ColBERTVectorStore.afrom_documents(docs, model=tiny_model, path=tmp_path / "3"),
        await ColBERTVectorStore.afrom_texts(["first", "second"], tiny_model, [{"n": 1}, {"n": 2}],
                                             ids=["a", "b"], path=tmp_path / "4"),
    ]
    for store in built:
        assert sorted(store.get_by_ids(["a", "b"]), key=lambda d: d.id) == docs
        assert store.embeddings is None
        store.index.close()
    with pytest.raises(TypeError, match="Embeddings"):
        ColBERTVectorStore.from_texts(
            ["x"], DeterministicFakeEmbedding(size=4), path=tmp_path / "5")
    with pytest.raises(TypeError, match="once"):
        ColBERTVectorStore.from_texts(["x"], tiny_model, model=tiny_model, path=tmp_path / "6")
    with pytest.raises(TypeError, match="colbridge index"):
        ColBERTVectorStore("not an index")  # type: ignore[arg-type]


def test_from_texts_without_a_path_uses_a_temporary_folder(tiny_model):
    store = ColBERTVectorStore.from_texts(["kept only for now"], tiny_model, ids=["t"])
    folder = Path(store.index.path).parent
    assert store.similarity_search("kept", k=1)[0].id == "t"
    assert folder.exists()
    del store
    gc.collect()
    assert not folder.exists()


def test_reopening_the_folder_keeps_documents(tmp_path, tiny_model):
    first = ColBERTVectorStore.from_texts(["persisted text"], tiny_model, ids=["p"],
                                          path=tmp_path / "kept")
    first.index.close()
    again = ColBERTVectorStore.from_path(tmp_path / "kept", model=tiny_model)
    assert again.get_by_ids(["p"])[0].page_content == "persisted text"
    again.index.close()


def test_from_path_refuses_a_folder_without_an_index(tmp_path, tiny_model):
    from colbridge import IndexNotFoundError

    with pytest.raises(IndexNotFoundError, match="ix-mistakez"):
        ColBERTVectorStore.from_path(tmp_path / "ix-mistakez", model=tiny_model)
    assert list(tmp_path.iterdir()) == []
    created = ColBERTVectorStore.from_path(tmp_path / "new", model=tiny_model, create=True)
    assert created.similarity_search("anything") == []  # an empty store, as asked
    created.index.close()


_REOPEN = """
import json, sys
from colbridge import ColBERTModel
from langchain_colbridge import ColBERTVectorStore
folder, model_path, query = sys.argv[1:4]
store = ColBERTVectorStore.from_path(folder, model=ColBERTModel(model_path, name="tiny-test-model"))
found = store.similarity_search_with_score(query, k=4, exact_threshold=0)
print(json.dumps([[doc.id, doc.page_content, doc.metadata, score] for doc, score in found]))
"""


def test_a_new_process_reopens_the_store_with_the_same_results(
    tmp_path, tiny_model, tiny_model_path, sample_corpus
):
    corpus = sample_corpus[:30]
    store = ColBERTVectorStore.from_documents(
        [Document(id=d["id"], page_content=d["text"], metadata=d["metadata"]) for d in corpus],
        tiny_model, path=tmp_path / "persisted")
    store.delete([corpus[0]["id"], corpus[5]["id"]])
    store.add_texts(["an added afterwards passage about stars"], [{"topic": "late"}], ids=["new"])
    query = "stars and planets"
    here = [[d.id, d.page_content, d.metadata, s]
            for d, s in store.similarity_search_with_score(query, k=4, exact_threshold=0)]
    store.index.close()
    run = subprocess.run(
        [sys.executable, "-c", _REOPEN, str(tmp_path / "persisted"), str(tiny_model_path), query],
        capture_output=True, text=True, timeout=240,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    there = json.loads(run.stdout.strip().splitlines()[-1])
    assert [row[:3] for row in there] == [row[:3] for row in here]
    assert [row[3] for row in there] == pytest.approx([row[3] for row in here], rel=1e-5)


# -- async -----------------------------------------------------------------------------------
ASYNC_METHODS = [
    "aadd_texts", "aadd_documents", "adelete", "aget_by_ids", "asimilarity_search",
    "asimilarity_search_with_score", "_asimilarity_search_with_relevance_scores",
    "amax_marginal_relevance_search", "afrom_texts", "afrom_documents",
]


@pytest.mark.parametrize("name", ASYNC_METHODS)
def test_async_methods_are_native(name):
    # LangChain's defaults run the sync method in an executor; every one is overridden here.
    ours = inspect.getattr_static(ColBERTVectorStore, name)
    assert ours is not inspect.getattr_static(VectorStore, name)
    assert inspect.iscoroutinefunction(getattr(ColBERTVectorStore, name))


async def test_async_twins_agree_with_sync(sample_store):
    query = "the Rosetta Stone"
    assert await sample_store.asimilarity_search(query, k=3) == sample_store.similarity_search(
        query, k=3)
    assert await sample_store.asimilarity_search_with_relevance_scores(
        query, k=3) == sample_store.similarity_search_with_relevance_scores(query, k=3)
    ids = await sample_store.aadd_texts(["a fresh passage"], [{"topic": "new"}], ids=["fresh"])
    assert await sample_store.aget_by_ids(ids) == sample_store.get_by_ids(ids)
    assert await sample_store.adelete(["fresh", "never-there"]) is True
    assert await sample_store.aget_by_ids(["fresh"]) == []


async def test_async_calls_do_not_block_the_event_loop(slow_index, measure_loop):
    store = ColBERTVectorStore(slow_index)
    delay = slow_index.model.delay
    calls = [
        store.aadd_texts(["a passage added while the loop keeps running"], ids=["live"]),
        store.asimilarity_search("radio pulses", k=2),
        store.asimilarity_search_with_relevance_scores("radio pulses", k=2),
        store.amax_marginal_relevance_search("radio pulses", k=2, fetch_k=4),
    ]
    for call in calls:
        result, stall, beats = await measure_loop(call)
        assert result
        assert stall < delay / 2
        assert beats >= 10


async def test_concurrent_searches_share_encoder_batches(slow_index):
    store = ColBERTVectorStore(slow_index)
    slow_index.model.query_batches.clear()
    queries = ["stars", "storms", "comets", "pulsars"]
    results = await asyncio.gather(*(store.asimilarity_search(q, k=1) for q in queries))
    assert all(len(r) == 1 for r in results)
    assert len(slow_index.model.query_batches) < len(queries)


def test_store_over_an_index_object(tmp_path, tiny_model):
    with EmbeddedIndex(tmp_path / "own", model=tiny_model) as index:
        store = ColBERTVectorStore(index)
        store.add_texts(["shared index"], ids=["s"])
        assert index.count() == 1
        assert "ColBERTVectorStore" in repr(store)


# -- searching by an encoded query -----------------------------------------------------------
def test_similarity_search_by_vector_takes_the_query_token_matrix(sample_store, sample_index):
    query = "Why do we only ever see one side of the Moon?"
    matrix = sample_index.model.encode_query(query)
    by_text = sample_store.similarity_search(query, k=4, filter={"topic": "astronomy"})
    by_vector = sample_store.similarity_search_by_vector(matrix, k=4,
                                                         filter={"topic": "astronomy"})
    assert by_vector == by_text
    assert sample_store.similarity_search_by_vector(matrix.tolist(), k=4,
                                                    filter={"topic": "astronomy"}) == by_text
    hybrid = sample_store.similarity_search_by_vector(matrix, k=3, mode="hybrid",
                                                      query_text=query)
    assert hybrid == sample_store.similarity_search(query, k=3, mode="hybrid")


def test_mmr_by_vector_matches_mmr_by_text(eiffel_store):
    matrix = eiffel_store.index.model.encode_query(EIFFEL_QUERY)
    by_text = eiffel_store.max_marginal_relevance_search(EIFFEL_QUERY, k=3, lambda_mult=0.5)
    by_vector = eiffel_store.max_marginal_relevance_search_by_vector(matrix, k=3,
                                                                     lambda_mult=0.5)
    assert by_vector == by_text
    with pytest.raises(ValueError, match="lambda_mult"):
        eiffel_store.max_marginal_relevance_search_by_vector(matrix, lambda_mult=-0.1)


async def test_async_search_by_vector_is_native_and_agrees(eiffel_store):
    for name in ("asimilarity_search_by_vector", "amax_marginal_relevance_search_by_vector"):
        assert inspect.getattr_static(ColBERTVectorStore, name) is not inspect.getattr_static(
            VectorStore, name)
    matrix = eiffel_store.index.model.encode_query(EIFFEL_QUERY)
    assert await eiffel_store.asimilarity_search_by_vector(
        matrix, k=2) == eiffel_store.similarity_search_by_vector(matrix, k=2)
    assert await eiffel_store.amax_marginal_relevance_search_by_vector(
        matrix, k=3) == eiffel_store.max_marginal_relevance_search_by_vector(matrix, k=3)


@pytest.mark.parametrize("method", ["similarity_search_by_vector",
                                    "max_marginal_relevance_search_by_vector"])
def test_a_single_vector_is_refused_with_what_to_pass(sample_store, method):
    one_vector = DeterministicFakeEmbedding(size=sample_store.index.dimension).embed_query("x")
    with pytest.raises(InvalidInputError, match=r"one vector per query token.*encode_query"):
        getattr(sample_store, method)(one_vector, k=2)
    with pytest.raises(InvalidInputError, match=r"shape \(tokens, "):
        getattr(sample_store, method)(np.ones((3, sample_store.index.dimension + 1)), k=2)
