"""A second-level refinement of :class:`~.residual.ResidualCodec` codes.

The residual codec leaves an error ``e = v - (c + r)`` per token vector (before normalising).
This codec quantises that error again, per dimension, with its own Lloyd-Max buckets, so a
token vector is stored as the residual codes (kept in RAM for the first stage) plus these
refinement bytes (kept on disk and read only for the few documents being rescored). Decoding
both levels gives about the precision of one code of their summed bits (see
docs/compression.md for the measured cosines and rankings).

Persisted form (no pickle), written by :meth:`RefinementCodec.save`: ``<stem>.npz`` holding
``cutoffs`` (float32, ``(dim, 2**bits - 1)``) and ``weights`` (float32, ``(dim, 2**bits)``),
then ``<stem>.json`` with ``{"codec": "refinement", "version": 1, "bits", "dim",
"arrays_sha256"}``.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..._files import atomic_write_bytes
from ...errors import IndexCorruptError, InvalidInputError
from .residual import (
    BITS,
    ResidualCodec,
    _buckets,
    _byte_table,
    _check_vectors,
    _npz_bytes,
    _pack,
    read_params,
)

FORMAT_VERSION = 1
_ROWS = 1 << 16
_TRAIN_ROWS = 100_000


class RefinementCodec:
    """Per-dimension ``bits``-bit codes of what a :class:`ResidualCodec` leaves over.

    Build one with :meth:`train` for a trained base codec, then :meth:`encode` and
    :meth:`decode`. :meth:`decode` returns L2-normalised vectors of both levels.
    """

    name = "refinement"

    def __init__(self, base: ResidualCodec, cutoffs: np.ndarray, weights: np.ndarray,
                 bits: int) -> None:
        if bits not in BITS:
            raise InvalidInputError(f"bits must be one of {BITS}, got {bits!r}")
        levels = 1 << bits
        cutoffs = np.asarray(cutoffs, dtype=np.float32)
        weights = np.asarray(weights, dtype=np.float32)
        if cutoffs.shape != (base.dim, levels - 1) or weights.shape != (base.dim, levels):
            raise InvalidInputError(
                f"expected cutoffs {(base.dim, levels - 1)} and weights {(base.dim, levels)}, "
                f"got {cutoffs.shape} and {weights.shape}")
        if not (np.isfinite(cutoffs).all() and np.isfinite(weights).all()):
            raise InvalidInputError("cutoffs or weights hold NaN or infinite values")
        self.base = base
        self.bits = bits
        self.cutoffs = cutoffs
        self.weights = weights
        self._table = _byte_table(weights, bits)
        self._byte_offsets = np.arange(base.dim * bits // 8, dtype=np.intp) << 8

    @property
    def refinement_bytes(self) -> int:
        """Bytes of refinement codes per vector: ``dim * bits / 8``."""
        return self.base.dim * self.bits // 8

    @classmethod
    def train(cls, base: ResidualCodec, vectors: Any, *, bits: int = 4,
              seed: int = 0) -> RefinementCodec:
        """Learn the refinement buckets from the base codec's error on (a sample of) ``vectors``."""
        if bits not in BITS:
            raise InvalidInputError(f"bits must be one of {BITS}, got {bits!r}")
        data = _check_vectors(vectors, base.dim, widen=False)
        rows = np.arange(len(data))
        if len(data) > _TRAIN_ROWS:
            rows = np.sort(np.random.default_rng(seed).choice(len(data), _TRAIN_ROWS,
                                                              replace=False))
        sample = np.asarray(data[rows], dtype=np.float32)
        cutoffs, weights = _buckets(sample - _unnormalised(base, *base.encode(sample)), bits)
        return cls(base, cutoffs, weights, bits)

    def encode(self, vectors: Any, codes: np.ndarray, residuals: np.ndarray) -> np.ndarray:
        """``(n, refinement_bytes)`` uint8 codes of ``vectors`` given their base codes."""
        data = _check_vectors(vectors, self.base.dim, widen=False)
        if len(codes) != len(data) or len(residuals) != len(data):
            raise InvalidInputError(
                f"{len(data)} vectors but {len(codes)} codes and {len(residuals)} residuals")
        out = np.empty((len(data), self.refinement_bytes), dtype=np.uint8)
        for start in range(0, len(data), _ROWS):
            stop = start + _ROWS
            block = np.asarray(data[start:stop], dtype=np.float32)
            error = block - _unnormalised(self.base, codes[start:stop], residuals[start:stop])
            buckets = np.zeros(error.shape, dtype=np.uint8)
            for j in range(self.cutoffs.shape[1]):
                buckets += error > self.cutoffs[:, j]
            out[start:stop] = _pack(buckets, self.bits)
        return out

    def decode(self, codes: np.ndarray, residuals: np.ndarray, refinement: np.ndarray, *,
               dtype: Any = np.float32) -> np.ndarray:
        """L2-normalised ``(n, dim)`` vectors from both levels of codes."""
        refinement = np.asarray(refinement)
        if refinement.dtype != np.uint8 or refinement.shape != (len(codes),
                                                                self.refinement_bytes):
            raise InvalidInputError(
                f"refinement must be uint8 of shape {(len(codes), self.refinement_bytes)}, got "
                f"{refinement.dtype} {refinement.shape}")
        vectors = _unnormalised(self.base, codes, residuals)
        flat = refinement.astype(np.intp)
        flat += self._byte_offsets
        vectors += np.take(self._table, flat, axis=0).reshape(len(codes), self.base.dim)
        vectors /= np.maximum(np.sqrt(np.einsum("ij,ij->i", vectors, vectors)), 1e-12)[:, None]
        return vectors.astype(dtype, copy=False)

    def save(self, folder: str | Path, stem: str = "refinement") -> None:
        """Write ``<stem>.npz`` then ``<stem>.json`` into ``folder``, each atomically."""
        folder = Path(folder)
        buffer = _npz_bytes(cutoffs=self.cutoffs, weights=self.weights)
        atomic_write_bytes(folder / f"{stem}.npz", buffer)
        params = {"codec": self.name, "version": FORMAT_VERSION, "bits": self.bits,
                  "dim": self.base.dim, "arrays_sha256": hashlib.sha256(buffer).hexdigest()}
        atomic_write_bytes(folder / f"{stem}.json", (json.dumps(params, indent=2) + "\n").encode())

    @classmethod
    def load(cls, base: ResidualCodec, folder: str | Path,
             stem: str = "refinement") -> RefinementCodec:
        """Read what :meth:`save` wrote, for ``base``; IndexCorruptError when missing, damaged,
        from two different saves, or of another dimension."""
        folder = Path(folder)
        params = read_params(folder, stem)
        if params.get("codec") != cls.name or params.get("version") != FORMAT_VERSION:
            raise IndexCorruptError(f"{folder / stem}.json is not a {cls.name!r} version "
                                    f"{FORMAT_VERSION} codec")
        if params.get("dim") != base.dim:
            raise IndexCorruptError(f"{folder / stem}.json is for {params.get('dim')}-d vectors, "
                                    f"the base codec for {base.dim}-d")
        path = folder / f"{stem}.npz"
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise IndexCorruptError(f"{path} cannot be read: {e}") from e
        if hashlib.sha256(raw).hexdigest() != params.get("arrays_sha256"):
            raise IndexCorruptError(f"{path} does not match {stem}.json")
        try:
            with np.load(path, allow_pickle=False) as archive:
                return cls(base, archive["cutoffs"], archive["weights"], params["bits"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile,
                InvalidInputError) as e:
            raise IndexCorruptError(f"{path} cannot be read as a refinement codec: {e}") from e


def _unnormalised(base: ResidualCodec, codes: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """Centroid plus decoded residual, float32, before the base codec normalises it."""
    flat = np.asarray(residuals).astype(np.intp)
    flat += base._byte_offsets
    vectors = np.take(base._table, flat, axis=0).reshape(len(codes), base.dim)
    vectors += base._centroids32[np.asarray(codes)]
    return vectors
