"""The prototype compressed index (prototypes.ivf) and its refinement codec: rankings
against exact MaxSim, the first stage's recall, the on-disk tier, reopening, damage, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from colbridge.errors import IndexCorruptError, InvalidInputError
from colbridge.scoring import maxsim_packed

from prototypes.codecs import ResidualCodec
from prototypes.codecs.refine import RefinementCodec
from prototypes.ivf import IvfIndex, inverted_file

DIM = 32


def collection(n_docs: int = 300, topics: int = 60, seed: int = 0):
    """Documents whose tokens bunch around a few topic directions each, and queries made from
    perturbed tokens of one document (so every query has a clear best document)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, DIM))
    lengths = rng.integers(8, 40, size=n_docs)
    docs = []
    for length in lengths:
        own = rng.choice(topics, size=3, replace=False)
        x = centres[rng.choice(own, size=length)] + 0.45 * rng.standard_normal((length, DIM))
        docs.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    vectors = np.concatenate(docs).astype(np.float32)
    queries, targets = [], rng.choice(n_docs, size=20, replace=False)
    for t in targets:
        picked = docs[t][rng.choice(len(docs[t]), size=8)]
        q = picked + 0.1 * rng.standard_normal(picked.shape)
        queries.append((q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32))
    return vectors, lengths, queries


VECTORS, LENGTHS, QUERIES = collection()


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> IvfIndex:
    return IvfIndex.build(tmp_path_factory.mktemp("ivf") / "index", VECTORS, LENGTHS,
                          n_centroids=64, seed=1)


def exact_top(query: np.ndarray, k: int = 10) -> np.ndarray:
    scores = maxsim_packed(query, VECTORS, LENGTHS)
    return np.argsort(-scores, kind="stable")[:k]


def test_inverted_file_lists_each_document_once_per_centroid():
    codes = np.array([2, 0, 2, 1, 2, 2], dtype=np.uint16)
    docs, offsets = inverted_file(codes, np.array([3, 1, 2]), 4)
    lists = [docs[offsets[c]:offsets[c + 1]].tolist() for c in range(4)]
    assert lists == [[0], [1], [0, 2], []]


def test_search_agrees_with_exact_maxsim(index):
    agreement = []
    for q in QUERIES:
        found, scores = index.search(q, k=10, nprobe=8, candidates=100)
        assert list(scores) == sorted(scores, reverse=True)
        agreement.append(len(set(found) & set(exact_top(q))) / 10)
    assert np.mean(agreement) >= 0.9


def test_rescoring_from_both_levels_is_closer_to_exact_than_residual_codes(index):
    docs = np.arange(index.n_documents)
    exact = np.stack([maxsim_packed(q, VECTORS, LENGTHS) for q in QUERIES])
    coarse = np.stack([index.score(q, docs) for q in QUERIES])
    fine = np.stack([index.rescore(q, docs) for q in QUERIES])
    assert np.abs(fine - exact).mean() < 0.5 * np.abs(coarse - exact).mean()


def test_first_stage_finds_the_document_a_query_was_made_from(index):
    for q in QUERIES:
        target = exact_top(q, 1)[0]
        candidates, approx = index.first_stage(q, nprobe=4, n=30)
        assert target in candidates
        assert list(approx) == sorted(approx, reverse=True)


def test_first_stage_ranks_by_maxsim_over_centroids(index):
    q = QUERIES[3]
    docs, approx = index.first_stage(q, nprobe=index.codec.n_centroids, pool=10_000, n=20)
    replaced = index.codec.centroids.astype(np.float32)[index.codes]
    expected = maxsim_packed(q, replaced, LENGTHS)
    np.testing.assert_allclose(approx, expected[docs], rtol=1e-5)
    assert set(docs) == set(np.argsort(-expected, kind="stable")[:20])


def test_more_probes_never_lose_candidates_of_fewer(index):
    q = QUERIES[0]
    few, _ = index.first_stage(q, nprobe=2, n=index.n_documents)
    many, _ = index.first_stage(q, nprobe=8, n=index.n_documents)
    assert len(few) < len(many)
    assert set(few) <= set(many)


def test_reopened_index_gives_identical_results(index):
    reopened = IvfIndex.open(index.folder)
    for q in QUERIES[:5]:
        a, b = index.search(q, k=5), reopened.search(q, k=5)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_resident_bytes_leave_out_the_refinement_tier(index):
    resident = index.resident_bytes()
    assert resident["codes"] == index.n_tokens * index.codec.bytes_per_vector
    tier = (index.folder / "refinement.u8").stat().st_size
    assert tier == index.n_tokens * index.refinement.refinement_bytes
    assert index.folder_bytes() > tier + resident["codes"]


