"""Token stores: every document's token vectors, one row per token, behind one class.

A :class:`TokenStore` holds the rows of one generation (compaction starts the next): it gathers
the rows of given documents, appends rows (returning the first row and a digest the store
records), writes the live rows into the next generation, and exposes the committed row count.
How rows are kept on disk is its codec's business; the manifest names the codec (``"codec"``,
absent in folders written before codecs existed, which means ``float16``). Everything else —
graph building, document means, exact scoring, ``colbridge check`` — reads rows through the
store, never a file. Adding a codec is one module with a :class:`TokenStore` subclass and a
:func:`register_codec` call for it (see ``docs/index-format.md``).

The first codec, :class:`Float16Store`: ``vectors-<generation>.f16`` holds raw little-endian
float16 values, ``dimension`` per row, with no header (the manifest gives the dimension; the
store gives the committed row count). Rows are only ever appended; rows past the committed
count are leftovers of an interrupted write and are cut off before the next append. Compaction
writes a new generation and switches to it in one SQLite transaction. The file is memory-mapped
for reading, copy-on-write: the rows are never written through the map, but a writable array
lets PyTorch score them without a copy.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._files import fsync_dir, open_nofollow
from ..errors import IndexCorruptError, InvalidInputError
from ..scoring import rows_of
from . import layout

DTYPE = np.dtype("<f2")
DEFAULT_CODEC = "float16"
"""The codec of a manifest that names none."""
NEW_INDEX_CODEC = "int8"
"""The codec of a new index unless one is asked for (measured in ``docs/compression.md``)."""

_COMPACT_DOCS = 2048  # documents per run of rows (and checksum record) written by compaction


class TokenStore(ABC):
    """The token vectors of one generation of an index folder, ``dimension`` wide.

    Args:
        folder: the index folder.
        generation: which generation's rows (the store's ``generation`` state).
        dimension: width of a row (the manifest's ``model.dimension``).
        rows: the committed row count; reads see these rows only.

    Raises :class:`~colbridge.IndexCorruptError` when the folder holds fewer rows than are
    committed. Subclasses set :attr:`codec`, :attr:`extension` and :attr:`value_bytes` and
    implement the abstract methods; the rest is shared. The shared file handling assumes the
    generation's file holds rows of ``dimension`` values of ``value_bytes`` each, with no
    header, appended in place; a codec laid out otherwise overrides it.
    """

    codec: ClassVar[str]
    """The name the manifest records."""
    extension: ClassVar[str]
    """The extension of the generation's file, ``vectors-<generation>.<extension>``."""
    value_bytes: ClassVar[int]
    """Bytes one stored value takes in the generation's file."""
    norm_tolerance: ClassVar[float] = 0.02
    """How far from 1 a stored row's length may be (``colbridge check``'s unit-norm rule)."""

    def __init__(self, folder: Path, generation: int, dimension: int, rows: int) -> None:
        self.folder = folder
        self.generation = generation
        self.dimension = dimension
        problems, _ = self.file_problems(folder, generation, dimension, rows)
        if problems:
            raise IndexCorruptError(f"{folder}: {problems[0]}")
        self.rows = rows

    @classmethod
    def file_name(cls, generation: int) -> str:
        return layout.vector_file_name(generation, cls.extension)

    @property
    def path(self) -> Path:
        """The file holding this generation's rows."""
        return self.folder / self.file_name(self.generation)

    # -- reading ------------------------------------------------------------------------------
    @property
    def matrix(self) -> np.ndarray | None:
        """The committed rows as one float16 array (memory-mapped), for codecs that store them
        so; None otherwise. Exact scoring uses its fast kernel on it."""
        return None

    def view(self) -> Any:
        """The committed rows as an array-like of shape ``(rows, dimension)``, indexable by an
        array of rows or a slice, and fixed: later appends do not change it."""
        return DecodedRows(self, self.rows)

    def scoring_rows(self) -> Any:
        """What :func:`colbridge.scoring.maxsim_ranges` scores: the float16 matrix when there
        is one, else :meth:`view`."""
        matrix = self.matrix
        return matrix if matrix is not None else self.view()

    def gather(self, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Rows ``start`` to ``start + count - 1`` of each document, concatenated."""
        return np.asarray(self.view()[rows_of(np.asarray(starts), np.asarray(counts))])

    @abstractmethod
    def decode(self, rows: np.ndarray) -> np.ndarray:
        """The token vectors (float32) of the committed ``rows`` (a 1-D array of row numbers)."""

    def file_names(self) -> list[str]:
        """Names of every file of this generation (the writer keeps them, deletes others)."""
        return [self.path.name]

    @property
    def row_bytes(self) -> int:
        """Bytes one row takes in the generation's file."""
        return self.dimension * self.value_bytes

    # -- writing ------------------------------------------------------------------------------
    @abstractmethod
    def append(self, arrays: Sequence[np.ndarray]) -> tuple[int, str]:
        """Write arrays after the committed rows and make them durable; returns the first row
        and the SHA-256 of what was written (for the store to record with the commit).

        The new rows stay invisible to readers until :meth:`expose` is called after the store
        has committed them.
        """

    def _append_bytes(self, blobs: Iterable[bytes]) -> tuple[int, str]:
        """Write ``blobs`` (whole encoded rows) after the committed rows and make them durable;
        returns what :meth:`append` returns."""
        digest = hashlib.sha256()
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        with os.fdopen(fd, "r+b") as f:
            f.truncate(self.rows * self.row_bytes)  # drop leftovers of an interrupted write
            f.seek(self.rows * self.row_bytes)
            for data in blobs:
                digest.update(data)
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(self.path.parent)
        return self.rows, digest.hexdigest()

    def expose(self, rows: int) -> None:
        """Make the first ``rows`` rows readable (after the store committed them)."""
        self.rows = rows

    @abstractmethod
    def write_generation(self, generation: int, starts: np.ndarray, counts: np.ndarray
                         ) -> tuple[int, list[tuple[int, int, str]]]:
        """Write the rows of documents ``(starts, counts)``, in that order, as the complete
        file(s) of ``generation`` (compaction); returns the row count and each run's
        ``(first row, rows, SHA-256)``."""

    @classmethod
    def write_rows(cls, folder: Path, generation: int, dimension: int,
                   chunks: Iterable[np.ndarray], sample: np.ndarray | None
                   ) -> tuple[int, list[tuple[int, int, str]]]:
        """Write token vectors given as float32 ``chunks`` as the complete file(s) of
        ``generation`` (a compaction that converts to this codec, or retrains it; ``sample``
        holds rows to train on, for codecs that train); returns what
        :meth:`write_generation` returns."""
        raise InvalidInputError(f"token vectors cannot be converted to the {cls.codec} codec")

    def clipped_values(self, arrays: Sequence[np.ndarray]) -> int:
        """How many values of ``arrays`` this store could not represent within its trained
        range (0 for codecs without one)."""
        return 0

    # -- integrity ----------------------------------------------------------------------------
    @classmethod
    def held_rows(cls, folder: Path, generation: int, dimension: int) -> int | None:
        """Whole rows the generation's file holds (committed or not); None when it is missing."""
        try:
            size = (folder / cls.file_name(generation)).stat().st_size
        except FileNotFoundError:
            return None
        return size // (dimension * cls.value_bytes)

    @classmethod
    def file_problems(cls, folder: Path, generation: int, dimension: int, rows: int
                      ) -> tuple[list[str], list[str]]:
        """``(problems, notes)`` about the file(s) holding ``rows`` committed rows: missing or
        truncated files are problems; bytes past the committed rows are a note."""
        held = cls.held_rows(folder, generation, dimension)
        path = folder / cls.file_name(generation)
        if held is None:
            if rows:
                return [f"{path.name} is missing but {rows} rows are committed: the token "
                        "vectors are gone"], []
            return [], []
        if held < rows:
            return [f"{path.name} holds {held} rows but {rows} are committed: the vector file "
                    "is truncated"], []
        extra = path.stat().st_size - rows * dimension * cls.value_bytes
        if extra > 0:
            return [], [f"{path.name} has {extra} bytes past the committed rows (an interrupted "
                        "write; cut off by the next one)"]
        return [], []

    @abstractmethod
    def range_digest(self, first: int, rows: int) -> str:
        """SHA-256 of rows ``first`` to ``first + rows - 1`` as stored (what :meth:`append`
        and :meth:`write_generation` return)."""

    def committed_files(self) -> list[tuple[Path, int]]:
        """``(path, bytes)`` of what holds the committed rows: a backup copies these prefixes."""
        return [(self.path, self.rows * self.row_bytes)]


class DecodedRows:
    """The first ``rows`` rows of a store without a float16 matrix, decoded on access."""

    dtype = np.dtype(np.float32)

    def __init__(self, store: TokenStore, rows: int) -> None:
        self._store = store
        self.shape = (rows, store.dimension)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            key = np.arange(*key.indices(self.shape[0]))
        rows = np.asarray(key, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
            raise IndexError(f"rows outside the {self.shape[0]} committed rows")
        return self._store.decode(rows.ravel()).reshape(*rows.shape, self.shape[1])


class Float16Store(TokenStore):
    """The ``float16`` codec: append-only float16 rows in ``vectors-<generation>.f16``."""

    codec = "float16"
    extension = "f16"
    value_bytes = DTYPE.itemsize

    def __init__(self, folder: Path, generation: int, dimension: int, rows: int) -> None:
        super().__init__(folder, generation, dimension, rows)
        self._matrix = self._map(rows)

    @property
    def matrix(self) -> np.ndarray:
        return self._matrix

    def view(self) -> np.ndarray:
        return self._matrix

    def decode(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._matrix[rows], dtype=np.float32)

    def _map(self, rows: int) -> np.ndarray:
        if rows == 0:
            return np.zeros((0, self.dimension), dtype=DTYPE)
        return np.memmap(self.path, dtype=DTYPE, mode="c", shape=(rows, self.dimension))

    def append(self, arrays: Sequence[np.ndarray]) -> tuple[int, str]:
        return self._append_bytes(np.ascontiguousarray(a, dtype=DTYPE).tobytes() for a in arrays)

    def expose(self, rows: int) -> None:
        self.rows = rows
        self._matrix = self._map(rows)

    def write_generation(self, generation: int, starts: np.ndarray, counts: np.ndarray
                         ) -> tuple[int, list[tuple[int, int, str]]]:
        chunks = (self._matrix[rows_of(run_starts, run_counts)]
                  for run_starts, run_counts in compaction_runs(starts, counts))
        return write_vector_file(self.folder / self.file_name(generation), chunks)

    @classmethod
    def write_rows(cls, folder: Path, generation: int, dimension: int,
                   chunks: Iterable[np.ndarray], sample: np.ndarray | None
                   ) -> tuple[int, list[tuple[int, int, str]]]:
        return write_vector_file(folder / cls.file_name(generation), chunks)

    def range_digest(self, first: int, rows: int) -> str:
        return range_digest(self.path, self.dimension, first, rows)


_CODECS: dict[str, type[TokenStore]] = {}


def register_codec(store: type[TokenStore]) -> type[TokenStore]:
    """Make ``store`` the class that opens folders whose manifest names ``store.codec``
    (usable as a class decorator)."""
    _CODECS[store.codec] = store
    return store


def codec_names() -> tuple[str, ...]:
    """The codecs this colbridge can open, sorted."""
    return tuple(sorted(_CODECS))


def store_class(codec: str) -> type[TokenStore]:
    """The store registered for ``codec``; :class:`~colbridge.IndexCorruptError` naming the
    known codecs when there is none."""
    try:
        return _CODECS[codec]
    except (KeyError, TypeError):
        raise IndexCorruptError(
            f"the index stores its token vectors with the codec {codec!r}, which this colbridge "
            f"does not know (it knows {', '.join(codec_names())}): it was written by a newer "
            "colbridge (upgrade colbridge) or its manifest is damaged"
        ) from None


register_codec(Float16Store)


def compaction_runs(starts: np.ndarray, counts: np.ndarray
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(starts, counts)`` of consecutive runs of documents, as compaction writes them (one
    checksum record a run)."""
    for begin in range(0, len(starts), _COMPACT_DOCS):
        yield starts[begin:begin + _COMPACT_DOCS], counts[begin:begin + _COMPACT_DOCS]


def write_vector_file(path: Path, chunks: Iterable[np.ndarray], dtype: np.dtype = DTYPE
                      ) -> tuple[int, list[tuple[int, int, str]]]:
    """Write a complete new vector file from an iterable of 2-D row chunks, stored as
    ``dtype`` (float16 unless given); returns the row count and each non-empty chunk's
    ``(first row, rows, SHA-256)``."""
    rows = 0
    sums = []
    with os.fdopen(open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as f:
        for chunk in chunks:
            data = np.ascontiguousarray(chunk, dtype=dtype).tobytes()
            if data:
                f.write(data)
                sums.append((rows, len(chunk), hashlib.sha256(data).hexdigest()))
                rows += len(chunk)
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


def store_for_generation(folder: Path, codec: str, generation: int, dimension: int
                         ) -> type[TokenStore]:
    """The store that reads ``generation``: the one of ``codec`` (the manifest's) unless the
    generation's file is another registered codec's (a compaction converted the folder; see
    ``EmbeddedIndex.compact``)."""
    preferred = store_class(codec)
    if preferred.held_rows(folder, generation, dimension) is not None:
        return preferred
    for other in _CODECS.values():
        if other.held_rows(folder, generation, dimension) is not None:
            return other
    return preferred


from . import vectors_int8  # noqa: E402,F401  (registers the int8 codec)
