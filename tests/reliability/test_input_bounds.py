"""Bad input that used to slip through: deep filters, zero and non-finite vectors, non-unit
queries, NumPy integers for k. Each gets a typed error (or is accepted as documented) and
changes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from colbridge import EmbeddedIndex, InvalidInputError
from colbridge.filters import MAX_FILTER_DEPTH, parse_filter
from colbridge.ingest import read_records

from .conftest import HashEncoder, word_vectors


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """30 documents from the hash encoder (no weights to load)."""
    ix = EmbeddedIndex(tmp_path_factory.mktemp("bounds") / "index", model=HashEncoder())
    texts = [f"document {i} about {'rivers' if i % 2 else 'mountains'} and word{i}"
             for i in range(30)]
    ix.add(texts, ids=[f"d{i}" for i in range(30)], metadatas=[{"n": i} for i in range(30)])
    yield ix
    ix.close()


def nested_and(depth: int) -> dict:
    spec: dict = {"n": 3}
    for _ in range(depth):
        spec = {"$and": [spec]}
    return spec


# -- filter depth -------------------------------------------------------------------------------
def test_filters_nested_to_the_limit_work(index):
    assert parse_filter(nested_and(MAX_FILTER_DEPTH)) == parse_filter({"n": 3})
    query = word_vectors("word3")
    assert [h.id for h in index.search_encoded(query, k=5, filter=nested_and(MAX_FILTER_DEPTH))] \
        == ["d3"]


@pytest.mark.parametrize("depth", [MAX_FILTER_DEPTH + 1, 1_000, 50_000])
def test_deeper_filters_are_refused(index, depth):
    with pytest.raises(InvalidInputError, match=f"nested deeper than {MAX_FILTER_DEPTH}"):
        parse_filter(nested_and(depth))
    with pytest.raises(InvalidInputError, match="nested deeper"):
        index.search_encoded(word_vectors("word3"), k=5, filter=nested_and(depth))


def test_a_deep_json_line_is_refused_with_its_place(tmp_path):
    deep = "[" * 5_000 + "]" * 5_000
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"id": "ok", "text": "fine"}) + "\n"
                    + '{"id": "bad", "text": "x", "metadata": {"a": ' + deep + "}}\n")
    with pytest.raises(InvalidInputError, match=r"docs\.jsonl:2: .*nested too deeply"):
        list(read_records([path]))


def test_deep_metadata_in_a_json_line_names_the_line(tmp_path):
    value: object = 1
    for _ in range(40):
        value = {"x": value}
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"id": "deep", "text": "x", "metadata": value}) + "\n")
    with pytest.raises(InvalidInputError, match=r"docs\.jsonl:1: .*nested deeper than 16"):
        list(read_records([path]))


# -- stored vectors -----------------------------------------------------------------------------
@pytest.mark.parametrize("zero_rows, first", [(slice(None), 0), (slice(1, 2), 1)])
def test_zero_vectors_are_refused(index, zero_rows, first):
    vectors = np.ones((3, index.dimension), np.float32)
    vectors[zero_rows] = 0
    before = index.count()
    with pytest.raises(InvalidInputError, match=rf"embeddings\[1\] row {first} is all zeros"):
        index.add_encoded([word_vectors("fine"), vectors], ["fine", "zero vectors"],
                          ids=["fine", "zero"])
    assert index.count() == before
    assert index.get(["fine", "zero"], missing_ok=True) == []


# -- query vectors ------------------------------------------------------------------------------
@pytest.mark.parametrize("exact_threshold", [0, 512])  # the graph path and the exact path
def test_a_non_unit_query_is_normalised(index, exact_threshold):
    unit = word_vectors("rivers word7")
    expected = index.search_encoded(unit, k=5, exact_threshold=exact_threshold)
    scaled = unit * np.array([[3.0], [0.25]], np.float32)
    hits = index.search_encoded(scaled, k=5, exact_threshold=exact_threshold)
    assert [h.id for h in hits] == [h.id for h in expected]
    assert [h.score for h in hits] == pytest.approx([h.score for h in expected], abs=1e-4)


@pytest.mark.parametrize("value", [np.nan, np.inf, 0.0])
def test_non_finite_or_zero_query_rows_are_refused(index, value):
    query = word_vectors("rivers word7")
    query[1] = value
    with pytest.raises(InvalidInputError, match="query embedding"):
        index.search_encoded(query, k=3)
    with pytest.raises(InvalidInputError, match="query embedding"):
        index.search_encoded(query, k=3, exact_threshold=0)


# -- k ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [np.int64(3), np.int32(3), np.uint8(3)])
def test_numpy_integers_are_accepted_for_k(index, k):
    hits = index.search_encoded(word_vectors("rivers"), k=k)
    assert len(hits) == 3
    assert len(index.search("rivers", k=k)) == 3


@pytest.mark.parametrize("k", [np.bool_(True), np.float64(3.0), np.int64(0), np.int64(10**6)])
def test_other_numpy_values_for_k_are_refused(index, k):
    with pytest.raises(InvalidInputError, match="k must be"):
        index.search_encoded(word_vectors("rivers"), k=k)


def test_huge_but_finite_vectors_keep_their_direction(index):
    big = word_vectors("rivers word9") * np.float32(1e30)  # the float32 squares overflow
    assert [h.id for h in index.search_encoded(big, k=3)] == [
        h.id for h in index.search_encoded(word_vectors("rivers word9"), k=3)]
    index.add_encoded([word_vectors("zebra quokka") * np.float32(1e30)], ["huge vectors"],
                      ids=["huge"])
    best = index.search_encoded(word_vectors("zebra quokka"), k=1)[0]
    assert best.id == "huge" and best.score == pytest.approx(2.0, abs=1e-3)
    index.delete(["huge"])
