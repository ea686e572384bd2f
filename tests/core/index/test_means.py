"""Document means: right for every live document, saved with the graph, rebuilt when missing."""

from __future__ import annotations

import logging

import numpy as np

from colbridge import EmbeddedIndex

from .conftest import synthetic_docs


def _expected_mean(index: EmbeddedIndex, doc_no: int) -> np.ndarray:
    snap = index._snap
    rows = np.asarray(snap.vectors[snap.starts[doc_no]:snap.starts[doc_no] + snap.counts[doc_no]],
                      dtype=np.float32)
    total = rows.sum(axis=0)
    return total / np.linalg.norm(total)


def _assert_means_right(index: EmbeddedIndex) -> None:
    snap = index._snap
    assert len(snap.live)
    # An add takes the means of the vectors it was given; int8 stores them to 8 bits (and
    # clips values beyond its range), float16 rounds them.
    tolerance = 2e-3 if getattr(index._vectors, "params", None) is None else 1e-2
    for doc_no in snap.live.tolist():
        np.testing.assert_allclose(snap.means[doc_no].astype(np.float32),
                                   _expected_mean(index, doc_no), atol=tolerance)


def test_means_follow_adds_upserts_deletes_and_compaction(tmp_path, tiny_model):
    texts, ids, _ = synthetic_docs(60)
    with EmbeddedIndex(tmp_path / "index", model=tiny_model) as index:
        index.add(texts[:40], ids=ids[:40])
        index.add(texts[40:], ids=ids[40:])
        _assert_means_right(index)
        index.add(["a replaced text about rivers and mountains"] * 5, ids=ids[:5])  # upserts
        index.delete(ids[10:20])
        _assert_means_right(index)
        index.compact()
        _assert_means_right(index)


def test_means_are_saved_and_read_back_without_recomputing(tmp_path, tiny_model, caplog):
    texts, ids, _ = synthetic_docs(50)
    with EmbeddedIndex(tmp_path / "index", model=tiny_model) as index:
        index.add(texts, ids=ids)
    assert len(list((tmp_path / "index").glob("means-*.npz"))) == 1
    with caplog.at_level(logging.INFO, logger="colbridge"):
        with EmbeddedIndex(tmp_path / "index", model=tiny_model) as index:
            _assert_means_right(index)
    assert "document means" not in caplog.text


def test_a_folder_without_means_gets_them_computed_and_saved(tmp_path, tiny_model, caplog):
    """As a folder written by an older colbridge: no means file at all."""
    texts, ids, _ = synthetic_docs(50)
    with EmbeddedIndex(tmp_path / "index", model=tiny_model) as index:
        index.add(texts, ids=ids)
        before = [h.id for h in index.search("alpha river", k=5, exact_threshold=0)]
    for path in (tmp_path / "index").glob("means-*.npz"):
        path.unlink()
    with caplog.at_level(logging.INFO, logger="colbridge"):
        with EmbeddedIndex(tmp_path / "index", model=tiny_model) as index:
            _assert_means_right(index)
            assert [h.id for h in index.search("alpha river", k=5, exact_threshold=0)] == before
    assert "computed 50 document means" in caplog.text
    assert len(list((tmp_path / "index").glob("means-*.npz"))) == 1


def test_only_the_newest_means_file_is_kept(tmp_path, tiny_model):
    texts, ids, _ = synthetic_docs(90)
    with EmbeddedIndex(tmp_path / "index", model=tiny_model, checkpoint_rows=1) as index:
        for begin in range(0, 90, 30):
            index.add(texts[begin:begin + 30], ids=ids[begin:begin + 30])
            index.flush()
        saved = list((tmp_path / "index").glob("means-*.npz"))
        graphs = list((tmp_path / "index").glob("graph-*.voy"))
        assert len(saved) == 1 and saved[0].stem[len("means"):] == graphs[0].stem[len("graph"):]
        assert len(np.load(saved[0])["doc_nos"]) == 90
