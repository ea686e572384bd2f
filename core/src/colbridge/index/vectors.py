"""The token-vector file: every document's token vectors, float16, one row per token.

``vectors-<generation>.f16`` holds raw little-endian float16 values, ``dimension`` per row, with
no header (the manifest gives the dimension; the store gives the committed row count). Rows are
only ever appended; rows past the committed count are leftovers of an interrupted write and are
cut off before the next append. Compaction writes a new generation and switches to it in one
SQLite transaction. The file is memory-mapped for reading, copy-on-write: the rows are never
written through the map, but a writable array lets PyTorch score them without a copy.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._files import fsync_dir, open_nofollow
from ..errors import IndexCorruptError

DTYPE = np.dtype("<f2")


def vector_file_name(generation: int) -> str:
    return f"vectors-{generation}.f16"


class VectorFile:
    """Append-only float16 rows of width ``dimension``; reads see the first ``rows`` of them."""

    def __init__(self, folder: Path, generation: int, dimension: int, rows: int) -> None:
        self.path = folder / vector_file_name(generation)
        self.generation = generation
        self.dimension = dimension
        self.row_bytes = dimension * DTYPE.itemsize
        if rows and not self.path.exists():
            raise IndexCorruptError(f"{self.path} is missing: the token vectors are gone")
        if self.path.exists() and self.path.stat().st_size < rows * self.row_bytes:
            raise IndexCorruptError(
                f"{self.path} holds {self.path.stat().st_size // self.row_bytes} rows but "
                f"{rows} are committed: the vector file is truncated"
            )
        self.rows = rows
        self.matrix = self._map(rows)

    def _map(self, rows: int) -> np.ndarray:
        if rows == 0:
            return np.zeros((0, self.dimension), dtype=DTYPE)
        return np.memmap(self.path, dtype=DTYPE, mode="c", shape=(rows, self.dimension))

    def append(self, arrays: Sequence[np.ndarray]) -> tuple[int, str]:
        """Write arrays after the committed rows and make them durable; returns the first row
        and the SHA-256 of the bytes written (for the store to record with the commit).

        The new rows stay invisible to readers until :meth:`expose` is called after the store
        has committed them.
        """
        digest = hashlib.sha256()
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        with os.fdopen(fd, "r+b") as f:
            f.truncate(self.rows * self.row_bytes)  # drop leftovers of an interrupted write
            f.seek(self.rows * self.row_bytes)
            for array in arrays:
                data = np.ascontiguousarray(array, dtype=DTYPE).tobytes()
                digest.update(data)
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(self.path.parent)
        return self.rows, digest.hexdigest()

    def expose(self, rows: int) -> None:
        """Make the first ``rows`` rows readable (after the store committed them)."""
        self.rows = rows
        self.matrix = self._map(rows)


def write_vector_file(path: Path, chunks: Sequence[np.ndarray] | object
                      ) -> tuple[int, list[tuple[int, int, str]]]:
    """Write a complete new vector file from an iterable of row chunks; returns the row count
    and each chunk's ``(first row, rows, SHA-256)``."""
    rows = 0
    sums = []
    with os.fdopen(open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as f:
        for chunk in chunks:  # type: ignore[attr-defined]
            data = np.ascontiguousarray(chunk, dtype=DTYPE).tobytes()
            f.write(data)
            count = len(data) // (chunk.shape[1] * DTYPE.itemsize) if len(data) else 0
            if count:
                sums.append((rows, count, hashlib.sha256(data).hexdigest()))
            rows += count
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)
    return rows, sums


def range_digest(path: Path, dimension: int, first: int, rows: int) -> str:
    """SHA-256 of rows ``first`` to ``first + rows - 1`` of a vector file."""
    row_bytes = dimension * DTYPE.itemsize
    digest = hashlib.sha256()
    with os.fdopen(open_nofollow(path, os.O_RDONLY), "rb") as f:
        f.seek(first * row_bytes)
        left = rows * row_bytes
        while left > 0:
            chunk = f.read(min(left, 1 << 23))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()
