"""MaxSim, the late-interaction score, as pure NumPy functions.

For a query with token vectors ``Q`` (shape ``(q, dim)``) and a document with token vectors
``D`` (shape ``(d, dim)``), all L2-normalised::

    maxsim(Q, D) = sum over query tokens i of  max over document tokens j of  Q[i] . D[j]

Documents are stored with their real tokens only, so no padding ever takes part in the max
(PyLate zero-pads documents, which turns a negative best similarity into 0).

>>> import numpy as np
>>> Q = np.array([[1.0, 0.0], [0.0, 1.0]])
>>> D = np.array([[0.6, 0.8], [1.0, 0.0]])
>>> float(maxsim(Q, D))   # token 0 best matches D[1] (1.0), token 1 best matches D[0] (0.8)
1.8
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

_GROUP_ROWS = 8192  # padded rows scored per step of maxsim_ranges: they stay in the CPU cache
_NUMPY_CHUNK_ROWS = 131_072
_buffers = threading.local()
_HAS_ONNXRUNTIME = importlib.util.find_spec("onnxruntime") is not None


def kernel() -> str:
    """Which kernel scores float16 token vectors in this process.

    ``"onnxruntime"`` when it is installed (``colbridge[onnx]``): it widens and multiplies in
    one call, with threads that do not spin, and measured far faster than PyTorch (whose idle
    threads spin) and NumPy on busy cores (docs/benchmarks.md). Else ``"torch"`` when PyTorch
    is loaded already (importing it takes seconds, which a search must not pay), else
    ``"numpy"``.
    """
    if _HAS_ONNXRUNTIME:
        return "onnxruntime"
    return "torch" if "torch" in sys.modules else "numpy"


def maxsim(query: np.ndarray, document: np.ndarray) -> float:
    """MaxSim of one query ``(q, dim)`` against one document ``(d, dim)``."""
    return float((np.asarray(query, np.float32) @ np.asarray(document, np.float32).T).max(1).sum())


def maxsim_packed(query: np.ndarray, packed: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """MaxSim of one query against many documents whose token vectors are stacked.

    Args:
        query: ``(q, dim)`` query token vectors.
        packed: ``(sum(lengths), dim)`` document token vectors, document after document
            (float16 or float32).
        lengths: ``(n,)`` number of tokens of each document, every one at least 1.

    Returns:
        ``(n,)`` float32 scores, in the order of the documents.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) == 0:
        return np.zeros(0, dtype=np.float32)
    similarities = token_similarities(query, packed)  # (q, total tokens)
    starts = np.concatenate(([0], np.cumsum(lengths[:-1])))
    best_per_token = np.maximum.reduceat(similarities, starts, axis=1)  # (q, n)
    return best_per_token.sum(axis=0, dtype=np.float32)


def token_similarities(query: np.ndarray, packed: np.ndarray) -> np.ndarray:
    """``query @ packed.T`` in float32, ``(q, tokens)``.

    Float16 token vectors (what the index stores) are widened and multiplied by the
    :func:`kernel` of this process: ONNX Runtime or PyTorch widen and multiply the tall matrix
    much faster than NumPy on CPU (docs/benchmarks.md, "What we changed"). Float32 input, and
    float16 without either, go to NumPy.
    """
    q = np.asarray(query, dtype=np.float32)
    chosen = kernel() if packed.dtype == np.float16 and len(packed) else "numpy"
    if chosen == "onnxruntime":
        from . import _kernels

        return _kernels.similarities(np.ascontiguousarray(packed), np.ascontiguousarray(q))
    if chosen == "numpy":
        return q @ np.asarray(packed, dtype=np.float32).T
    torch = sys.modules["torch"]

    d = torch.from_numpy(np.ascontiguousarray(packed)).float()
    return (d @ torch.from_numpy(np.ascontiguousarray(q)).T).T.contiguous().numpy()


