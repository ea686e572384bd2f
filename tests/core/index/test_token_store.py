"""The token-store seam: the manifest names the codec, a registered codec serves the whole index."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from colbridge import EmbeddedIndex, IndexCorruptError
from colbridge.check import check_index
from colbridge.index import vectors
from colbridge.index.manifest import Manifest
from colbridge.index.vectors import Float16Store, TokenStore
from colbridge.scoring import maxsim, maxsim_ranges

from .conftest import synthetic_docs


class Float32Store(TokenStore):
    """A codec written the way a new one would be: float32 rows, decoded on access (no float16
    matrix, so every reader takes the generic path)."""

    codec = "test-float32"
    extension = "f32"
    value_bytes = 4

    def _map(self) -> np.ndarray:
        return np.memmap(self.path, dtype="<f4", mode="r", shape=(self.rows, self.dimension))

    def decode(self, rows: np.ndarray) -> np.ndarray:
        return np.array(self._map()[rows]) if len(rows) else np.zeros((0, self.dimension),
                                                                       np.float32)

    def append(self, arrays):
        return self._append_bytes(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in arrays)

    def write_generation(self, generation, starts, counts):
        from colbridge.scoring import rows_of

        data = np.ascontiguousarray(self.decode(rows_of(starts, counts)), "<f4").tobytes()
        (self.folder / self.file_name(generation)).write_bytes(data)
        rows = len(data) // (4 * self.dimension)
        return rows, [(0, rows, hashlib.sha256(data).hexdigest())] if rows else []

    def range_digest(self, first: int, rows: int) -> str:
        with open(self.path, "rb") as f:
            f.seek(first * 4 * self.dimension)
            return hashlib.sha256(f.read(rows * 4 * self.dimension)).hexdigest()


def _set_manifest(path: Path, **changes) -> None:
    body = json.loads((path / "manifest.json").read_text())
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    (path / "manifest.json").write_text(json.dumps(body))


@pytest.fixture
def small_f16_index(tmp_path, tiny_model):
    """40 synthetic documents stored as float16 (the codec every folder before int8 holds)."""
    index = EmbeddedIndex(tmp_path / "index", model=tiny_model, codec="float16")
    texts, ids, metadatas = synthetic_docs(40)
    index.add(texts, ids=ids, metadatas=metadatas)
    yield index
    index.close()


def test_a_new_manifest_records_its_codec(small_index, tmp_path, tiny_model):
    body = json.loads((small_index.path / "manifest.json").read_text())
    assert body["codec"] == "int8"  # the default
    assert Manifest.read(small_index.path).codec == "int8"
    exact = EmbeddedIndex.open_or_create(tmp_path / "exact", model=tiny_model, codec="float16")
    exact.close()
    assert Manifest.read(tmp_path / "exact").codec == "float16"


def test_a_manifest_without_a_codec_opens_as_float16(small_f16_index, tiny_model):
    path = small_f16_index.path
    expected = [(h.id, h.score) for h in small_f16_index.search("alpha river", k=5)]
    small_f16_index.close()
    _set_manifest(path, codec=None)  # as every folder written before codecs existed
    reopened = EmbeddedIndex(path, model=tiny_model, create=False)
    try:
        assert reopened.manifest.codec == "float16"
        assert isinstance(reopened._vectors, Float16Store)
        assert [(h.id, h.score) for h in reopened.search("alpha river", k=5)] == expected
    finally:
        reopened.close()
    assert check_index(path).ok


@pytest.mark.parametrize("codec", ["zstd-9", 7, ["float16"]])
def test_an_unknown_codec_is_refused_with_a_clear_error(small_index, tiny_model, codec):
    path = small_index.path
    small_index.close()
    _set_manifest(path, codec=codec)
    with pytest.raises(IndexCorruptError, match=r"codec .*does not know \(it knows float16, int8\)"):
        EmbeddedIndex(path, model=tiny_model, create=False)
    report = check_index(path)
    assert not report.ok and "codec" in report.problems[0]
    _set_manifest(path, codec="float16")  # nothing was lost
    with EmbeddedIndex(path, model=tiny_model, create=False) as index:
        assert index.count() == 40


def test_maxsim_ranges_accepts_a_store_or_its_matrix(small_f16_index):
    store, snap = small_f16_index._vectors, small_f16_index._snap
    query = small_f16_index.model.encode_queries(["alpha beta"])[0]
    doc_nos = snap.live
    starts, counts = snap.starts[doc_nos], snap.counts[doc_nos]
    from_store = maxsim_ranges(query, store, starts, counts)
    assert np.array_equal(from_store, maxsim_ranges(query, store.matrix, starts, counts))
    reference = [maxsim(query, store.matrix[s:s + c]) for s, c in zip(starts, counts, strict=True)]
    np.testing.assert_allclose(from_store, reference, rtol=1e-5)
    gathered = store.gather(starts[:3], counts[:3])
    assert np.array_equal(gathered, np.concatenate(
        [store.matrix[s:s + c] for s, c in zip(starts[:3], counts[:3], strict=True)]))


def test_a_registered_codec_serves_the_whole_index(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setitem(vectors._CODECS, Float32Store.codec, Float32Store)
    texts, ids, metadatas = synthetic_docs(80)
    reference = EmbeddedIndex(tmp_path / "f16", model=tiny_model, codec="float16")
    reference.add(texts, ids=ids, metadatas=metadatas)
    path = tmp_path / "f32"
    EmbeddedIndex.open_or_create(path, model=tiny_model).close()
    replace(Manifest.read(path), codec=Float32Store.codec).write(path)

    index = EmbeddedIndex(path, model=tiny_model, compact_threshold=1.0)
    index.add(texts, ids=ids, metadatas=metadatas)
    assert isinstance(index._vectors, Float32Store) and (path / "vectors-0.f32").exists()
    for options in ({}, {"exact_threshold": 0}):  # every document exactly, then the graph
        got = index.search("alpha river", k=10, **options)
        want = reference.search("alpha river", k=10, **options)
        assert [h.id for h in got][:5] == [h.id for h in want][:5]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=2e-3)

    snap = index._snap
    some = snap.live[:5]
    np.testing.assert_allclose(index._vectors.gather(snap.starts[some], snap.counts[some]),
                               reference._vectors.gather(reference._snap.starts[some],
                                                         reference._snap.counts[some]),
                               atol=1e-3)  # the same rows, float32 against float16
    index.delete(ids[:40])
    reference.delete(ids[:40])
    index.compact()
    assert sorted(p.name for p in path.glob("vectors-*")) == ["vectors-1.f32"]
    assert [h.id for h in index.search("alpha river", k=5)] == \
        [h.id for h in reference.search("alpha river", k=5)]
    index.close()
    reference.close()
    assert check_index(path).ok
    with EmbeddedIndex(path, model=tiny_model, create=False) as reopened:
        assert reopened.count() == 40
        assert len(reopened._graph) > 0  # the checkpoint built over the decoded rows loads
