"""The embedded index: writes, reads, search paths, filters, persistence, compaction."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from colbridge import (
    ColBERTModel,
    DocumentNotFoundError,
    EmbeddedIndex,
    GraphParams,
    IndexClosedError,
    IndexMismatchError,
)
from colbridge.scoring import maxsim

from .conftest import synthetic_docs


def test_add_get_count(empty_index):
    ids = empty_index.add(["first text", "second text"], ids=["a", "b"],
                          metadatas=[{"k": 1}, None])
    assert ids == ["a", "b"]
    assert empty_index.count() == len(empty_index) == 2
    a, b = empty_index.get(["a", "b"])
    assert (a.id, a.text, a.metadata) == ("a", "first text", {"k": 1})
    assert (b.id, b.metadata) == ("b", {})


def test_ids_are_generated_when_absent(empty_index):
    ids = empty_index.add(["one", "two"])
    assert len(set(ids)) == 2 and all(isinstance(i, str) and i for i in ids)
    assert [d.text for d in empty_index.get(ids)] == ["one", "two"]


def test_upsert_replaces_text_metadata_and_vectors(small_index):
    small_index.add(["completely new words about volcanoes"], ids=["d3"], metadatas=[{"v": 2}])
    assert small_index.count() == 40
    (doc,) = small_index.get(["d3"])
    assert doc.text == "completely new words about volcanoes" and doc.metadata == {"v": 2}
    hits = small_index.search("completely new words about volcanoes", k=40)
    assert [h.id for h in hits].count("d3") == 1
    assert next(h for h in hits if h.id == "d3").text.startswith("completely")


def test_delete_hides_documents_at_once(small_index):
    query = small_index.get(["d5"])[0].text
    assert small_index.delete(["d5", "d6"]) == 2
    assert small_index.count() == 38
    assert "d5" not in {h.id for h in small_index.search(query, k=38)}
    with pytest.raises(DocumentNotFoundError):
        small_index.get(["d5"])
    assert small_index.get(["d5", "d7"], missing_ok=True)[0].id == "d7"


def test_delete_of_unknown_ids_deletes_nothing(small_index):
    with pytest.raises(DocumentNotFoundError, match="nope"):
        small_index.delete(["d1", "nope"])
    assert small_index.count() == 40
    assert small_index.delete(["d1", "nope"], missing_ok=True) == 1


def test_small_collections_are_scored_exactly(tiny_model, small_index):
    """Below exact_threshold every document is scored; scores equal MaxSim computed by hand."""
    texts, ids, _ = synthetic_docs(40)
    query = "gamma river forest"
    q = tiny_model.encode_query(query)
    expected = sorted(((maxsim(q, d), i) for d, i in zip(tiny_model.encode_documents(texts), ids)),
                      reverse=True)
    hits = small_index.search(query, k=5)
    assert [h.id for h in hits] == [i for _, i in expected[:5]]
    np.testing.assert_allclose([h.score for h in hits], [s for s, _ in expected[:5]], atol=2e-2)
    assert all(0.0 <= h.normalized_score <= 1.0 for h in hits)
    assert hits[0].normalized_score == pytest.approx(hits[0].score / tiny_model.query_length, abs=1e-6)


def test_graph_search_agrees_with_exhaustive(large_index):
    """With the graph stage forced on, top-10s match exhaustive exact MaxSim."""
    texts, _, _ = synthetic_docs(30, seed=99)
    overlaps = []
    for query in texts:
        exact = [h.id for h in large_index.search(query, k=10, exact_threshold=10**6)]
        graph = [h.id for h in large_index.search(query, k=10, exact_threshold=0)]
        overlaps.append(len(set(exact) & set(graph)) / 10)
    assert np.mean(overlaps) >= 0.95


@pytest.mark.parametrize("exact_threshold", [0, 10**6])
def test_filters_return_k_matching_hits(large_index, exact_threshold):
    # group g7 holds 45 of 900 documents: "top-k then filter" would usually return fewer than k
    for spec, check in [
        ({"group": "g7"}, lambda m: m["group"] == "g7"),
        ({"n": {"$gte": 100, "$lt": 130}}, lambda m: 100 <= m["n"] < 130),
        ({"group": {"$in": ["g1", "g2"]}, "even": True},
         lambda m: m["group"] in ("g1", "g2") and m["even"]),
    ]:
        hits = large_index.search("alpha omega river", k=10, filter=spec,
                                  exact_threshold=exact_threshold)
        assert len(hits) == 10
        assert all(check(h.metadata) for h in hits)


def test_filter_with_fewer_matches_than_k(large_index):
    hits = large_index.search("alpha", k=10, filter={"n": {"$in": [3, 4, 5]}}, exact_threshold=0)
    assert sorted(h.id for h in hits) == ["d3", "d4", "d5"]
    assert large_index.search("alpha", k=10, filter={"group": "nowhere"}) == []


def test_filtered_graph_search_matches_exact_within_the_filter(large_index):
    spec = {"group": {"$in": ["g3", "g4", "g5", "g6"]}}
    exact = [h.id for h in large_index.search("delta tau ocean", k=10, filter=spec,
                                              exact_threshold=10**6)]
    graph = [h.id for h in large_index.search("delta tau ocean", k=10, filter=spec,
                                              exact_threshold=0)]
    assert len(set(exact) & set(graph)) >= 9


def test_k_larger_than_collection(small_index):
    assert len(small_index.search("alpha", k=1000)) == 40


def test_empty_index_search(empty_index):
    empty_index.add(["gone soon"], ids=["x"])  # an index exists only once something was added
    empty_index.delete(["x"])
    assert empty_index.search("anything", k=3) == []
    assert empty_index.count() == 0


def test_search_encoded_equals_search(small_index, tiny_model):
    query = "sigma river"
    direct = small_index.search(query, k=5)
    encoded = small_index.search_encoded(tiny_model.encode_query(query), k=5)
    assert [(h.id, round(h.score, 4)) for h in direct] == [(h.id, round(h.score, 4)) for h in encoded]


def test_add_encoded_stores_given_vectors(empty_index, tiny_model):
    texts = ["precomputed one", "precomputed two"]
    vectors = tiny_model.encode_documents(texts)
    empty_index.add_encoded(vectors, texts, ids=["p1", "p2"])
    hits = empty_index.search("precomputed two", k=2)
    assert {h.id for h in hits} == {"p1", "p2"}
    assert [h.id for h in hits] == [h.id for h in empty_index.search("precomputed two", k=2)]


def test_compaction_drops_dead_rows_and_keeps_results(tmp_path, tiny_model):
    texts, ids, metas = synthetic_docs(60)
    index = EmbeddedIndex(tmp_path / "ix", model=tiny_model, compact_threshold=0.9,
                          graph=GraphParams(pool=1))  # one graph item per token vector
    index.add(texts, ids=ids, metadatas=metas)
    index.delete(ids[:20])
    assert index.stats()["dead_token_vectors"] > 0
    before = [(h.id, round(h.score, 3)) for h in index.search("mu nu xi", k=10, exact_threshold=0)]
    index.compact()
    stats = index.stats()
    assert stats["dead_token_vectors"] == 0 and stats["graph_items"] == stats["token_vectors"]
    assert sorted(p.name for p in (tmp_path / "ix").glob("vectors-*")) == ["vectors-1.json",
                                                                        "vectors-1.u8"]
    after = [(h.id, round(h.score, 3)) for h in index.search("mu nu xi", k=10, exact_threshold=0)]
    assert after == before
    index.close()


def test_automatic_compaction_past_threshold(tmp_path, tiny_model):
    texts, ids, _ = synthetic_docs(20)
    index = EmbeddedIndex(tmp_path / "ix", model=tiny_model, compact_threshold=0.3)
    index.add(texts, ids=ids)
    index.delete(ids[:10])  # about half the rows die: compaction runs during the delete
    assert index.stats()["dead_token_vectors"] == 0
    assert index.count() == 10
    assert {h.id for h in index.search("alpha", k=20)} == set(ids[10:])
    index.close()


PROBE = textwrap.dedent("""
    import json, sys
    from colbridge import ColBERTModel, EmbeddedIndex
    model = ColBERTModel(sys.argv[2], name="tiny-test-model", device="cpu")
    with EmbeddedIndex(sys.argv[1], model=model, create=False) as index:
        out = {}
        for opts in ({}, {"exact_threshold": 0}):
            hits = index.search("alpha river", k=5, **opts)
            out[str(opts)] = [[h.id, round(h.score, 4)] for h in hits]
        out["count"] = index.count()
    print(json.dumps(out))
