"""The public reads and deletes that copies, MMR and adapters build on, on every backend:
``get(with_vectors=True)``, ``export()``, ``ids(filter=)``, ``delete(filter=)`` and the
``SearchMode`` enum. Same ``index`` fixture as ``test_contract.py``: embedded and Qdrant."""

from __future__ import annotations

import numpy as np
import pytest
from colbridge import DocumentNotFoundError, InvalidInputError, SearchMode
from colbridge.filters import matches, parse_filter

from .conftest import open_index, synthetic_docs


def _unit_f16(vectors: np.ndarray) -> np.ndarray:
    """What an index keeps of vectors handed to ``add_encoded``: unit rows, float16 precision."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit.astype(np.float16).astype(np.float32)


def _tolerance(index) -> float:
    """How far a stored value may be from what was added: float16 rounding, or for the int8
    codec one step of its current parameters (coding, then possibly a retrain's re-coding)."""
    params = getattr(getattr(index, "_vectors", None), "params", None)
    return 1e-3 if params is None else float(params.scale.max()) + 1e-3


def _matching(index, spec) -> set[str]:
    conditions = parse_filter(spec)
    return {d.id for d in index.get([f"d{i}" for i in range(40)], missing_ok=True)
            if matches(conditions, d.metadata)}


def test_get_with_vectors_gives_the_stored_token_vectors(index, tiny_model):
    rng = np.random.default_rng(4)
    vectors = [rng.normal(size=(n, tiny_model.dimension)).astype(np.float32) for n in (2, 7, 4)]
    index.add_encoded(vectors, ["two", "seven", "four"], ids=["a", "b", "c"],
                      metadatas=[{"n": 2}, None, {"n": 4}])
    got = index.get(["c", "a", "ghost"], missing_ok=True, with_vectors=True)
    assert [(d.id, d.text, d.metadata) for d in got] == [("c", "four", {"n": 4}), ("a", "two",
                                                                                  {"n": 2})]
    for document, expected in zip(got, [vectors[2], vectors[0]], strict=True):
        assert document.vectors.dtype == np.float32 and document.vectors.shape == expected.shape
        np.testing.assert_allclose(document.vectors, _unit_f16(expected), atol=_tolerance(index))
    assert all(d.vectors is None for d in index.get(["a", "b"]))
    assert index.get(["a"], with_vectors=True) == index.get(["a"])  # vectors are not compared
    with pytest.raises(DocumentNotFoundError):
        index.get(["a", "ghost"], with_vectors=True)
    assert index.get(["ghost"], missing_ok=True, with_vectors=True) == []
    assert index.get([], with_vectors=True) == []


def test_vectors_after_an_upsert_are_the_new_ones(index, tiny_model):
    rng = np.random.default_rng(5)
    old, new = (rng.normal(size=(n, tiny_model.dimension)).astype(np.float32) for n in (3, 6))
    index.add_encoded([old], ["old"], ids=["x"])
    index.add_encoded([new], ["new"], ids=["x"])
    (document,) = index.get(["x"], with_vectors=True)
    assert document.text == "new"
    np.testing.assert_allclose(document.vectors, _unit_f16(new), atol=_tolerance(index))


def test_export_streams_every_document_once_with_its_vectors(filled):
    filled.delete(["d3", "d17"])
    filled.add(["replaced text about the ocean"], ids=["d5"], metadatas=[{"group": "new"}])
    exported = list(filled.export(batch_size=7))
    ids = [d.id for d in exported]
    assert sorted(ids) == sorted(f"d{i}" for i in range(40) if i not in (3, 17))
    stored = {d.id: d for d in filled.get(ids, with_vectors=True)}
    for document in exported:
        assert document == stored[document.id]  # id, text, metadata
        np.testing.assert_array_equal(document.vectors, stored[document.id].vectors)
    assert {d.id: d.text for d in exported}["d5"] == "replaced text about the ocean"


def test_export_of_an_empty_index_is_empty(index):
    assert list(index.export()) == []
    with pytest.raises(InvalidInputError, match="batch_size"):
        next(index.export(batch_size=0))


def test_ids_lists_the_documents_a_filter_matches(filled):
    assert sorted(filled.ids()) == sorted(f"d{i}" for i in range(40))
    for spec in ({"even": True}, {"n": {"$gte": 30}}, {"group": {"$in": ["g1", "g2"]}},
                 {"group": {"$in": []}}, {"missing": 1}):
        assert sorted(filled.ids(filter=spec)) == sorted(_matching(filled, spec))
    with pytest.raises(InvalidInputError):
        filled.ids(filter={"n": {"$regex": "x"}})


def test_delete_by_filter_deletes_exactly_the_matches(filled):
    spec = {"n": {"$lt": 12}, "even": False}
    doomed = _matching(filled, spec)
    assert len(doomed) == 6
    assert filled.delete(filter=spec) == 6
    assert filled.count() == 34
    assert not doomed & set(filled.ids())
    assert not doomed & {h.id for h in filled.search("alpha river", k=40)}
    assert filled.delete(filter=spec) == 0
    assert filled.delete(filter={"group": {"$in": []}}) == 0


@pytest.mark.parametrize(("arguments", "message"), [
    ({"ids": ["d1"], "filter": {"even": True}}, "both"),
    ({}, "neither"),
    ({"filter": {}}, "at least one condition"),
    ({"filter": {"$and": []}}, "non-empty list"),
    ({"filter": {"n": {"$near": 3}}}, "operator"),
])
def test_delete_takes_ids_or_a_filter(filled, arguments, message):
    with pytest.raises(InvalidInputError, match=message):
        filled.delete(**arguments)
    assert filled.count() == 40


async def test_async_twins_of_the_public_reads(filled):
    assert await filled.aids(filter={"even": True}) == filled.ids(filter={"even": True})
    exported = [d async for d in filled.aexport(batch_size=9)]
    assert [d.id for d in exported] == [d.id for d in filled.export(batch_size=9)]
    assert all(d.vectors is not None for d in exported)
    (document,) = await filled.aget(["d4"], with_vectors=True)
    (expected,) = filled.get(["d4"], with_vectors=True)
    np.testing.assert_array_equal(document.vectors, expected.vectors)
    assert await filled.adelete(filter={"group": "g4"}) == 2
    assert filled.count() == 38
    with pytest.raises(InvalidInputError):
        await filled.adelete()


def test_search_mode_enum_is_accepted_wherever_a_mode_string_is(filled):
    def ranked(**kwargs):
        return [(h.id, h.score) for h in filled.search("alpha river", k=5, **kwargs)]

    assert ranked(mode=SearchMode.COLBERT) == ranked(mode="colbert") == ranked()
    query = filled.model.encode_query("alpha river")
    assert [h.id for h in filled.search_encoded(query, k=5, mode=SearchMode.COLBERT)] == [
        h.id for h in filled.search_encoded(query, k=5)]
    for mode in SearchMode:  # every backend searches in every mode
        assert ranked(mode=mode) == ranked(mode=mode.value)
    assert [m.value for m in SearchMode] == ["colbert", "bm25", "hybrid"]
    assert f"{SearchMode.HYBRID}" == "hybrid"


def test_embedded_export_sees_writes_made_while_it_runs(tmp_path, tiny_model):
    """Document numbers only grow, so the export reaches documents written after it started,
    and a compaction between batches changes no vectors it hands out (beyond an int8 retrain's
    re-coding, when a write falls outside the codec's range)."""
    index = open_index("embedded", tmp_path, tiny_model)
    try:
        texts, ids, metadatas = synthetic_docs(30)
        index.add(texts, ids=ids, metadatas=metadatas)
        before = {d.id: d.vectors for d in index.export()}
        stream = index.export(batch_size=4)
        first = [next(stream) for _ in range(4)]
        index.add(["a late arrival about the desert"], ids=["late"])
        index.add(["d20 rewritten about the ocean"], ids=["d20"])
        index.delete(["d25"])
        index.compact()
        rest = list(stream)
        seen = [d.id for d in first + rest]
        assert "late" in seen and "d25" not in seen
        assert sorted(seen) == sorted(set(seen))  # none twice: d20 was not reached before
        assert [d.text for d in rest if d.id == "d20"] == ["d20 rewritten about the ocean"]
        for document in first + rest:
            if document.id in before and document.id != "d20":
                np.testing.assert_allclose(document.vectors, before[document.id],
                                           atol=_tolerance(index) if index._vectors.generation > 1
                                           else 0)
    finally:
        index.close()
