"""The one L2-normalisation helper every module uses."""

from __future__ import annotations

import numpy as np
import pytest
from colbridge._linalg import l2_normalize, row_norms


def test_rows_come_out_unit_length_float32_at_any_scale():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(5, 8)).astype(np.float32)
    for scale in (1e-30, 1.0, 1e30):
        unit = l2_normalize(rows * np.float32(scale))
        assert unit.dtype == np.float32 and unit.flags.c_contiguous
        np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(unit, l2_normalize(rows), rtol=1e-5, atol=1e-7)


def test_a_zero_row_stays_zero_and_one_vector_works():
    rows = np.array([[0.0, 0.0], [3.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(l2_normalize(rows), [[0.0, 0.0], [0.6, 0.8]], rtol=1e-6)
    assert not l2_normalize(rows)[0].any()
    np.testing.assert_allclose(l2_normalize(np.array([3.0, 4.0])), [0.6, 0.8])
    assert row_norms(rows).shape == (2, 1) and row_norms(rows).dtype == np.float64


def test_eps_bounds_the_divisor():
    tiny_row = np.full((1, 4), 1e-14, dtype=np.float32)
    assert np.linalg.norm(l2_normalize(tiny_row, eps=1e-12)) < 1e-1  # as torch's normalize
    assert float(np.linalg.norm(l2_normalize(tiny_row))) == pytest.approx(1.0, rel=1e-6)
