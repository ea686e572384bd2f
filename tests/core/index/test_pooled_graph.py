"""A graph over pooled token vectors: runs of consecutive tokens, and the row -> document map
that reads graph ids back to documents from the documents' row ranges."""

from __future__ import annotations

import json

import numpy as np
import pytest
from colbridge import EmbeddedIndex, GraphParams, InvalidInputError
from colbridge.index.embedded import _build_snapshot
from colbridge.index.graph import pooled_items
from colbridge.index.manifest import FORMAT_VERSION

DIM = 16


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _documents(n, seed=0, lengths=(3, 40)):
    rng = np.random.default_rng(seed)
    return [_unit(rng.standard_normal((int(rng.integers(*lengths)), DIM))) for _ in range(n)]


def _runs(count, pool):
    return -(-count // pool)


def test_runs_are_normalised_means_of_consecutive_tokens_within_each_document():
    rng = np.random.default_rng(1)
    counts = np.array([5, 1, 12])
    starts = np.array([0, 5, 6])
    matrix = _unit(rng.standard_normal((18, 8))).astype(np.float16)
    ids, vectors = pooled_items(matrix, starts, counts, 4, "runs")
    # runs never cross documents, and a document's last run may be shorter
    assert ids.tolist() == [0, 4, 5, 6, 10, 14]
    ends = [4, 5, 6, 10, 14, 18]
    for item, (first, end) in enumerate(zip(ids.tolist(), ends, strict=True)):
        mean = matrix[first:end].astype(np.float32).sum(axis=0)
        np.testing.assert_allclose(vectors[item], mean / np.linalg.norm(mean), atol=1e-6)


def test_pooling_must_be_known():
    with pytest.raises(InvalidInputError, match="pooling"):
        GraphParams(pooling="adjacent")


def test_row_map_finds_each_rows_document_and_nothing_for_dead_rows():
    vectors = np.zeros((30, DIM), np.float16)
    # doc_no 2 is deleted (rows 10..14 are dead); rows 28..29 are past every document
    table = np.array([[0, 0, 4], [1, 4, 6], [3, 15, 5], [4, 20, 8]])
    snap, _ = _build_snapshot(vectors, table, None)
    expected = np.full(30, -1)
    for no, start, count in table.tolist():
        expected[start:start + count] = no
    assert snap.doc_nos_of_rows(np.arange(30)).tolist() == expected.tolist()
    assert snap.doc_nos_of_rows(np.array([[0, 99], [12, 21]])).tolist() == [[0, -1], [-1, 4]]
    assert snap.dead_rows == 30 - 23


def test_row_map_holds_when_rows_do_not_ascend_with_document_numbers():
    vectors = np.zeros((12, DIM), np.float16)
    table = np.array([[0, 8, 4], [1, 0, 3], [2, 3, 5]])
    snap, _ = _build_snapshot(vectors, table, None)
    assert snap.doc_nos_of_rows(np.arange(12)).tolist() == [1] * 3 + [2] * 5 + [0] * 4


def test_the_row_map_does_not_grow_with_the_token_count(tmp_path, tiny_model):
    """What a snapshot holds besides the vectors is per document, not per token vector."""
    docs = _documents(50, lengths=(200, 201))
    index = EmbeddedIndex(tmp_path / "ix", model=tiny_model)
    index.add_encoded(docs, [f"text {i}" for i in range(50)], ids=[f"d{i}" for i in range(50)])
    snap = index._snap
    per_document = sum(value.nbytes for name, value in vars(snap).items()
                       if isinstance(value, np.ndarray) and name not in ("vectors", "means"))
    assert snap.rows == 50 * 200
    assert per_document < 0.5 * snap.rows  # an int64 per row would be 16x this bound
    index.close()


def _graph_hits(index, docs, ids):
    """How many documents the graph stage ranks first for a query of their own tokens."""
    found = 0
    for doc, doc_id in zip(docs, ids, strict=True):
        hits = index.search_encoded(doc[:8], k=1, exact_threshold=0)
        found += bool(hits) and hits[0].id == doc_id
    return found


def _items(docs, pooling):
    """Graph items the documents make with pool 4: one per run, at most that for k-means
    (a cluster left empty is dropped)."""
    if pooling == "runs":
        return sum(_runs(len(d), 4) for d in docs)
    counts = np.array([len(d) for d in docs])
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    ids, _ = pooled_items(np.concatenate(docs), starts, counts, 4, pooling)
    return len(ids)


@pytest.mark.parametrize("pooling", ["runs", "kmeans"])
def test_pooled_graph_through_appends_deletes_compaction_and_reopening(tmp_path, tiny_model,
                                                                       pooling):
    path = tmp_path / "ix"
    docs = _documents(120, seed=2)
    ids = [f"d{i}" for i in range(120)]
    texts = [f"text {i}" for i in range(120)]
    params = GraphParams(pool=4, pooling=pooling)
    index = EmbeddedIndex(path, model=tiny_model, graph=params, compact_threshold=0.9)
    index.add_encoded(docs[:80], texts[:80], ids=ids[:80])
    index.add_encoded(docs[80:], texts[80:], ids=ids[80:])  # an append to a graph in use
    assert index.stats()["graph_items"] == _items(docs, pooling)
    assert _graph_hits(index, docs, ids) == 120

    gone = set(ids[:30])
    index.delete(ids[:30])
    assert index.stats()["dead_token_vectors"] == sum(len(d) for d in docs[:30])
    for doc in docs[:40]:
        assert not gone & {h.id for h in index.search_encoded(doc[:8], k=10, exact_threshold=0)}
    assert _graph_hits(index, docs[30:], ids[30:]) == 90

    index.compact()
    stats = index.stats()
    assert stats["dead_token_vectors"] == 0
    assert stats["graph_items"] == _items(docs[30:], pooling)
    assert _graph_hits(index, docs[30:], ids[30:]) == 90

    # rows written after the last checkpoint (no close: a crash) are caught up on opening
    more = _documents(10, seed=3)
    index.add_encoded(more, [f"more {i}" for i in range(10)], ids=[f"m{i}" for i in range(10)])
    reopened = EmbeddedIndex(path, model=tiny_model)
    assert reopened.manifest.graph == params
    assert reopened.stats()["graph_items"] == stats["graph_items"] + _items(more, pooling)
    assert _graph_hits(reopened, more, [f"m{i}" for i in range(10)]) == 10
    reopened.close()
    index._store.close()


@pytest.mark.parametrize(("removed", "pool", "pooling"),
                         [(("pooling",), 2, "similar"), (("pool", "pooling"), 1, "similar")])
def test_a_manifest_from_before_the_setting_opens_as_it_was_built(tmp_path, tiny_model, removed,
                                                                  pool, pooling):
    """Folders written before ``pooling`` (or ``pool``) existed keep the graph they were built
    with: similar-token clusters, or one item per token vector."""
    path = tmp_path / "ix"
    docs = _documents(30, seed=4)
    ids = [f"d{i}" for i in range(30)]
    with EmbeddedIndex(path, model=tiny_model, graph=GraphParams(pool=pool, pooling=pooling)) as ix:
        ix.add_encoded(docs, [f"text {i}" for i in range(30)], ids=ids)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["graph"]["pooling"] == pooling
    manifest["format_version"] = 1
    for name in removed:
        del manifest["graph"][name]
    (path / "manifest.json").write_text(json.dumps(manifest))
    for graph in path.glob("graph-*.voy"):  # rebuilt from the vectors with the old setting
        graph.unlink()
    with EmbeddedIndex(path, model=tiny_model) as index:
        assert (index.manifest.graph.pool, index.manifest.graph.pooling) == (pool, pooling)
        tokens = sum(len(d) for d in docs)
        if pool == 1:
            assert index.stats()["graph_items"] == tokens
        else:
            assert index.stats()["graph_items"] < tokens
        assert _graph_hits(index, docs, ids) == 30


def test_check_finds_a_graph_that_misses_documents_and_repair_rebuilds_it(tmp_path, tiny_model):
    from colbridge._files import file_digest
    from colbridge.check import check_index
    from colbridge.index.docstore import DocStore
    from colbridge.index.graph import TokenGraph
    from colbridge.index.manifest import Manifest

    path = tmp_path / "ix"
    docs = _documents(40, seed=5)
    ids = [f"d{i}" for i in range(40)]
    with EmbeddedIndex(path, model=tiny_model, graph=GraphParams(pool=4, pooling="runs")) as ix:
        ix.add_encoded(docs, [f"text {i}" for i in range(40)], ids=ids)
        snap = ix._snap
    assert check_index(path).ok
    # A checkpoint of the right name and checksum whose items stop after half the documents
    # (as a graph that a faulty catch-up never gave the rest would).
    (checkpoint,) = path.glob("graph-*.voy")
    params = Manifest.read(path).graph
    half = TokenGraph(DIM, params)
    live = snap.live[:20]
    half.add_documents(snap.vectors, snap.starts[live], snap.counts[live], covered_rows=snap.rows)
    half.save(path, 0)
    assert checkpoint.exists()
    store = DocStore(path)
    store.record_checksums({checkpoint.name: file_digest(checkpoint)})
    store.close()

    report = check_index(path)
    assert not report.ok and report.repairable
    assert any("too few items for 20 of the documents" in p for p in report.problems), \
        report.problems
    assert check_index(path, repair=True).ok
    with EmbeddedIndex(path, model=tiny_model) as index:
        assert _graph_hits(index, docs, ids) == 40


def test_a_version_2_folder_keeps_its_runs(tmp_path, tiny_model):
    """Folders from before k-means pooling (format 2, ``"runs"``) open as they were built: new
    documents and a graph rebuilt at compaction are pooled in runs, and the manifest is kept."""
    path = tmp_path / "ix"
    docs = _documents(40, seed=6)
    ids = [f"d{i}" for i in range(40)]
    with EmbeddedIndex(path, model=tiny_model, graph=GraphParams(pool=4, pooling="runs")) as ix:
        ix.add_encoded(docs[:30], [f"text {i}" for i in range(30)], ids=ids[:30])
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 2
    (path / "manifest.json").write_text(json.dumps(manifest))
    with EmbeddedIndex(path, model=tiny_model) as index:  # no graph settings: the folder's
        assert index.manifest.graph == GraphParams(pool=4, pooling="runs")
        assert index.stats()["format_version"] == 2
        index.add_encoded(docs[30:], [f"text {i}" for i in range(30, 40)], ids=ids[30:])
        assert index.stats()["graph_items"] == _items(docs, "runs")
        index.delete(ids[:5])
        index.compact()
        assert index.stats()["graph_items"] == _items(docs[5:], "runs")
        assert _graph_hits(index, docs[5:], ids[5:]) == 35
    assert json.loads((path / "manifest.json").read_text()) == manifest


def test_new_folders_pool_by_kmeans(tmp_path, tiny_model):
    docs = _documents(20, seed=7)
    with EmbeddedIndex(tmp_path / "ix", model=tiny_model) as index:
        index.add_encoded(docs, [f"text {i}" for i in range(20)], ids=[f"d{i}" for i in range(20)])
        assert index.manifest.graph.pooling == "kmeans"
        assert index.stats()["format_version"] == 3
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["format_version"] == 3 and manifest["graph"]["pooling"] == "kmeans"
