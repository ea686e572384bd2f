"""SearchOptions: validation, the collection-size rule for unset breadths, and its use by
searches."""

from __future__ import annotations

import pytest
from colbridge import EmbeddedIndex, InvalidInputError, SearchOptions
from colbridge.index import embedded
from colbridge.index.embedded import BREADTH_BASE_DOCUMENTS, BREADTH_GROWTH, _traced_search

from .conftest import synthetic_docs

BASE = {"token_k": 192, "ef": 192, "max_candidates": 768}


def breadth(options: SearchOptions) -> dict[str, int | None]:
    return {name: getattr(options, name) for name in BASE}


@pytest.mark.parametrize("documents", [0, 1, 900, BREADTH_BASE_DOCUMENTS])
def test_unset_breadth_is_the_base_up_to_the_base_size(documents):
    assert breadth(SearchOptions()._resolved(documents)) == BASE


def test_unset_breadth_grows_as_the_power_of_the_size_ratio():
    resolved = SearchOptions()._resolved(4 * BREADTH_BASE_DOCUMENTS)
    factor = 4 ** BREADTH_GROWTH
    assert breadth(resolved) == {name: round(base * factor) for name, base in BASE.items()}
    sizes = [BREADTH_BASE_DOCUMENTS * m for m in (1, 2, 5, 25, 100)]
    values = [SearchOptions()._resolved(n).max_candidates for n in sizes]
    assert values == sorted(values) and values[0] < values[-1]


def test_graph_breadth_stops_at_the_most_neighbours_a_search_fetches():
    huge = SearchOptions()._resolved(10 ** 9 * BREADTH_BASE_DOCUMENTS)
    assert huge.token_k == huge.ef == embedded._MAX_TOKEN_K
    assert huge.max_candidates > embedded._MAX_TOKEN_K


def test_given_values_are_kept_at_any_size():
    given = SearchOptions(token_k=16, max_candidates=64, exact_threshold=3)
    for documents in (10, 100 * BREADTH_BASE_DOCUMENTS):
        resolved = given._resolved(documents)
        assert (resolved.token_k, resolved.max_candidates, resolved.exact_threshold) == (16, 64, 3)
    assert given._resolved(10).ef == 192
    assert given._resolved(100 * BREADTH_BASE_DOCUMENTS).ef > 192  # ef alone was left unset


@pytest.mark.parametrize("bad", [{"token_k": 0}, {"ef": True}, {"max_candidates": 2.5},
                                 {"exact_threshold": None}, {"exact_threshold": -1},
                                 {"rescore": -1}, {"rescore": None}, {"rescore": 1.0}])
def test_bad_values_are_refused(bad):
    name = next(iter(bad))
    with pytest.raises(InvalidInputError, match=f"search option {name} must be an integer"):
        SearchOptions(**bad)


@pytest.fixture
def rule_at_small_sizes(monkeypatch):
    """The rule scaled down so that 40 documents count as a large collection: the base
    breadth holds up to 10 documents, then grows linearly (40 documents: 4 times the base)."""
    monkeypatch.setattr(embedded, "BREADTH_BASE_DOCUMENTS", 10)
    monkeypatch.setattr(embedded, "BREADTH_GROWTH", 1.0)
    monkeypatch.setattr(embedded, "_BASE_BREADTH", {"token_k": 2, "ef": 2, "max_candidates": 3})


def test_searches_use_the_breadth_for_the_index_size(tmp_path, tiny_model, rule_at_small_sizes):
    index = EmbeddedIndex(tmp_path / "index", model=tiny_model,
                          search_options=SearchOptions(exact_threshold=0))
    texts, ids, metadatas = synthetic_docs(40)
    index.add(texts, ids=ids, metadatas=metadatas)
    try:
        shown = index.stats()["search_options"]
        assert {name: shown[name] for name in BASE} == {"token_k": 8, "ef": 8,
                                                        "max_candidates": 12}
        query = tiny_model.encode_query(texts[3])
        unset = _traced_search(index, query, 5)
        assert len(unset["first_stage"]) > 12 and len(unset["scored"]) == 12
        given = _traced_search(index, query, 5, max_candidates=6)
        assert len(given["scored"]) == 6
        index.delete(ids[20:])  # 20 documents left: twice the base
        assert len(_traced_search(index, query, 5)["scored"]) == 6
    finally:
        index.close()


def test_a_traced_search_finds_what_search_encoded_finds(large_index, tiny_model):
    texts = [d.text for d in large_index.get(["d4", "d77", "d500"])]
    for text in texts:
        query = tiny_model.encode_query(text)
        options = {"exact_threshold": 0, "token_k": 16, "ef": 64, "max_candidates": 20}
        trace = _traced_search(large_index, query, 10, **options)
        assert trace["hits"] == [h.id for h in large_index.search_encoded(query, k=10,
                                                                           **options)]
        assert len(trace["first_stage"]) > len(trace["scored"]) == 20
        assert set(trace["scored"].tolist()) <= set(trace["first_stage"].tolist())
        whole = _traced_search(large_index, query, 10, exact_threshold=10_000)
        assert whole["first_stage"] is None and len(whole["scored"]) == 900