def maxsim_ranges(query: np.ndarray, matrix: Any, starts: np.ndarray,
                  counts: np.ndarray, *, coarse: bool = False) -> np.ndarray:
    """MaxSim of one query against documents stored as rows ``matrix[start:start + count]``.

    This is the exact scoring of the embedded index's candidates. With float16 rows and a fast
    :func:`kernel` (ONNX Runtime or PyTorch), documents are taken in groups of similar length,
    each padded to its longest by repeating its last token (a repeated token cannot change a
    maximum), so one gather, one widening, one product and one max over a
    ``(documents, tokens, query tokens)`` block score the whole group inside the CPU cache,
    several times faster than gathering every row first (docs/benchmarks.md, "What we
    changed"). Otherwise NumPy scores chunks of gathered rows.

    Args:
        query: ``(q, dim)`` query token vectors.
        matrix: ``(rows, dim)`` token vectors of all documents: an array, an array-like
            indexable by arrays of rows, or a token store (``colbridge.index.vectors``), whose
            rows are scored as its codec gives them (the fast kernels for a float16 matrix;
            the codes themselves, never decoded, for the ``int8`` codec's rows).
        starts, counts: first row and number of rows of each document (every count >= 1).
        coarse: for the ``int8`` codec's rows with ONNX Runtime, score with the query rounded
            to 8 bits and the codes multiplied as integers (``_kernels.GROUP_CODES``, its
            coarse path):
            several times faster and slightly off MaxSim, for choosing which candidates to
            score again exactly. Elsewhere it changes nothing.

    Returns:
        ``(n,)`` float32 scores, in the order of ``starts``.
    """
    if not isinstance(matrix, np.ndarray) and hasattr(matrix, "scoring_rows"):
        matrix = matrix.scoring_rows()
    starts = np.asarray(starts, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if hasattr(matrix, "read_codes"):  # a linear 8-bit store: scored from its codes
        return _maxsim_ranges_codes(query, matrix, starts, counts, coarse)
    chosen = kernel() if len(starts) and matrix.dtype == np.float16 else "numpy"
    if chosen == "onnxruntime":
        return _maxsim_ranges_onnx(query, matrix, starts, counts)
    if chosen == "torch" and matrix.flags.writeable:
        return _maxsim_ranges_torch(sys.modules["torch"], query, matrix, starts, counts)
    scores = np.empty(len(starts), dtype=np.float32)
    ends = np.cumsum(counts)
    begin = 0
    while begin < len(starts):
        base = ends[begin - 1] if begin else 0
        end = max(int(np.searchsorted(ends, base + _NUMPY_CHUNK_ROWS, side="right")), begin + 1)
        rows = rows_of(starts[begin:end], counts[begin:end])
        scores[begin:end] = maxsim_packed(query, matrix[rows], counts[begin:end])
        begin = end
    return scores


def has_coarse_kernel(matrix: Any) -> bool:
    """Whether ``maxsim_ranges(..., coarse=True)`` scores ``matrix`` coarsely (the ``int8``
    codec's rows, with ONNX Runtime) rather than exactly."""
    from . import _kernels

    if not isinstance(matrix, np.ndarray) and hasattr(matrix, "scoring_rows"):
        matrix = matrix.scoring_rows()
    return (hasattr(matrix, "read_codes") and kernel() == "onnxruntime"
            and matrix.shape[1] <= _kernels.MAX_COARSE_DIMENSION)


def _length_groups(counts: np.ndarray) -> tuple[np.ndarray, list[int], list[tuple[int, int]]]:
    """Documents ordered by length and cut into groups of at most ``_GROUP_ROWS`` padded rows:
    ``(order, sorted lengths, [(begin, end) of each group])``."""
    order = np.argsort(counts, kind="stable")
    lengths = counts[order].tolist()
    # Sorted by length, so a group's last document is its longest: groups end where one more
    # document would take the padded group past _GROUP_ROWS.
    bounds, begin = [], 0
    for end in range(1, len(lengths) + 1):
        if end == len(lengths) or (end + 1 - begin) * lengths[end] > _GROUP_ROWS:
            bounds.append((begin, end))
            begin = end
    return order, lengths, bounds


def _maxsim_ranges_onnx(query, matrix, starts, counts) -> np.ndarray:
    from . import _kernels

    order, lengths, bounds = _length_groups(counts)
    counts, starts = counts[order], starts[order]
    query_t = np.ascontiguousarray(np.asarray(query, dtype=np.float32).T)
    scores = np.empty(len(order), dtype=np.float32)
    for begin, end in bounds:
        width = lengths[end - 1]
        rows = starts[begin:end, None] + np.minimum(np.arange(width), counts[begin:end, None] - 1)
        scores[order[begin:end]] = _kernels.maxsim_group(matrix[rows], query_t)
    return scores


def _maxsim_ranges_codes(query, coded, starts, counts, coarse=False) -> np.ndarray:
    """MaxSim over linear 8-bit codes (``value = offset + scale * code`` per dimension):
    ``q . value = (q * scale) . code + q . offset``, and the second term does not depend on the
    row, so each query token's best row is found on the codes and the constant is added once.
    Candidates are scored in length groups as for float16, each group's codes read straight
    into its padded block when it is scored (so they stay in cache); ONNX Runtime widens and
    multiplies each block, NumPy without it. (An integer kernel with the query rounded to 16
    bits was faster but moved scores by about 1e-5 of their size: docs/benchmarks.md.) With
    ``coarse``, ONNX Runtime multiplies the codes as integers by the query rounded to 8 bits.
    """
    if not len(starts):
        return np.zeros(0, dtype=np.float32)
    from . import _kernels

    params = coded.params
    q = np.asarray(query, dtype=np.float32)
    scaled = q * params.scale
    constant = np.float32((q @ params.offset).sum())
    order, lengths, bounds = _length_groups(counts)
    counts, starts = counts[order], starts[order]
    scores = np.empty(len(order), dtype=np.float32)
    scaled_t = np.ascontiguousarray(scaled.T)
    if kernel() == "onnxruntime" and coarse and q.shape[1] <= _kernels.MAX_COARSE_DIMENSION:
        rounded = _kernels.coarse_query(scaled)

        def group(block: np.ndarray) -> np.ndarray:
            return _kernels.maxsim_group_codes_coarse(block, rounded)
    elif kernel() == "onnxruntime":
        def group(block: np.ndarray) -> np.ndarray:
            return _kernels.maxsim_group_codes(block, scaled_t)
    else:
        def group(block: np.ndarray) -> np.ndarray:
            return (block.astype(np.float32) @ scaled_t).max(axis=1).sum(axis=1)
    buffer = _code_buffer(max(_GROUP_ROWS, lengths[-1]) * q.shape[1])
    for begin, end in bounds:
        block = coded.read_padded(starts[begin:end], counts[begin:end], lengths[end - 1], buffer)
        scores[order[begin:end]] = group(block)
    return scores + constant


def _code_buffer(size: int) -> np.ndarray:
    """This thread's reusable uint8 block for a group's codes, of at least ``size`` bytes."""
    held = getattr(_buffers, "codes", None)
    if held is None or held.size < size:
        held = np.empty(size, dtype=np.uint8)
        _buffers.codes = held
    return held


def _maxsim_ranges_torch(torch, query, matrix, starts, counts) -> np.ndarray:
    dim, query_tokens = matrix.shape[1], len(query)
    vectors = torch.from_numpy(matrix)
    q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32)).T
    order, lengths, bounds = _length_groups(counts)
    counts, starts = counts[order], starts[order]
    scores = np.empty(len(order), dtype=np.float32)
    half, full, sims = _scratch(torch, max(_GROUP_ROWS, lengths[-1]) * max(dim, query_tokens))
    for begin, end in bounds:
        width = lengths[end - 1]
        rows = starts[begin:end, None] + np.minimum(np.arange(width), counts[begin:end, None] - 1)
        n = rows.size
        gathered = half[: n * dim].view(n, dim)
        torch.index_select(vectors, 0, torch.from_numpy(rows.ravel()), out=gathered)
        widened = full[: n * dim].view(n, dim)
        widened.copy_(gathered)
        block = sims[: n * query_tokens].view(n, query_tokens)
        torch.mm(widened, q, out=block)
        scores[order[begin:end]] = block.view(end - begin, width, query_tokens).amax(dim=1).sum(dim=1).numpy()
    return scores