""")


def test_reopening_in_a_new_process_gives_identical_results(tmp_path, tiny_model, tiny_model_path):
    path = tmp_path / "ix"
    texts, ids, metas = synthetic_docs(600, seed=3)
    with EmbeddedIndex(path, model=tiny_model) as index:
        index.add(texts, ids=ids, metadatas=metas)
        index.delete(ids[:5])
        here = {str(o): [[h.id, round(h.score, 4)] for h in index.search("alpha river", k=5, **o)]
                for o in ({}, {"exact_threshold": 0})}
    result = subprocess.run([sys.executable, "-c", PROBE, str(path), str(tiny_model_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    there = json.loads(result.stdout.strip().splitlines()[-1])
    assert there.pop("count") == 595
    assert there == here


def test_unsaved_graph_rows_are_recovered_from_the_vectors(tmp_path, tiny_model):
    """The graph is a checkpointed cache: rows written after its checkpoint are re-added on open."""
    path = tmp_path / "ix"
    texts, ids, _ = synthetic_docs(600, seed=4)
    index = EmbeddedIndex(path, model=tiny_model, graph=GraphParams(pool=1))
    index.add(texts, ids=ids)
    # Simulate a crash: no close(), so no checkpoint is written.
    assert not list(path.glob("graph-*.voy"))
    reopened = EmbeddedIndex(path, model=tiny_model)
    assert reopened.stats()["graph_items"] == reopened.stats()["token_vectors"]
    assert [h.id for h in reopened.search(texts[10], k=3, exact_threshold=0)][0] == ids[10]
    reopened.close()
    index._store.close()


def test_model_with_another_name_is_refused(small_index, offline_model):
    with pytest.raises(IndexMismatchError, match="tiny-test-model"):
        EmbeddedIndex(small_index.path, model=offline_model)


def test_model_with_another_dimension_is_refused(small_index):
    impostor = ColBERTModel("offline-minilm", name="tiny-test-model", device="cpu")
    index = EmbeddedIndex(small_index.path, model=impostor)
    with pytest.raises(IndexMismatchError, match="16-d"):
        index.search("alpha")
    with pytest.raises(IndexMismatchError):
        index.add(["more"])
    assert index.count() == 40
    index.close()


def test_model_is_taken_from_the_manifest(small_index, tiny_model_path):
    """Reopening without a model uses the name recorded at creation."""
    small_index.close()
    index = EmbeddedIndex(small_index.path)
    assert index.model.name == "tiny-test-model"
    assert not index.model.loaded  # nothing was encoded yet
    assert index.count() == 40
    index.close()


async def test_a_closed_index_says_so_in_its_own_error_type(small_index):
    small_index.close()
    calls = [lambda: small_index.count(), lambda: small_index.search("alpha", k=2),
             lambda: small_index.get(["d1"]), lambda: small_index.add(["new"], ids=["new"])]
    for call in calls:
        with pytest.raises(IndexClosedError, match="closed"):
            call()
    with pytest.raises(IndexClosedError, match="closed"):
        await small_index.asearch("alpha", k=2)
    with pytest.raises(IndexClosedError, match="closed"):
        await small_index.acount()


def test_stats(small_index):
    stats = small_index.stats()
    assert stats["documents"] == 40 and stats["dimension"] == 16
    # Runs of 8 consecutive tokens of a document make one graph item (GraphParams defaults).
    assert (stats["graph"]["pool"], stats["graph"]["pooling"]) == (8, "kmeans")
    assert stats["token_vectors"] > 40
    assert stats["token_vectors"] / 8 <= stats["graph_items"] < stats["token_vectors"] / 2
    assert stats["bytes_on_disk"] > 0 and "manifest.json" in stats["files"]
