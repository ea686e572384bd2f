"""The int8 token store: linear 8-bit codes scored without decoding, trained on the first fill,
retrained when new rows fall outside its range, converted to and from float16 by compaction."""

from __future__ import annotations

import json

import numpy as np
import pytest
from colbridge import EmbeddedIndex, IndexCorruptError, InvalidInputError
from colbridge.check import check_index
from colbridge.index.vectors import Float16Store
from colbridge.index.vectors_int8 import Int8Params, Int8Store
from colbridge.scoring import maxsim, maxsim_ranges

DIM = 96


def unit_docs(n: int, seed: int = 0, spread: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    docs = []
    for length in rng.integers(3, 40, n):
        x = rng.normal(scale=spread, size=(length, DIM)).astype(np.float32)
        x[:, 0] += 3.0  # an anisotropy, as real token vectors have
        docs.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    return docs


def filled(tmp_path, docs, name="ix", **options) -> EmbeddedIndex:
    index = EmbeddedIndex(tmp_path / name, model="offline-minilm", **options)
    index.add_encoded(docs, [f"text {i}" for i in range(len(docs))],
                      ids=[f"d{i}" for i in range(len(docs))])
    return index


def ranges(docs):
    counts = np.array([len(d) for d in docs], np.int64)
    return np.concatenate(([0], np.cumsum(counts)[:-1])), counts


@pytest.fixture
def store(tmp_path):
    docs = unit_docs(60)
    created = Int8Store(tmp_path, 0, DIM, 0)
    created.append(docs)
    rows = sum(len(d) for d in docs)
    return Int8Store(tmp_path, 0, DIM, rows), docs


def test_new_indexes_store_int8_and_float16_on_request(tmp_path):
    docs = unit_docs(5)
    default = filled(tmp_path, docs)
    exact = filled(tmp_path, docs, name="exact", codec="float16")
    try:
        assert json.loads((default.path / "manifest.json").read_text())["codec"] == "int8"
        assert (default.path / "vectors-0.u8").stat().st_size == sum(map(len, docs)) * DIM
        assert (exact.path / "vectors-0.f16").exists() and exact.stats()["codec"] == "float16"
    finally:
        default.close()
        exact.close()


def test_fused_kernel_numpy_and_decoded_maxsim_agree(store, monkeypatch):
    import colbridge.scoring as scoring

    coded, docs = store
    starts, counts = ranges(docs)
    picked = np.array([7, 3, 50, 3, 0, 59, 21])  # any order, repeats, several lengths
    query = unit_docs(1, seed=9)[0][:8]
    monkeypatch.setattr(scoring, "_GROUP_ROWS", 64)  # many groups
    fused = maxsim_ranges(query, coded, starts[picked], counts[picked])
    monkeypatch.setattr(scoring, "kernel", lambda: "numpy")
    fallback = maxsim_ranges(query, coded, starts[picked], counts[picked])
    view = coded.view()
    decoded = [maxsim(query, view[np.arange(s, s + c)])
               for s, c in zip(starts[picked], counts[picked], strict=True)]
    np.testing.assert_allclose(fused, decoded, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fallback, decoded, rtol=1e-5, atol=1e-5)
    # and close to the float32 originals: 8 bits per dimension
    original = [maxsim(query, docs[i]) for i in picked]
    np.testing.assert_allclose(fused, original, atol=0.02 * len(query) / 8)


def test_padded_reads_return_the_rows_of_flat_reads(store, monkeypatch):
    """read_padded (what scoring reads) holds each range's rows, then its last row repeated,
    for ranges in any order, repeated, adjacent in the file or not, into a reused buffer too;
    the memory-map variant reads the same."""
    coded, docs = store
    starts, counts = ranges(docs)
    picked = np.array([7, 3, 50, 3, 0, 59, 21, 22, 23])
    width = int(counts[picked].max())
    expected = np.empty((len(picked), width, DIM), np.uint8)
    for i, (s, c) in enumerate(zip(starts[picked], counts[picked], strict=True)):
        rows = coded.read_codes(np.array([s]), np.array([c]))
        expected[i, :c], expected[i, c:] = rows, rows[-1]
    reused = np.full(10 * width * DIM, 77, np.uint8)
    for out in (None, reused):
        got = coded.read_padded(starts[picked], counts[picked], width, out)
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    monkeypatch.setattr(Int8Store, "use_memory_map", True)
    np.testing.assert_array_equal(coded.read_padded(starts[picked], counts[picked], width),
                                  expected)
    assert coded.read_padded(starts[:0], counts[:0], 4).shape == (0, 4, DIM)


def test_code_kernel_matches_float_maxsim_on_the_codes_after_writes(tmp_path, monkeypatch):
    """Scores from the codes' kernel (padded blocks read in place) equal MaxSim over the decoded rows (and the NumPy
    fallback's), after deletes and upserts, and across a compaction to a new generation."""
    import colbridge.scoring as scoring
    from colbridge.index.embedded import passage_scores

    docs = unit_docs(50, seed=12)
    index = filled(tmp_path, docs)
    monkeypatch.setattr(scoring, "_GROUP_ROWS", 96)  # many groups
    try:
        query = unit_docs(1, seed=13)[0][:10]

        def check() -> None:
            snap = index._snap
            keys = snap.live
            fused = passage_scores(query, snap, keys)[0]
            with monkeypatch.context() as numpy_only:
                numpy_only.setattr(scoring, "kernel", lambda: "numpy")
                fallback = passage_scores(query, snap, keys)[0]
            decoded = [maxsim(query, snap.vectors[np.arange(s, s + c)])
                       for s, c in zip(snap.starts[keys], snap.counts[keys], strict=True)]
            np.testing.assert_allclose(fused, decoded, rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(fallback, decoded, rtol=1e-5, atol=1e-4)

        check()
        index.delete(["d3", "d10", "d11"])
        index.add_encoded(unit_docs(4, seed=14), ["u0", "u1", "u2", "u3"],
                          ids=["d20", "d21", "new0", "new1"])  # two upserts, two new
        check()
        generation = index._vectors.generation
        index.compact()
        assert index._vectors.generation == generation + 1
        check()
    finally:
        index.close()


def test_coarse_query_rebuilds_the_query_within_half_a_step():
    from colbridge import _kernels

    rng = np.random.default_rng(4)
    query = rng.standard_normal((5, DIM)).astype(np.float32) * np.float32(1e-3)
    query[2] = 0.0  # a zero row must not divide by zero
    rounded, step = _kernels.coarse_query(query)
    assert rounded.dtype == np.int8 and rounded.shape == (DIM, 5) and np.abs(rounded).max() == 127
    rebuilt = step[:, None] * rounded.T.astype(np.float64)
    assert np.all(np.abs(rebuilt - query) <= step[:, None] / 2 * (1 + 1e-6))
    assert np.all(rebuilt[2] == 0)


def test_coarse_kernel_stays_within_the_rounding_of_its_query(store, monkeypatch):
    """The integer kernel's scores differ from exact MaxSim over the codes by no more than the
    8-bit query's rounding allows (half a step per dimension, times the codes); without ONNX
    Runtime, ``coarse`` changes nothing."""
    import colbridge.scoring as scoring
    from colbridge import _kernels

    coded, docs = store
    starts, counts = ranges(docs)
    picked = np.array([7, 3, 50, 3, 0, 59, 21, 40, 41])
    query = unit_docs(1, seed=9)[0][:8]
    monkeypatch.setattr(scoring, "_GROUP_ROWS", 64)  # many groups
    view = coded.view()
    assert scoring.has_coarse_kernel(view)
    exact = maxsim_ranges(query, view, starts[picked], counts[picked])
    coarse = maxsim_ranges(query, view, starts[picked], counts[picked], coarse=True)
    _, step = _kernels.coarse_query(query * coded.params.scale)
    bound = [float((step / 2).sum()) * float(view.read_codes(np.array([s]), np.array([c]))
                                              .astype(np.float64).sum(axis=1).max())
             for s, c in zip(starts[picked], counts[picked], strict=True)]
    assert np.all(np.abs(coarse - exact) <= np.array(bound) + 1e-4)
    assert not np.allclose(coarse, exact, rtol=0, atol=1e-6)  # it did score coarsely
    monkeypatch.setattr(scoring, "kernel", lambda: "numpy")
    assert not scoring.has_coarse_kernel(view)
    np.testing.assert_allclose(
        maxsim_ranges(query, view, starts[picked], counts[picked], coarse=True), exact,
        rtol=1e-5, atol=1e-5)


def test_hits_keep_their_exact_scores_after_the_coarse_pass(tmp_path, monkeypatch):
    """With the coarse pass (the default) a search returns the hits and scores of scoring every
    candidate exactly (``rescore=0``), for more hits than ``rescore`` too."""
    from colbridge import SearchOptions, _kernels

    calls = []
    original = _kernels.maxsim_group_codes_coarse
    monkeypatch.setattr(_kernels, "maxsim_group_codes_coarse",
                        lambda *a: calls.append(1) or original(*a))
    index = filled(tmp_path, unit_docs(300, seed=21),
                   search_options=SearchOptions(exact_threshold=0))
    try:
        for seed in range(6):
            query = unit_docs(1, seed=100 + seed)[0][:12]
            for k, rescore in ((10, 64), (40, 32)):
                calls.clear()
                fast = index.search_encoded(query, k=k, rescore=rescore)
                assert calls, "the coarse kernel was not used"
                exact = index.search_encoded(query, k=k, rescore=0)
                assert [h.id for h in fast] == [h.id for h in exact]
                np.testing.assert_allclose([h.score for h in fast], [h.score for h in exact],
                                           rtol=1e-6)
    finally:
        index.close()


def test_codes_decode_within_half_a_step(store):
    coded, docs = store
    params = coded.params
    decoded = coded.view()[np.arange(len(docs[0]))]
    assert np.all(np.abs(decoded - docs[0]) <= params.scale / 2 + 1e-6)
    assert coded.clipped_count() >= 0


def test_values_outside_the_range_are_counted_and_reported(tmp_path, monkeypatch):
    import colbridge.index.embedded as embedded

    index = filled(tmp_path, unit_docs(5, seed=8, spread=0.2))
    path = index.path
    assert not any("outside the codec" in n for n in check_index(path).notes)
    monkeypatch.setattr(embedded, "_RETRAIN_CLIPPED_SHARE", 1.0)  # never retrain
    wide = unit_docs(5, seed=9)
    clipped = index._vectors.clipped_values(wide)
    assert clipped > 0
    index.add_encoded(wide, [f"w {i}" for i in range(5)], ids=[f"w{i}" for i in range(5)])
    assert index._vectors.generation == 0 and index._vectors.clipped_count() >= clipped
    index.close()
    report = check_index(path)
    assert report.ok and any("outside the codec's trained range" in n for n in report.notes)


def test_parameters_are_checked_on_open(store, tmp_path):
    coded, _ = store
    body = json.loads(coded.params_path.read_text())
    body["scale"][0] *= 2  # an edit the checksum catches
    coded.params_path.write_text(json.dumps(body))
    with pytest.raises(IndexCorruptError, match="checksum"):
        Int8Store(tmp_path, 0, DIM, coded.rows)
    coded.params_path.unlink()
    with pytest.raises(IndexCorruptError, match="missing"):
        Int8Store(tmp_path, 0, DIM, coded.rows)


def test_check_reports_damaged_parameters_and_codes(tmp_path):
    index = filled(tmp_path, unit_docs(30))
    path = index.path
    index.close()
    assert check_index(path).ok
    params = path / "vectors-0.json"
    original = params.read_bytes()
    params.write_bytes(original.replace(b'"trained_rows": ', b'"trained_rows": 1'))
    report = check_index(path)
    assert not report.ok and any("vectors-0.json" in p for p in report.problems)
    assert not check_index(path, repair=True).ok  # not a cache: reported, never rebuilt
    params.write_bytes(original)
    with open(path / "vectors-0.u8", "r+b") as f:
        f.seek(5 * DIM)
        byte = f.read(1)
        f.seek(5 * DIM)
        f.write(bytes([byte[0] ^ 0x80]))
    report = check_index(path)
    assert not report.ok and any("checksum" in p for p in report.problems)


def test_values_outside_the_range_are_counted_and_retrain_the_codec(tmp_path):
    narrow = unit_docs(2, seed=1, spread=0.2)  # a tiny first fill: a narrow range
    index = filled(tmp_path, narrow)
    try:
        first = Int8Params.read(index.path / "vectors-0.json", DIM)
        wide = unit_docs(40, seed=2)
        assert index._vectors.clipped_values(wide) > 0.001 * sum(map(len, wide)) * DIM
        index.add_encoded(wide, [f"w {i}" for i in range(len(wide))],
                          ids=[f"w{i}" for i in range(len(wide))])
        generation = index._vectors.generation
        assert generation == 1  # retrained by a compaction before the add
        retrained = Int8Params.read(index.path / f"vectors-{generation}.json", DIM)
        assert (retrained.scale > first.scale).any()
        assert index._vectors.clipped_values(wide) == 0
        got = index.get(["w3"], with_vectors=True)[0].vectors
        assert np.abs(got - wide[3]).max() <= retrained.scale.max()
        # a write within the range codes with the existing parameters
        index.add_encoded(wide[:3], ["a", "b", "c"], ids=["x", "y", "z"])
        assert index._vectors.generation == generation
    finally:
        index.close()
    assert check_index(tmp_path / "ix").ok


def test_explicit_retrain_keeps_documents_and_scores(tmp_path):
    docs = unit_docs(40, seed=3)
    index = filled(tmp_path, docs)
    try:
        query = docs[5][:6]
        before = index.search_encoded(query, k=5)
        index.compact(retrain=True)
        after = index.search_encoded(query, k=5)
        assert [h.id for h in after] == [h.id for h in before]
        assert index._vectors.generation == 1 and index.count() == 40
    finally:
        index.close()


def test_a_float16_folder_opens_unchanged_and_converts_by_compaction(tmp_path):
    docs = unit_docs(40, seed=4)
    old = filled(tmp_path, docs, codec="float16")
    path = old.path
    query = docs[11][:5]
    exact = [h.id for h in old.search_encoded(query, k=10)]
    old.close()
    body = json.loads((path / "manifest.json").read_text())  # as today's releases write it
    body["format_version"] = 1
    body.pop("codec")
    (path / "manifest.json").write_text(json.dumps(body))

    reopened = EmbeddedIndex(path)
    try:
        assert reopened.stats()["codec"] == "float16"
        assert [h.id for h in reopened.search_encoded(query, k=10)] == exact
        with pytest.raises(InvalidInputError, match="compact"):
            EmbeddedIndex(path, codec="int8")
        reopened.compact(codec="int8")
        assert sorted(p.name for p in path.glob("vectors-*")) == ["vectors-1.json",
                                                                  "vectors-1.u8"]
        assert json.loads((path / "manifest.json").read_text())["codec"] == "int8"
        converted = [h.id for h in reopened.search_encoded(query, k=10)]
        assert len(set(converted) & set(exact)) >= 9
        stored = reopened.get(["d11"], with_vectors=True)[0].vectors
        np.testing.assert_allclose(stored, docs[11], atol=0.01)
    finally:
        reopened.close()
    again = EmbeddedIndex(path)
    try:
        assert again.stats()["codec"] == "int8" and again.count() == 40
        again.compact(codec="float16")
        assert isinstance(again._vectors, Float16Store)
    finally:
        again.close()
    assert check_index(path).ok


def test_a_crash_between_manifest_and_commit_leaves_a_readable_folder(tmp_path, monkeypatch):
    docs = unit_docs(20, seed=5)
    index = filled(tmp_path, docs, codec="float16")
    path = index.path

    def crash(*args, **kwargs):
        raise OSError("simulated crash while writing the new generation")

    monkeypatch.setattr(Int8Store, "write_rows", classmethod(crash))
    with pytest.raises(OSError):
        index.compact(codec="int8")
    index.close()
    monkeypatch.undo()
    assert check_index(path).ok  # the generation's own file says how to read it
    reopened = EmbeddedIndex(path)  # the manifest says int8; the committed generation is f16
    try:
        assert isinstance(reopened._vectors, Float16Store) and reopened.count() == 20
        reopened.compact()  # finishes the conversion the manifest asked for
        assert isinstance(reopened._vectors, Int8Store)
    finally:
        reopened.close()


def test_export_and_delete_work_on_int8(tmp_path):
    docs = unit_docs(30, seed=6)
    index = filled(tmp_path, docs)
    try:
        index.delete(["d0", "d1"])
        exported = {d.id: d.vectors for d in index.export()}
        assert len(exported) == 28
        np.testing.assert_allclose(exported["d7"], docs[7], atol=0.01)
        assert exported["d7"].dtype == np.float32
    finally:
        index.close()


def test_unknown_codec_is_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="codec"):
        EmbeddedIndex(tmp_path / "ix", model="offline-minilm", codec="int4")


def test_cli_compact_converts_a_folder(tmp_path):
    from colbridge.cli import app
    from typer.testing import CliRunner

    index = filled(tmp_path, unit_docs(10, seed=7), codec="float16")
    path = index.path
    index.close()
    result = CliRunner().invoke(app, ["compact", "--index", str(path), "--codec", "int8"])
    assert result.exit_code == 0, result.output
    assert "stored as int8" in " ".join(result.output.split())
    assert (path / "vectors-1.u8").exists() and not (path / "vectors-0.f16").exists()
    bad = CliRunner().invoke(app, ["compact", "--index", str(path), "--codec", "int3"])
    assert bad.exit_code != 0 and "codec must be one of" in " ".join(bad.output.split())


def test_the_exact_path_scores_every_document_in_float(tmp_path, monkeypatch):
    """A search small enough to skip the graph (``exact_threshold``) stays exact brute force:
    no coarse pass."""
    from colbridge import _kernels

    calls = []
    original = _kernels.maxsim_group_codes_coarse
    monkeypatch.setattr(_kernels, "maxsim_group_codes_coarse",
                        lambda *a: calls.append(1) or original(*a))
    index = filled(tmp_path, unit_docs(120, seed=5))
    try:
        query = unit_docs(1, seed=6)[0][:12]
        hits = index.search_encoded(query, k=5)
        assert len(hits) == 5 and not calls
        index.search_encoded(query, k=5, exact_threshold=0)  # the graph's candidates: coarse
        assert calls
    finally:
        index.close()