def _scratch(torch, size: int):
    """This thread's scratch tensors (float16, float32, float32) of at least ``size`` elements.

    Per thread, not shared behind a lock: concurrent searches then overlap their scoring, which
    raised the throughput of concurrent searches (docs/benchmarks.md, "Against the targets")."""
    held = getattr(_buffers, "tensors", None)
    if held is None or held[0].numel() < size:
        held = (torch.empty(size, dtype=torch.float16), torch.empty(size), torch.empty(size))
        _buffers.tensors = held
    return held


def rows_of(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Row numbers of documents stored as ``matrix[start:start + count]``, concatenated."""
    total = int(np.sum(counts))
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.repeat(starts - offsets, counts) + np.arange(total)


def maxsim_many(query: np.ndarray, documents: Sequence[np.ndarray]) -> np.ndarray:
    """MaxSim of one query against a list of ``(d_i, dim)`` documents; ``(n,)`` scores."""
    if len(documents) == 0:
        return np.zeros(0, dtype=np.float32)
    lengths = np.array([len(d) for d in documents], dtype=np.int64)
    return maxsim_packed(query, np.concatenate(documents, axis=0), lengths)


def normalize_score(raw: float | np.ndarray, query_tokens: int) -> float | np.ndarray:
    """Map a raw MaxSim score to [0, 1].

    The raw score is a sum of ``query_tokens`` cosine similarities, so ``raw / query_tokens`` is
    the mean best-match similarity per query token, in [-1, 1]. We clip it below at 0 (a query
    token whose best match is anti-correlated carries no relevance): 1.0 means every query token
    found an identical document token. The map is monotone, so it never changes an order, and it
    does not depend on the collection, so a threshold means the same thing on every index.
    """
    scaled = np.clip(np.asarray(raw, dtype=np.float64) / max(query_tokens, 1), 0.0, 1.0)
    return float(scaled) if scaled.ndim == 0 else scaled


def fuse_scores(colbert: np.ndarray, bm25: np.ndarray, colbert_weight: float) -> np.ndarray:
    """Hybrid score of candidates scored both ways: min-max normalise each signal over the
    candidates, then mix, ``colbert_weight`` for MaxSim and the rest for BM25.

    Each result is in [0, 1]. A signal that is the same for every candidate (one candidate, or
    no candidate sharing a term with the query) counts 1 for each when it is positive, 0 when
    not, so a lone good match is not scored 0.
    """
    def unit(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if len(values) == 0:
            return values
        low, spread = values.min(), values.max() - values.min()
        if spread > 0:
            return (values - low) / spread
        return np.full_like(values, 1.0 if low > 0 else 0.0)

    return colbert_weight * unit(colbert) + (1.0 - colbert_weight) * unit(bm25)
