"""MaxSim pinned on hand-built vectors, and the packed/batched forms agree with the plain one."""

from __future__ import annotations

import numpy as np
import pytest

from colbridge.scoring import maxsim, maxsim_many, maxsim_packed, normalize_score


def test_maxsim_sums_the_best_match_of_each_query_token():
    query = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    document = np.array([[1.0, 0.0], [0.8, 0.6]])
    # token 0 -> 1.0 (doc 0); token 1 -> 0.6 (doc 1); token 2 -> max(0.6, 0.96) = 0.96
    assert maxsim(query, document) == pytest.approx(1.0 + 0.6 + 0.96)


def test_maxsim_is_not_a_mean_and_ignores_document_length():
    query = np.array([[1.0, 0.0]])
    short = np.array([[1.0, 0.0]])
    padded_with_noise = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    assert maxsim(query, short) == maxsim(query, padded_with_noise) == pytest.approx(1.0)


def test_negative_best_similarities_stay_negative():
    """No zero padding: a document whose every token opposes the query scores below zero."""
    query = np.array([[1.0, 0.0]])
    opposed = np.array([[-1.0, 0.0], [-0.6, -0.8]])
    assert maxsim(query, opposed) == pytest.approx(-0.6)


def test_packed_and_many_match_one_by_one():
    rng = np.random.default_rng(1)
    query = rng.standard_normal((8, 16)).astype(np.float32)
    documents = [rng.standard_normal((n, 16)).astype(np.float32) for n in (1, 5, 30, 2)]
    expected = [maxsim(query, d) for d in documents]
    np.testing.assert_allclose(maxsim_many(query, documents), expected, rtol=1e-5)
    lengths = np.array([len(d) for d in documents])
    np.testing.assert_allclose(maxsim_packed(query, np.concatenate(documents), lengths), expected,
                               rtol=1e-5)
    assert maxsim_many(query, []).shape == (0,)


def test_normalize_score_maps_to_unit_interval_monotonically():
    assert normalize_score(32.0, 32) == 1.0
    assert normalize_score(16.0, 32) == 0.5
    assert normalize_score(-3.0, 32) == 0.0
    raw = np.array([-1.0, 0.0, 4.0, 8.0])
    np.testing.assert_allclose(normalize_score(raw, 8), [0.0, 0.0, 0.5, 1.0])


@pytest.mark.parametrize("chosen", ["onnxruntime", "torch", "numpy"])
def test_token_similarities_agree_on_every_kernel(monkeypatch, chosen):
    import torch  # noqa: F401 - loaded, so the torch kernel can run

    import colbridge.scoring as scoring

    monkeypatch.setattr(scoring, "kernel", lambda: chosen)
    rng = np.random.default_rng(3)
    query = rng.standard_normal((5, 16)).astype(np.float32)
    packed = rng.standard_normal((40, 16)).astype(np.float16)
    expected = query @ packed.astype(np.float32).T
    got = scoring.token_similarities(query, packed)
    assert got.shape == (5, 40) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_kernel_prefers_onnxruntime_and_needs_no_pytorch(monkeypatch):
    import sys

    import colbridge.scoring as scoring

    monkeypatch.delitem(sys.modules, "torch", raising=False)  # a process that never loaded it
    monkeypatch.setattr(scoring, "_HAS_ONNXRUNTIME", True)
    assert scoring.kernel() == "onnxruntime"
    monkeypatch.setattr(scoring, "_HAS_ONNXRUNTIME", False)
    assert scoring.kernel() == "numpy"


def test_shipped_kernel_graphs_match_their_recipe():
    from importlib import resources

    from colbridge import _kernels

    folder = resources.files("colbridge") / "data" / "kernels"
    for name, graph in _kernels.build().items():
        assert (folder / f"{name}.onnx").read_bytes() == graph, name


@pytest.mark.parametrize("chosen", ["onnxruntime", "torch", "numpy"])
def test_maxsim_ranges_scores_row_ranges_like_one_by_one(monkeypatch, chosen):
    """Ranges in any order, of uneven lengths, spread over several groups: each score is the
    plain MaxSim of its rows, in the order given."""
    import torch  # noqa: F401

    import colbridge.scoring as scoring

    monkeypatch.setattr(scoring, "kernel", lambda: chosen)
    monkeypatch.setattr(scoring, "_GROUP_ROWS", 64)  # force many groups on a small matrix
    rng = np.random.default_rng(5)
    matrix = rng.standard_normal((500, 16)).astype(np.float16)
    query = rng.standard_normal((7, 16)).astype(np.float32)
    starts = np.array([400, 0, 37, 120, 399, 250, 10])
    counts = np.array([100, 1, 80, 3, 1, 70, 27])
    expected = [maxsim(query, matrix[s:s + c].astype(np.float32)) for s, c in zip(starts, counts)]
    np.testing.assert_allclose(scoring.maxsim_ranges(query, matrix, starts, counts), expected,
                               rtol=1e-5, atol=1e-4)
    assert scoring.maxsim_ranges(query, matrix, starts[:0], counts[:0]).shape == (0,)


def test_maxsim_ranges_reads_a_read_only_matrix_with_numpy():
    """A read-only float16 matrix (PyTorch cannot wrap it) is scored by NumPy, not refused."""
    from colbridge.scoring import maxsim_ranges

    matrix = np.random.default_rng(6).standard_normal((30, 8)).astype(np.float16)
    matrix.flags.writeable = False
    query = np.eye(8, dtype=np.float32)[:3]
    expected = [maxsim(query, matrix[0:10].astype(np.float32)), maxsim(query, matrix[10:30].astype(np.float32))]
    np.testing.assert_allclose(maxsim_ranges(query, matrix, [0, 10], [10, 20]), expected, rtol=1e-5)
