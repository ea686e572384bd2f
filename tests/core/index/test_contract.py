"""One contract, every backend: the same tests run on the embedded index and on Qdrant.

Each test takes an index from the parametrised ``index`` fixture (``embedded`` and ``qdrant``),
so a behaviour that drifts on one backend fails here. Filters are checked against
:func:`colbridge.filters.matches`, the reference meaning of the filter language, over metadata
chosen to hit its corners (arrays, objects, nulls, booleans next to numbers, integral floats,
dotted field names). The Qdrant index runs on qdrant-client's local mode, offline.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from colbridge import (
    DocumentNotFoundError,
    IndexMismatchError,
    InvalidInputError,
    QdrantIndex,
)
from colbridge.filters import matches, parse_filter

from .conftest import BACKENDS, open_index, synthetic_docs

# -- writes and reads ---------------------------------------------------------------------------
def test_add_get_count_round_trip_metadata(index):
    metadata = {"title": "Ωmega ✓", "n": 3, "x": 2.5, "whole": 4.0, "flag": False, "none": None,
                "tags": ["a", 1, None], "nested": {"deep": {"list": [1.5, {"k": "v"}]}},
                "id": "not the id", "text": "not the text"}
    assert index.add(["first text", "second text"], ids=["a", "b"],
                     metadatas=[metadata, None]) == ["a", "b"]
    assert index.count() == len(index) == 2
    a, b = index.get(["b", "a"])[::-1]
    assert (a.id, a.text, a.metadata) == ("a", "first text", metadata)
    assert (b.id, b.text, b.metadata) == ("b", "second text", {})
    assert type(a.metadata["whole"]) is float and type(a.metadata["n"]) is int


def test_generated_ids_are_unique(index):
    ids = index.add(["one", "two", "three"])
    assert len(set(ids)) == 3
    assert [d.text for d in index.get(ids)] == ["one", "two", "three"]


def test_adding_nothing_stores_nothing(index):
    assert index.add([]) == []
    assert index.count() == 0


def test_upsert_replaces_text_metadata_and_vectors(filled):
    filled.add(["volcano lava magma eruption"], ids=["d3"], metadatas=[{"v": 2}])
    assert filled.count() == 40
    (doc,) = filled.get(["d3"])
    assert (doc.text, doc.metadata) == ("volcano lava magma eruption", {"v": 2})
    hits = filled.search("volcano lava magma eruption", k=40)
    assert [h.id for h in hits].count("d3") == 1
    assert hits[0].id == "d3"
    old_group = filled.search("anything", k=40, filter={"group": "g3"})
    assert [h.id for h in old_group] == ["d23"]  # d3's old metadata is gone


def test_delete_hides_documents_and_counts(filled):
    query = filled.get(["d5"])[0].text
    assert filled.delete(["d5", "d6"]) == 2
    assert filled.count() == 38
    assert not {"d5", "d6"} & {h.id for h in filled.search(query, k=40)}
    with pytest.raises(DocumentNotFoundError):
        filled.get(["d5"])


def test_delete_of_unknown_ids_deletes_nothing_unless_missing_ok(filled):
    with pytest.raises(DocumentNotFoundError, match="ghost") as caught:
        filled.delete(["d1", "ghost"])
    assert caught.value.missing == ["ghost"]
    assert filled.count() == 40
    assert filled.delete(["d1", "ghost"], missing_ok=True) == 1
    assert filled.delete(["ghost"], missing_ok=True) == 0
    assert filled.count() == 39


def test_get_keeps_the_order_asked_and_reports_missing_ids(filled):
    assert [d.id for d in filled.get(["d9", "d2", "d30"])] == ["d9", "d2", "d30"]
    with pytest.raises(DocumentNotFoundError) as caught:
        filled.get(["d2", "ghost", "phantom"])
    assert caught.value.missing == ["ghost", "phantom"]
    assert [d.id for d in filled.get(["ghost", "d2"], missing_ok=True)] == ["d2"]


def test_deleted_id_can_be_added_again(filled):
    filled.delete(["d7"])
    filled.add(["reborn text"], ids=["d7"])
    assert filled.count() == 40 and filled.get(["d7"])[0].text == "reborn text"


def test_add_encoded_stores_the_given_vectors(index, tiny_model):
    rng = np.random.default_rng(0)
    vectors = [rng.normal(size=(n, tiny_model.dimension)).astype(np.float32) for n in (3, 5)]
    index.add_encoded(vectors, ["three tokens", "five tokens"], ids=["x", "y"])
    unit = vectors[1] / np.linalg.norm(vectors[1], axis=1, keepdims=True)
    hits = index.search_encoded(unit, k=2)
    assert [h.id for h in hits] == ["y", "x"]
    assert hits[0].score == pytest.approx(float((unit @ unit.T).max(1).sum()), abs=1e-2)


# -- search -------------------------------------------------------------------------------------
def test_empty_index_returns_no_hits(index):
    assert index.count() == 0
    assert index.search("anything", k=5) == []
    assert index.search("anything", k=5, filter={"group": "g1"}) == []


def test_k_larger_than_the_collection_returns_every_document(filled):
    hits = filled.search("alpha river", k=500)
    assert sorted(h.id for h in hits) == sorted(f"d{i}" for i in range(40))
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_scores_are_raw_maxsim_and_normalised(filled, tiny_model):
    hits = filled.search("gamma river forest", k=5)
    assert len(hits) == 5
    for hit in hits:
        assert hit.normalized_score == pytest.approx(
            min(max(hit.score / tiny_model.query_length, 0.0), 1.0), abs=1e-6)


def test_search_encoded_equals_search(filled, tiny_model):
    query = "delta ocean valley"
    by_text = filled.search(query, k=7)
    by_vectors = filled.search_encoded(tiny_model.encode_query(query), k=7)
    assert [(h.id, h.score) for h in by_text] == [(h.id, h.score) for h in by_vectors]


def test_hits_carry_their_own_metadata(filled):
    first = filled.search("alpha", k=1)[0]
    first.metadata["group"] = "changed"
    assert filled.search("alpha", k=1)[0].metadata["group"] != "changed"
    assert filled.get([first.id])[0].metadata["group"] != "changed"


# -- filters --------------------------------------------------------------------------------------
def tricky_metadata(i: int) -> dict:
    variants = [
        {"topic": "a", "n": i, "flag": True},
        {"topic": "b", "n": float(i), "flag": False},
        {"topic": "a", "n": i + 0.5, "flag": 1},
        {"topic": ["a", "b"], "n": str(i), "flag": [True]},
        {"topic": None, "n": None, "flag": None},
        {},
        {"topic": {"eq": "a"}, "a.b": "dot", "n": -i, "first_name": "x"},
        {"topic": "A", "n": True, 'quote"d': 1, "first__name": "y"},
    ]
    return variants[i % len(variants)]


TRICKY = [(f"t{i}", tricky_metadata(i)) for i in range(48)]

FILTERS = [
    {"topic": "a"},
    {"topic": {"$eq": "a"}},
    {"topic": {"$ne": "a"}},
    {"topic": None},
    {"topic": {"$ne": None}},
    {"topic": {"$in": ["a", "b"]}},
    {"topic": {"$in": ["a", None]}},
    {"topic": {"$nin": ["a"]}},
    {"topic": {"$nin": ["a", None]}},
    {"topic": {"$in": []}},
    {"topic": {"$nin": []}},
    {"n": 8},
    {"n": 9.0},
    {"n": 17},
    {"n": 2.5},
    {"n": "3"},
    {"n": {"$gt": 20}},
    {"n": {"$gte": 8, "$lt": 30}},
    {"n": {"$lte": 0}},
    {"n": {"$gt": -10.5, "$lte": 10}},
    {"n": {"$in": [1, 2.5, 9.0, "3", True]}},
    {"n": {"$ne": 8}},
    {"n": {"$nin": [8, 10.5, None]}},
    {"flag": True},
    {"flag": 1},
    {"flag": {"$ne": False}},
    {"flag": {"$in": [True, False]}},
    {"a.b": "dot"},
    {'quote"d': 1},
    {"first_name": "x"},
    {"first__name": "y"},
    {"missing": 1},
    {"missing": {"$ne": 1}},
    {"missing": {"$nin": ["x"]}},
    {"missing": {"$ne": None}},
    {"$and": [{"topic": "a"}, {"n": {"$gte": 16}}]},
    {"topic": {"$in": ["a", "b"]}, "n": {"$ne": 0}},
]
EXPECTED_EMPTY = [{"topic": {"$in": []}}, {"missing": 1}, {"missing": {"$ne": None}}]
EXPECTED_ALL = [{"topic": {"$nin": []}}, {"missing": {"$ne": 1}}, {"missing": {"$nin": ["x"]}}]


def reference(spec: dict) -> set[str]:
    conditions = parse_filter(spec)
    return {doc_id for doc_id, metadata in TRICKY if matches(conditions, metadata)}


@pytest.fixture(scope="module", params=BACKENDS)
def tricky_index(request, tmp_path_factory, tiny_model):
    index = open_index(request.param, tmp_path_factory.mktemp("tricky"), tiny_model)
    texts = [f"passage {i} about " + " ".join(["river", "forest", "desert"][: 1 + i % 3])
             for i in range(len(TRICKY))]
    index.add(texts, ids=[i for i, _ in TRICKY], metadatas=[m for _, m in TRICKY])
    yield index
    index.close()


def test_the_filter_cases_are_not_vacuous():
    sizes = {str(spec): len(reference(spec)) for spec in FILTERS}
    assert [spec for spec in FILTERS if sizes[str(spec)] == 0] == EXPECTED_EMPTY
    assert [spec for spec in FILTERS if sizes[str(spec)] == len(TRICKY)] == EXPECTED_ALL


@pytest.mark.parametrize("spec", FILTERS, ids=str)
def test_each_filter_returns_exactly_the_matching_documents(tricky_index, spec):
    expected = reference(spec)
    hits = tricky_index.search("river forest", k=len(TRICKY), filter=spec)
    assert {h.id for h in hits} == expected
    assert len(hits) == len(expected)
    few = tricky_index.search("river forest", k=3, filter=spec)
    assert len(few) == min(3, len(expected)) and {h.id for h in few} <= expected
    assert all(h.metadata == dict(TRICKY)[h.id] for h in few)


STRING_RANGES = [{"n": {"$gt": "2"}}, {"topic": {"$lte": "b"}}]


@pytest.mark.parametrize("spec", STRING_RANGES, ids=str)
def test_string_ranges_are_exact_or_refused(tricky_index, spec):
    """Qdrant orders only numbers and datetimes: it refuses string bounds instead of guessing."""
    if isinstance(tricky_index, QdrantIndex):
        with pytest.raises(InvalidInputError, match="strings by order"):
            tricky_index.search("river", k=5, filter=spec)
    else:
        hits = tricky_index.search("river", k=len(TRICKY), filter=spec)
        assert {h.id for h in hits} == reference(spec) != set()


def test_filtered_k_hits_on_a_larger_collection(filled):
    for spec in ({"even": True}, {"n": {"$gte": 30}}, {"group": {"$in": ["g1", "g2", "g3"]}}):
        expected = reference_of(filled, spec)
        hits = filled.search("alpha beta", k=4, filter=spec)
        assert len(hits) == min(4, len(expected)) and {h.id for h in hits} <= expected


def reference_of(index, spec) -> set[str]:
    ids = [f"d{i}" for i in range(40)]
    conditions = parse_filter(spec)
    return {d.id for d in index.get(ids) if matches(conditions, d.metadata)}


# -- bad input ------------------------------------------------------------------------------------
BAD = [
    ("lone string", lambda ix: ix.add("not a list"), InvalidInputError),
    ("empty text", lambda ix: ix.add(["fine", ""]), InvalidInputError),
    ("duplicate ids", lambda ix: ix.add(["a", "b"], ids=["x", "x"]), InvalidInputError),
    ("ids count", lambda ix: ix.add(["a"], ids=["x", "y"]), InvalidInputError),
    ("metadata not JSON", lambda ix: ix.add(["a"], metadatas=[{"w": object()}]), InvalidInputError),
    ("metadata NaN", lambda ix: ix.add(["a"], metadatas=[{"x": float("nan")}]), InvalidInputError),
    ("empty query", lambda ix: ix.search("  "), InvalidInputError),
    ("k zero", lambda ix: ix.search("q", k=0), InvalidInputError),
    ("k string", lambda ix: ix.search("q", k="3"), InvalidInputError),
    ("k bool", lambda ix: ix.search("q", k=True), InvalidInputError),
    ("unknown operator", lambda ix: ix.search("q", filter={"f": {"$regex": "x"}}),
     InvalidInputError),
    ("top-level $or", lambda ix: ix.search("q", filter={"$or": [{"a": 1}]}),
     InvalidInputError),
    ("filter not a dict", lambda ix: ix.search("q", filter=["a"]), InvalidInputError),
    ("unknown option", lambda ix: ix.search("q", bogus=1), InvalidInputError),
    ("get lone string", lambda ix: ix.get("d1"), InvalidInputError),
    ("get non-string id", lambda ix: ix.get([1]), InvalidInputError),
    ("delete unknown", lambda ix: ix.delete(["d1", "ghost"]), DocumentNotFoundError),
    ("get unknown", lambda ix: ix.get(["ghost"]), DocumentNotFoundError),
    ("query of another dimension", lambda ix: ix.search_encoded(np.ones((4, 3))),
     InvalidInputError),
    ("vectors of another dimension",
     lambda ix: ix.add_encoded([np.ones((2, 3))], ["text"], ids=["new"]),
     IndexMismatchError),
]


@pytest.fixture(scope="module", params=BACKENDS)
def untouched(request, tmp_path_factory, tiny_model):
    """40 documents shared by the bad-input tests, which each check that they changed nothing."""
    index = open_index(request.param, tmp_path_factory.mktemp("bad"), tiny_model)
    texts, ids, metadatas = synthetic_docs(40)
    index.add(texts, ids=ids, metadatas=metadatas)
    yield index
    index.close()


@pytest.mark.parametrize(("case", "call", "error"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_the_same_error_and_changes_nothing(untouched, case, call, error):
    filled = untouched
    before = filled.count(), [(h.id, h.score) for h in filled.search("alpha river", k=5)]
    with pytest.raises(error):
        call(filled)
    assert (filled.count(), [(h.id, h.score) for h in filled.search("alpha river", k=5)]) == before


# -- async twins ----------------------------------------------------------------------------------
async def test_async_twins_match_the_sync_methods(index):
    texts, ids, metadatas = synthetic_docs(12)
    assert await index.aadd(texts, ids=ids, metadatas=metadatas) == ids
    assert await index.acount() == 12
    assert [d.text for d in await index.aget(["d3", "d1"])] == [texts[3], texts[1]]
    with pytest.raises(DocumentNotFoundError):
        await index.aget(["ghost"])
    found = await index.asearch("alpha river", k=5, filter={"even": True})
    assert [(h.id, h.score) for h in found] == [
        (h.id, h.score) for h in index.search("alpha river", k=5, filter={"even": True})]
    with pytest.raises(InvalidInputError):
        await index.asearch("q", k=0)
    with pytest.raises(DocumentNotFoundError):
        await index.adelete(["d1", "ghost"])
    assert await index.adelete(["d1", "ghost"], missing_ok=True) == 1
    assert await index.acount() == 11


async def test_concurrent_async_searches(filled):
    queries = ["alpha", "river forest", "omega tau", "desert valley"]
    results = await asyncio.gather(*(filled.asearch(q, k=3) for q in queries))
    assert [[h.id for h in r] for r in results] == [
        [h.id for h in filled.search(q, k=3)] for q in queries]


# -- the backends agree ---------------------------------------------------------------------------
def _assert_backends_agree(tmp_path, tiny_model, name: str, seed: int, searches) -> None:
    """Both backends, given the same documents, give the same scores for each
    ``(query, filter, mode)`` of ``searches``."""
    texts, ids, metadatas = synthetic_docs(40, seed=seed)
    # Qdrant keeps float16 vectors: the embedded index does too here, so scores are equal
    # (its int8 default scores within 8-bit precision of them, see test_int8_store.py).
    indexes = [open_index(b, tmp_path, tiny_model, name=f"{name}-{b}", codec="float16")
               for b in BACKENDS]
    try:
        for index in indexes:
            index.add(texts, ids=ids, metadatas=metadatas)
        for query, spec, mode in searches:
            embedded, qdrant = ({h.id: h.score for h in ix.search(query, k=40, filter=spec,
                                                                    mode=mode)}
                                for ix in indexes)
            assert embedded.keys() == qdrant.keys() and embedded
            for doc_id, score in embedded.items():
                assert qdrant[doc_id] == pytest.approx(score, abs=1e-4)
    finally:
        for index in indexes:
            index.close()


def test_raw_scores_agree_between_backends(tmp_path, tiny_model):
    _assert_backends_agree(tmp_path, tiny_model, "agree", 3, [
        ("alpha river", None, "colbert"), ("omega desert item", {"even": False}, "colbert"),
        ("mountain", {"n": {"$lt": 13}}, "colbert")])


def test_lexical_and_hybrid_scores_agree_between_backends(tmp_path, tiny_model):
    """One stage, two backends: the same texts give the same BM25 and fused scores."""
    _assert_backends_agree(tmp_path, tiny_model, "modes", 4, [
        (query, spec, mode) for mode in ("bm25", "hybrid")
        for query, spec in [("alpha river item", None), ("omega desert", {"even": False}),
                            ("mountain item 7", {"n": {"$lt": 13}})]])


# -- long documents as passages -----------------------------------------------------------------
def _long_text(words: int, tail: str = "") -> str:
    vocabulary = ["river", "stone", "market", "cloud", "engine", "garden", "letter", "winter"]
    return " ".join(vocabulary[(i * 7) % len(vocabulary)] for i in range(words)) + " " + tail


async def test_split_documents_stay_per_document(index, tiny_model):
    from colbridge.scoring import maxsim

    long = _long_text(300, "the lighthouse keeper painted the beacon violet")
    index.add([long, "violet beacon", "a lighthouse"], ids=["long", "a", "b"],
              metadatas=[{"n": 1}, {"n": 2}, {"n": 3}])
    layout = index._passages(["long"])["long"]
    assert len(layout) > 2 and index.count() == 3 and sorted(index.ids()) == ["a", "b", "long"]
    assert index.ids(filter={"n": 1}) == ["long"] and await index.acount() == 3
    (stored,) = index.get(["long"], with_vectors=True)
    assert stored.text == long and len(stored.vectors) == sum(p.rows for p in layout)
    query = "lighthouse keeper violet beacon"
    hits = index.search(query, k=3, explain=True)
    assert sorted(h.id for h in hits) == ["a", "b", "long"]  # k distinct documents
    hit = next(h for h in hits if h.id == "long")
    q = tiny_model.encode_query(query)
    scores = [maxsim(q, v) for v in
              tiny_model.encode_documents([long[p.start:p.end] for p in layout])]
    # int8 codes round every value: the stored MaxSim differs from the float one in the
    # fourth significant digit
    assert hit.score == pytest.approx(max(scores), rel=1e-3)
    spans = [(p.start, p.end) for p in layout]
    assert scores[spans.index(hit.passage)] == pytest.approx(max(scores), rel=1e-3)
    assert sum(m.score for m in hit.matches) == pytest.approx(hit.score, abs=1e-4)
    assert [h.id for h in index.search(query, k=1, filter={"n": 1})] == ["long"]
    assert {h.id for h in index.search(query, k=3, mode="hybrid")} == {
        "a", "b", "long"}
    index.add(["now short"], ids=["long"], metadatas=[{"n": 1}])  # upsert drops the passages
    assert index._passages(["long"]) == {} and index.count() == 3
    assert next(h for h in index.search(query, k=3) if h.id == "long").passage is None
    index.add([long], ids=["long"])
    assert index.delete(["long"]) == 1 and index.count() == 2 and sorted(index.ids()) == ["a", "b"]
    assert {h.id for h in index.search(query, k=3)} == {"a", "b"}