def test_without_a_tier_search_scores_decoded_codes_and_rescore_refuses(tmp_path):
    plain = IvfIndex.build(tmp_path / "plain", VECTORS, LENGTHS, n_centroids=64,
                           refinement_bits=None)
    found, scores = plain.search(QUERIES[0], k=3, candidates=plain.n_documents)
    np.testing.assert_allclose(scores, plain.score(QUERIES[0], found), rtol=1e-6)
    with pytest.raises(InvalidInputError, match="refinement"):
        plain.rescore(QUERIES[0], found)
    assert not (tmp_path / "plain" / "refinement.u8").exists()


def test_truncated_array_file_is_reported(index, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(index.folder, copy)
    with open(copy / "codes.npy", "r+b") as f:
        f.truncate(100)
    with pytest.raises(IndexCorruptError, match=r"codes\.npy"):
        IvfIndex.open(copy)


def test_missing_or_foreign_description_is_reported(index, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(index.folder, copy)
    meta = json.loads((copy / "ivf.json").read_text())
    (copy / "ivf.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(IndexCorruptError, match="version"):
        IvfIndex.open(copy)
    (copy / "ivf.json").unlink()
    with pytest.raises(IndexCorruptError):
        IvfIndex.open(copy)


def test_build_refuses_bad_input(tmp_path):
    with pytest.raises(InvalidInputError, match="add up"):
        IvfIndex.build(tmp_path / "a", VECTORS, LENGTHS[:-1])
    with pytest.raises(InvalidInputError, match="at least one"):
        IvfIndex.build(tmp_path / "b", VECTORS, np.concatenate(([0], LENGTHS))[:len(LENGTHS)])
    bad = VECTORS.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        IvfIndex.build(tmp_path / "c", bad, LENGTHS, n_centroids=16)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("keep me")
    with pytest.raises(InvalidInputError, match="not empty"):
        IvfIndex.build(tmp_path / "d", VECTORS, LENGTHS)
    assert (tmp_path / "d" / "x").read_text() == "keep me"


def test_search_refuses_bad_queries_and_settings(index):
    with pytest.raises(InvalidInputError, match="shape"):
        index.search(np.zeros((4, DIM + 1), np.float32))
    with pytest.raises(InvalidInputError, match="NaN"):
        index.search(np.full((4, DIM), np.nan, np.float32))
    for setting in ({"k": 0}, {"nprobe": 0}, {"candidates": -1}, {"pool": 0}, {"k": True}):
        with pytest.raises(InvalidInputError):
            index.search(QUERIES[0], **setting)


def test_refinement_codec_reduces_the_error_and_reloads(tmp_path):
    base = ResidualCodec.train(VECTORS, bits=2, n_centroids=32, seed=0)
    codes, residuals = base.encode(VECTORS)
    refine = RefinementCodec.train(base, VECTORS, bits=4)
    given = VECTORS.copy()
    both = refine.decode(codes, residuals, refine.encode(given, codes, residuals))
    np.testing.assert_array_equal(given, VECTORS)  # the caller's vectors are left as they were
    one = base.decode(codes, residuals, dtype=np.float32)
    err_one = 1 - np.einsum("ij,ij->i", one, VECTORS).mean()
    err_both = 1 - np.einsum("ij,ij->i", both, VECTORS).mean()
    assert err_both < err_one / 4
    refine.save(tmp_path, "r")
    again = RefinementCodec.load(base, tmp_path, "r")
    np.testing.assert_array_equal(again.weights, refine.weights)
    (tmp_path / "r.npz").write_bytes(b"not an archive")
    with pytest.raises(IndexCorruptError):
        RefinementCodec.load(base, tmp_path, "r")
    with pytest.raises(InvalidInputError, match="shape"):
        refine.decode(codes, residuals, np.zeros((len(codes), 3), np.uint8))


@pytest.mark.parametrize(("base_bits", "bits"), [(4, 4), (4, 2), (2, 4), (2, 2)])
def test_refinement_decodes_every_bit_layout_like_unpacked_cells(base_bits, bits):
    from prototypes.codecs.refine import _unpack

    base = ResidualCodec.train(VECTORS, bits=base_bits, n_centroids=16, seed=0)
    codes, residuals = base.encode(VECTORS[:500])
    refine = RefinementCodec.train(base, VECTORS, bits=bits)
    fine = refine.encode(VECTORS[:500], codes, residuals)
    outer = _unpack(residuals, base_bits, DIM).astype(np.int64)
    inner = _unpack(fine, bits, DIM).astype(np.int64)
    expected = refine.weights[np.arange(DIM), outer, inner] + base.centroids[codes].astype(
        np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(refine.decode(codes, residuals, fine), expected, atol=1e-6)
