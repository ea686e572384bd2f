"""Each document's mean token vector: what the search knows of a document the graph missed.

The graph finds, for each query token, its nearest document tokens. A document can score high
with MaxSim while holding none of them: every query token matches it fairly well, none best of
all. The search estimates such a token's similarity from the document's mean token vector
(see ``first_stage`` in ``embedded.py``), which keeps more of the exact top 10 among the
pre-ranked candidates than counting such tokens 0 (``docs/benchmarks.md``, "Pre-ranking guesses
what the graph did not find").

Like the graph, the means are a cache of the vector file, saved with each graph checkpoint as
``means-<generation>-<rows>.npz``: a NumPy archive (no pickle) of ``doc_nos`` (int64) and
``means`` (float16, one normalised row per document). Document numbers are never reused and
compaction does not change a document's vectors, so a saved mean stays right for as long as its
document lives. Means missing from the file (documents added after it, or all of them when it is
missing or unreadable) are computed from the vector file when the index opens.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._files import file_digest
from ..scoring import rows_of
from . import layout
from .layout import means_file_name

logger = logging.getLogger(__name__)

_BLOCK_DOCS = 1024


def saved_means(folder: Path) -> list[tuple[int, int, Path]]:
    """Every means file in ``folder`` as ``(generation, rows, path)``, newest first."""
    return [(name.generation, name.rows, path)
            for name, path in layout.files_of(folder, layout.MEANS)]


def save_means(folder: Path, generation: int, rows: int, doc_nos: np.ndarray,
               means: np.ndarray) -> Path:
    """Write the means of ``doc_nos`` atomically (temporary name, fsync, rename)."""
    target = folder / means_file_name(generation, rows)
    with layout.atomic_file(target) as scratch, open(scratch, "wb") as f:
        np.savez(f, doc_nos=np.asarray(doc_nos, np.int64), means=np.asarray(means, np.float16))
    return target


def read_means(path: Path, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """``(doc_nos, means)`` of a means file; ValueError when it is damaged or foreign."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            doc_nos, means = archive["doc_nos"], archive["means"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path.name} cannot be read ({type(e).__name__}: {e})") from e
    if (doc_nos.ndim != 1 or doc_nos.dtype != np.int64 or means.dtype != np.float16
            or means.shape != (len(doc_nos), dimension)):
        raise ValueError(f"{path.name} does not hold {dimension}-d float16 means by document")
    return doc_nos, means


def load_latest(folder: Path, dimension: int,
                checksum: Callable[[str], tuple[int, str] | None]
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """The newest means file's ``(doc_nos, means)`` if it matches the ``checksum`` recorded for
    its name, else None: the means are then recomputed (with a warning when the file is
    damaged; a file without a record, from an older colbridge or an interrupted save, is
    silently replaced)."""
    files = saved_means(folder)
    if not files:
        return None
    path = files[0][2]
    recorded = checksum(path.name)
    if recorded is None:
        logger.info("%s has no checksum recorded; recomputing the document means", path.name)
        return None
    try:
        try:
            digest = file_digest(path)
        except OSError as e:
            raise ValueError(f"{path.name} cannot be read ({e})") from e
        if digest != tuple(recorded):
            raise ValueError(f"{path.name} does not match the checksum recorded when it was "
                             "written")
        return read_means(path, dimension)
    except ValueError as e:
        logger.warning("%s; recomputing the document means from the vectors", e)
        return None


def mean_vectors(documents: list[np.ndarray], dimension: int) -> np.ndarray:
    """Normalised mean of each ``(tokens, dimension)`` array, float16 ``(len(documents), dim)``."""
    if not documents:
        return np.zeros((0, dimension), np.float16)
    sums = np.stack([np.asarray(d, np.float32).sum(axis=0) for d in documents])
    return _normalised(sums)


def means_from_rows(matrix: Any, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Means of documents stored as ``matrix[start:start + count]`` (every count >= 1);
    ``matrix`` is anything indexable by an array of rows, such as a token store's view."""
    out = np.zeros((len(starts), matrix.shape[1]), np.float16)
    for begin in range(0, len(starts), _BLOCK_DOCS):
        part_counts = counts[begin:begin + _BLOCK_DOCS]
        rows = np.asarray(matrix[rows_of(starts[begin:begin + _BLOCK_DOCS], part_counts)],
                          dtype=np.float32)
        ends = np.cumsum(part_counts).tolist()
        out[begin:begin + len(part_counts)] = mean_vectors(
            [rows[end - count:end] for end, count in zip(ends, part_counts.tolist())],
            matrix.shape[1],
        )
    return out


def _normalised(sums: np.ndarray) -> np.ndarray:
    norms = np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return (sums / norms).astype(np.float16)
