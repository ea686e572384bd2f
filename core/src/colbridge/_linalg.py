"""Row norms and L2 normalisation: the one place colbridge scales vectors to unit length."""

from __future__ import annotations

from typing import Any

import numpy as np

TINY = float(np.finfo(np.float32).tiny)
"""Vectors shorter than this (the smallest normal float32) have no usable direction."""


def row_norms(vectors: Any) -> np.ndarray:
    """L2 norms of the rows of ``(rows, dim)`` vectors as a ``(rows, 1)`` float64 column (``(1,)``
    for one ``(dim,)`` vector), summed in float64 so that large float32 values cannot overflow."""
    return np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=-1, keepdims=True)


def l2_normalize(vectors: Any, *, norms: np.ndarray | None = None, eps: float = TINY) -> np.ndarray:
    """``vectors`` (rows of ``(rows, dim)``, or one ``(dim,)`` vector) scaled to unit L2 length,
    as contiguous float32.

    A row shorter than ``eps`` is divided by ``eps`` instead, so that it stays near zero rather
    than becoming NaN (``eps=1e-12`` is what ``torch.nn.functional.normalize`` does). ``norms``
    passes :func:`row_norms` of ``vectors`` when the caller computed them already.
    """
    if norms is None:
        norms = row_norms(vectors)
    scaled = np.asarray(vectors, dtype=np.float32) / np.maximum(norms, eps)
    return np.ascontiguousarray(scaled, dtype=np.float32)
