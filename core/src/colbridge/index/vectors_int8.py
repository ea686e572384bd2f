"""The ``int8`` token store: one byte per dimension, scored without decoding.

Each stored value is ``offset[d] + scale[d] * code`` with a ``uint8`` code, per dimension
``d`` (a linear, per-dimension min-max scalar quantiser). Linear means MaxSim can score the
codes directly: ``q . (offset + scale * c) = (q * scale) . c + q . offset``, so the exact stage
multiplies the codes by a pre-scaled query and adds one constant per query
(:func:`colbridge.scoring.maxsim_ranges`). Files of generation ``<gen>``:

* ``vectors-<gen>.u8``: raw codes, ``dimension`` bytes per row, one row per token, no header;
  append-only, like the float16 file.
* ``vectors-<gen>.json``: the parameters (``offset``, ``scale``), trained on the first rows
  written to the generation, with a SHA-256 of their canonical form. Written atomically before
  the first codes; never changed afterwards.

Codes 1 to 254 cover the trained range; 0 and 255 hold values below or above it (clipped).
Rows are read with ``os.pread`` rather than a memory map: pages read that way stay in the page
cache, shared and reclaimable, instead of counting toward the process's resident memory
(figures in ``docs/compression.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write_bytes, open_nofollow
from ..errors import IndexCorruptError
from . import layout
from .vectors import (
    DecodedRows,
    TokenStore,
    compaction_runs,
    register_codec,
    write_vector_file,
)

PARAMS_FORMAT = "colbridge-int8-codec"
PARAMS_VERSION = 1
PARAMS_EXTENSION = "json"
TRAIN_ROWS = 65_536
"""Rows (evenly spread over the first fill) whose per-dimension range sets the parameters."""
LEVELS = 253  # codes 1..254 span the trained range; 0 and 255 mark clipped values
_MIN_SPAN = 1e-4  # a dimension constant over the sample still gets a usable step
_CHUNK_ROWS = 65_536
CODE_DTYPE = np.dtype(np.uint8)


class Int8Params:
    """``offset`` and ``scale`` (float32, one per dimension) of an int8 generation.

    Args:
        offset, scale: ``(dimension,)`` arrays; ``value = offset + scale * code``.
        trained_rows: how many rows the range was taken from (informational).
    """

    def __init__(self, offset: np.ndarray, scale: np.ndarray, trained_rows: int) -> None:
        self.offset = np.ascontiguousarray(offset, dtype=np.float32)
        self.scale = np.ascontiguousarray(scale, dtype=np.float32)
        self.trained_rows = int(trained_rows)

    @classmethod
    def train(cls, sample: np.ndarray) -> Int8Params:
        """Parameters whose codes 1..254 span each dimension's range over ``sample``."""
        sample = np.asarray(sample, dtype=np.float32)
        if len(sample) > TRAIN_ROWS:
            sample = sample[np.linspace(0, len(sample) - 1, TRAIN_ROWS).astype(np.int64)]
        low, high = sample.min(axis=0), sample.max(axis=0)
        scale = np.maximum(high - low, _MIN_SPAN) / LEVELS
        return cls(low - scale, scale, len(sample))

    def encode(self, vectors: np.ndarray) -> tuple[np.ndarray, int]:
        """``(codes, clipped)``: the uint8 codes of ``vectors`` and how many values fell more
        than half a step outside the representable range (and were clipped to it)."""
        steps = np.rint((np.asarray(vectors, dtype=np.float32) - self.offset) / self.scale)
        clipped = int(np.count_nonzero((steps < 0) | (steps > 255)))
        return np.clip(steps, 0, 255).astype(np.uint8), clipped

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Float32 values of ``codes``."""
        return self.offset + self.scale * codes.astype(np.float32)

    def to_json(self) -> bytes:
        body = {"format": PARAMS_FORMAT, "format_version": PARAMS_VERSION,
                "dimension": len(self.offset), "trained_rows": self.trained_rows,
                "offset": [float(v) for v in self.offset], "scale": [float(v) for v in self.scale]}
        body["sha256"] = _digest(body)
        return (json.dumps(body, indent=1) + "\n").encode()

    @classmethod
    def read(cls, path: Path, dimension: int) -> Int8Params:
        """The parameters in ``path``; :class:`~colbridge.IndexCorruptError` for a file that is
        unreadable, of another format or dimension, or altered since it was written."""
        try:
            with os.fdopen(open_nofollow(path, os.O_RDONLY), "rb") as f:
                body = json.loads(f.read())
        except FileNotFoundError:
            raise IndexCorruptError(f"{path.name} is missing: the int8 codes cannot be read "
                                    "without their parameters") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise IndexCorruptError(f"{path.name} cannot be read ({e})") from None
        if not isinstance(body, dict) or body.get("format") != PARAMS_FORMAT:
            raise IndexCorruptError(f"{path.name} is not an int8 codec parameter file")
        if body.get("format_version") != PARAMS_VERSION:
            raise IndexCorruptError(f"{path.name} has format_version "
                                    f"{body.get('format_version')!r}; this colbridge reads "
                                    f"{PARAMS_VERSION}")
        recorded = body.pop("sha256", None)
        if recorded != _digest(body):
            raise IndexCorruptError(f"{path.name} does not match its checksum: the codec "
                                    "parameters are damaged")
        try:
            offset = np.array(body["offset"], dtype=np.float32)
            scale = np.array(body["scale"], dtype=np.float32)
            trained = int(body["trained_rows"])
        except (KeyError, TypeError, ValueError) as e:
            raise IndexCorruptError(f"{path.name} is incomplete ({e})") from None
        if not (body.get("dimension") == dimension and offset.shape == scale.shape == (dimension,)
                and np.isfinite(offset).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise IndexCorruptError(f"{path.name} does not hold {dimension} finite offsets and "
                                    "positive scales")
        return cls(offset, scale, trained)


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class Int8Store(TokenStore):
    """The ``int8`` codec: uint8 codes in ``vectors-<gen>.u8``, parameters in
    ``vectors-<gen>.json`` (see the module's docstring)."""

    codec = "int8"
    extension = "u8"
    value_bytes = 1
    norm_tolerance = 0.25
    """Looser than float16's: a clipped value shortens its row (docs/compression.md measures
    how much). Damage to the codes is caught by their checksums; this rule still catches
    zeroed or garbage rows."""
    use_memory_map = False
    """Read rows through a memory map instead of ``os.pread`` (kept to measure the two)."""

    def __init__(self, folder: Path, generation: int, dimension: int, rows: int) -> None:
        super().__init__(folder, generation, dimension, rows)
        self.params: Int8Params | None = None
        if self.params_path.exists() or rows:
            self.params = Int8Params.read(self.params_path, dimension)
        self._fd: int | None = None
        self._fd_lock = threading.Lock()
        self._map: np.ndarray | None = None

    @classmethod
    def params_name(cls, generation: int) -> str:
        return layout.vector_file_name(generation, PARAMS_EXTENSION)

    @property
    def params_path(self) -> Path:
        return self.folder / self.params_name(self.generation)

    def file_names(self) -> list[str]:
        return [self.path.name, self.params_path.name]

    @classmethod
    def file_problems(cls, folder: Path, generation: int, dimension: int, rows: int
                      ) -> tuple[list[str], list[str]]:
        problems, notes = super().file_problems(folder, generation, dimension, rows)
        if not problems and (rows or (folder / cls.params_name(generation)).exists()):
            try:
                Int8Params.read(folder / cls.params_name(generation), dimension)
            except IndexCorruptError as e:
                return [str(e)], []
        return problems, notes

    # -- reading ------------------------------------------------------------------------------
    def view(self) -> CodedRows:
        return CodedRows(self, self.rows)

    def scoring_rows(self) -> CodedRows:
        return self.view()

    def read_codes(self, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """The codes of rows ``start`` to ``start + count - 1`` of each range, concatenated:
        ``(sum(counts), dimension)`` uint8."""
        counts = np.asarray(counts, dtype=np.int64)
        out = np.empty((int(counts.sum()), self.dimension), dtype=np.uint8)
        if not len(out):
            return out
        if self.use_memory_map:
            from ..scoring import rows_of

            return np.asarray(self._memory_map()[rows_of(np.asarray(starts), counts)])
        fd = self._file()
        flat = memoryview(out.reshape(-1))
        width = self.dimension
        at = 0
        for start, count in zip(np.asarray(starts).tolist(), counts.tolist(), strict=True):
            size = count * width
            if os.preadv(fd, [flat[at:at + size]], start * width) != size:
                raise IndexCorruptError(f"{self.path.name} ended before row {start + count}")
            at += size
        return out

    def read_padded(self, starts: np.ndarray, counts: np.ndarray, width: int,
                    out: np.ndarray | None = None) -> np.ndarray:
        """The codes of each range as one row of a ``(n, width, dimension)`` uint8 block, a
        range shorter than ``width`` padded by repeating its last row (every count from 1 to
        ``width``). Read straight into the block (into ``out``, when it is large enough): one
        ``preadv`` per range, and no second copy to pad."""
        n, dim = len(starts), self.dimension
        if out is not None and out.size >= n * width * dim:
            block = out[:n * width * dim].reshape(n, width, dim)
        else:
            block = np.empty((n, width, dim), dtype=np.uint8)
        if not n:
            return block
        starts_list = np.asarray(starts, dtype=np.int64).tolist()
        counts_list = np.asarray(counts, dtype=np.int64).tolist()
        if self.use_memory_map:
            rows = np.asarray(starts_list)[:, None] + np.minimum(
                np.arange(width), np.asarray(counts_list)[:, None] - 1)
            block[:] = self._memory_map()[rows]
            return block
        fd, flat, step = self._file(), memoryview(block.reshape(-1)), width * dim
        for i, (start, count) in enumerate(zip(starts_list, counts_list, strict=True)):
            size = count * dim
            if os.preadv(fd, [flat[i * step:i * step + size]], start * dim) != size:
                raise IndexCorruptError(f"{self.path.name} ended before row {start + count}")
            if count < width:
                block[i, count:] = block[i, count - 1]
        return block

    def codes_of(self, rows: np.ndarray) -> np.ndarray:
        """The codes of the given rows (a 1-D array of row numbers, any order)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return np.zeros((0, self.dimension), np.uint8)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        starts = ordered[np.concatenate(([0], breaks))]
        counts = np.diff(np.concatenate(([0], breaks, [len(ordered)])))
        codes = np.empty((len(rows), self.dimension), np.uint8)
        codes[order] = self.read_codes(starts, counts)
        return codes

    def decode(self, rows: np.ndarray) -> np.ndarray:
        if self.params is None:
            return np.zeros((0, self.dimension), np.float32)
        return self.params.decode(self.codes_of(rows))

    def _file(self) -> int:
        if self._fd is None:
            with self._fd_lock:
                if self._fd is None:
                    self._fd = open_nofollow(self.path, os.O_RDONLY)
        return self._fd

    def _memory_map(self) -> np.ndarray:
        if self._map is None or len(self._map) < self.rows:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r",
                                  shape=(self.rows, self.dimension))
        return self._map

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # type: ignore[arg-type]
            self._fd = None

    # -- writing ------------------------------------------------------------------------------
    def clipped_values(self, arrays: Sequence[np.ndarray]) -> int:
        """How many values of ``arrays`` the current parameters would clip (0 before the
        first fill, which trains them)."""
        if self.params is None or not self.rows:
            return 0
        return sum(self.params.encode(a)[1] for a in arrays)

    def append(self, arrays: Sequence[np.ndarray]) -> tuple[int, str]:
        if self.params is None or not self.rows:  # the first fill trains the parameters
            self.params = Int8Params.train(np.concatenate([np.asarray(a) for a in arrays]))
            atomic_write_bytes(self.params_path, self.params.to_json())
        params = self.params
        return self._append_bytes(params.encode(a)[0].tobytes() for a in arrays)

    def expose(self, rows: int) -> None:
        self.rows = rows
        self._map = None

    def write_generation(self, generation: int, starts: np.ndarray, counts: np.ndarray
                         ) -> tuple[int, list[tuple[int, int, str]]]:
        if self.params is None:
            return 0, []
        atomic_write_bytes(self.folder / self.params_name(generation), self.params.to_json())
        chunks = (self.read_codes(run_starts, run_counts)
                  for run_starts, run_counts in compaction_runs(starts, counts))
        return write_vector_file(self.folder / self.file_name(generation), chunks, CODE_DTYPE)

    @classmethod
    def write_rows(cls, folder: Path, generation: int, dimension: int,
                   chunks: Iterable[np.ndarray], sample: np.ndarray | None
                   ) -> tuple[int, list[tuple[int, int, str]]]:
        if sample is None or not len(sample):
            return 0, []
        params = Int8Params.train(sample)
        atomic_write_bytes(folder / cls.params_name(generation), params.to_json())
        return write_vector_file(folder / cls.file_name(generation),
                                 (params.encode(chunk)[0] for chunk in chunks), CODE_DTYPE)

    # -- integrity ----------------------------------------------------------------------------
    def range_digest(self, first: int, rows: int) -> str:
        digest = hashlib.sha256()
        for begin in range(first, first + rows, _CHUNK_ROWS):
            count = min(_CHUNK_ROWS, first + rows - begin)
            digest.update(self.read_codes(np.array([begin]), np.array([count])).tobytes())
        return digest.hexdigest()

    def committed_files(self) -> list[tuple[Path, int]]:
        files = super().committed_files()
        if self.params_path.exists():
            files.append((self.params_path, self.params_path.stat().st_size))
        return files

    def clipped_count(self) -> int:
        """Committed values stored as code 0 or 255: outside the trained range (clipped to
        it, or less than a step beyond it). ``colbridge check`` reports them."""
        total = 0
        for begin in range(0, self.rows, _CHUNK_ROWS):
            codes = self.read_codes(np.array([begin]), np.array([min(_CHUNK_ROWS,
                                                                      self.rows - begin)]))
            total += int(np.count_nonzero((codes == 0) | (codes == 255)))
        return total


class CodedRows(DecodedRows):
    """The first ``rows`` rows of an :class:`Int8Store`: decoded (float32) on indexing, and
    scored from their codes by :func:`colbridge.scoring.maxsim_ranges`."""

    def __init__(self, store: Int8Store, rows: int) -> None:
        super().__init__(store, rows)
        self.store = store

    @property
    def params(self) -> Int8Params:
        assert self.store.params is not None, "an int8 store with rows has parameters"
        return self.store.params

    def read_codes(self, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return self.store.read_codes(starts, counts)

    def read_padded(self, starts: np.ndarray, counts: np.ndarray, width: int,
                    out: np.ndarray | None = None) -> np.ndarray:
        return self.store.read_padded(starts, counts, width, out)


register_codec(Int8Store)
