"""A second level for :class:`~.residual.ResidualCodec` codes: more bits inside each bucket.

The residual codec puts the residual ``v[d] - c[d]`` of each dimension into one of ``2**bits``
buckets. This codec splits every bucket of every dimension again into ``2**refinement_bits``
sub-buckets, with their own cutoffs and weights learned from the residuals that fall in that
bucket (Lloyd-Max within the bucket). Together the two codes are one quantiser of
``bits + refinement_bits`` bits per dimension whose high bits are the residual code: the
residual codes stay in RAM for the first stage, the refinement bytes stay on disk and are read
only for the few documents being rescored. Decoding adds the sub-bucket's weight to the
centroid and normalises the sum.

Persisted form (no pickle), written by :meth:`RefinementCodec.save`: ``<stem>.npz`` holding
``cutoffs`` (float32, ``(dim, 2**bits, 2**refinement_bits - 1)``) and ``weights`` (float32,
``(dim, 2**bits, 2**refinement_bits)``), then ``<stem>.json`` with ``{"codec": "refinement",
"version": 1, "bits", "base_bits", "dim", "arrays_sha256"}``.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from colbridge._files import atomic_write_bytes
from colbridge.errors import IndexCorruptError, InvalidInputError

from .residual import (
    BITS,
    ResidualCodec,
    _check_vectors,
    _npz_bytes,
    _pack,
    read_params,
    verified_bytes,
)

FORMAT_VERSION = 1
_ROWS = 1 << 13  # bounds the (rows, dim, sub-buckets) cutoff gather to about 50 MB
_TRAIN_ROWS = 100_000
_LLOYD_ROUNDS = 6


class RefinementCodec:
    """``bits`` more bits per dimension inside the buckets of a :class:`ResidualCodec`.

    Build one with :meth:`train` for a trained base codec, then :meth:`encode` and
    :meth:`decode`. :meth:`decode` returns L2-normalised vectors from both codes.
    """

    name = "refinement"

    def __init__(self, base: ResidualCodec, cutoffs: np.ndarray, weights: np.ndarray,
                 bits: int) -> None:
        if bits not in BITS:
            raise InvalidInputError(f"bits must be one of {BITS}, got {bits!r}")
        outer, inner = 1 << base.bits, 1 << bits
        cutoffs = np.asarray(cutoffs, dtype=np.float32)
        weights = np.asarray(weights, dtype=np.float32)
        if cutoffs.shape != (base.dim, outer, inner - 1) or weights.shape != (
                base.dim, outer, inner):
            raise InvalidInputError(
                f"expected cutoffs {(base.dim, outer, inner - 1)} and weights "
                f"{(base.dim, outer, inner)}, got {cutoffs.shape} and {weights.shape}")
        if not (np.isfinite(cutoffs).all() and np.isfinite(weights).all()):
            raise InvalidInputError("cutoffs or weights hold NaN or infinite values")
        self.base = base
        self.bits = bits
        self.cutoffs = cutoffs
        self.weights = weights
        # Row d * 2**(base bits + bits) + (outer << bits | inner) holds that cell's weight.
        self._flat = weights.reshape(-1)
        self._dim_offsets = np.arange(base.dim, dtype=np.intp) << (base.bits + bits)

    @property
    def refinement_bytes(self) -> int:
        """Bytes of refinement codes per vector: ``dim * bits / 8``."""
        return self.base.dim * self.bits // 8

    @classmethod
    def train(cls, base: ResidualCodec, vectors: Any, *, bits: int = 4,
              seed: int = 0) -> RefinementCodec:
        """Learn sub-bucket cutoffs and weights from the residuals of (a sample of) ``vectors``."""
        if bits not in BITS:
            raise InvalidInputError(f"bits must be one of {BITS}, got {bits!r}")
        data = _check_vectors(vectors, base.dim, widen=False)
        rows = np.arange(len(data))
        if len(data) > _TRAIN_ROWS:
            rows = np.sort(np.random.default_rng(seed).choice(len(data), _TRAIN_ROWS,
                                                              replace=False))
        sample = np.asarray(data[rows], dtype=np.float32)
        codes, packed = base.encode(sample)
        residuals = sample - base._centroids32[codes]
        outer = _unpack(packed, base.bits, base.dim)
        n_outer, n_inner = 1 << base.bits, 1 << bits
        cutoffs = np.zeros((base.dim, n_outer, n_inner - 1), dtype=np.float32)
        weights = np.zeros((base.dim, n_outer, n_inner), dtype=np.float32)
        for d in range(base.dim):
            order = np.lexsort((residuals[:, d], outer[:, d]))  # by bucket, then value
            values, buckets = residuals[order, d], outer[order, d]
            bounds = np.searchsorted(buckets, np.arange(n_outer + 1))
            for j in range(n_outer):
                inside = values[bounds[j]:bounds[j + 1]]
                if len(inside) == 0:  # an empty bucket keeps the base weight everywhere
                    weights[d, j] = cutoffs[d, j] = base.weights[d, j]
                    continue
                cutoffs[d, j], weights[d, j] = _lloyd_max(inside, n_inner)
        return cls(base, cutoffs, weights, bits)

    def encode(self, vectors: Any, codes: np.ndarray, residuals: np.ndarray) -> np.ndarray:
        """``(n, refinement_bytes)`` uint8 codes of ``vectors`` given their base codes."""
        data = _check_vectors(vectors, self.base.dim, widen=False)
        if len(codes) != len(data) or len(residuals) != len(data):
            raise InvalidInputError(
                f"{len(data)} vectors but {len(codes)} codes and {len(residuals)} residuals")
        out = np.empty((len(data), self.refinement_bytes), dtype=np.uint8)
        dims = np.arange(self.base.dim)
        for start in range(0, len(data), _ROWS):
            stop = start + _ROWS
            block = np.array(data[start:stop], dtype=np.float32)  # a copy: changed below
            block -= self.base._centroids32[np.asarray(codes[start:stop])]
            outer = _unpack(np.asarray(residuals[start:stop]), self.base.bits, self.base.dim)
            limits = self.cutoffs[dims, outer]  # (rows, dim, inner - 1)
            inner = (block[:, :, None] > limits).sum(axis=2).astype(np.uint8)
            out[start:stop] = _pack(inner, self.bits)
        return out

    def decode(self, codes: np.ndarray, residuals: np.ndarray, refinement: np.ndarray, *,
               dtype: Any = np.float32) -> np.ndarray:
        """L2-normalised ``(n, dim)`` vectors from both codes."""
        refinement = np.asarray(refinement)
        if refinement.dtype != np.uint8 or refinement.shape != (len(codes),
                                                                self.refinement_bytes):
            raise InvalidInputError(
                f"refinement must be uint8 of shape {(len(codes), self.refinement_bytes)}, got "
                f"{refinement.dtype} {refinement.shape}")
        residuals = np.asarray(residuals)
        if self.base.bits == self.bits == 4:  # each byte pair gives two cells without unpacking
            cell = np.empty((len(codes), self.base.dim), dtype=np.intp)
            cell[:, 0::2] = (residuals & 0xF0) | (refinement >> 4)
            cell[:, 1::2] = (residuals << 4) | (refinement & 0x0F)
        else:
            cell = _unpack(residuals, self.base.bits, self.base.dim).astype(np.intp)
            cell <<= self.bits
            cell += _unpack(refinement, self.bits, self.base.dim)
        cell += self._dim_offsets
        vectors = self._flat[cell]
        vectors += self.base._centroids32[np.asarray(codes)]
        vectors /= np.maximum(np.sqrt(np.einsum("ij,ij->i", vectors, vectors)), 1e-12)[:, None]
        return vectors.astype(dtype, copy=False)

    def save(self, folder: str | Path, stem: str = "refinement") -> None:
        """Write ``<stem>.npz`` then ``<stem>.json`` into ``folder``, each atomically."""
        folder = Path(folder)
        buffer = _npz_bytes(cutoffs=self.cutoffs, weights=self.weights)
        atomic_write_bytes(folder / f"{stem}.npz", buffer)
        params = {"codec": self.name, "version": FORMAT_VERSION, "bits": self.bits,
                  "base_bits": self.base.bits, "dim": self.base.dim,
                  "arrays_sha256": hashlib.sha256(buffer).hexdigest()}
        atomic_write_bytes(folder / f"{stem}.json", (json.dumps(params, indent=2) + "\n").encode())

    @classmethod
    def load(cls, base: ResidualCodec, folder: str | Path,
             stem: str = "refinement") -> RefinementCodec:
        """Read what :meth:`save` wrote, for ``base``; IndexCorruptError when missing, damaged,
        from two different saves, or made for another base codec shape."""
        folder = Path(folder)
        params = read_params(folder, stem)
        if params.get("codec") != cls.name or params.get("version") != FORMAT_VERSION:
            raise IndexCorruptError(f"{folder / stem}.json is not a {cls.name!r} version "
                                    f"{FORMAT_VERSION} codec")
        if (params.get("dim"), params.get("base_bits")) != (base.dim, base.bits):
            raise IndexCorruptError(
                f"{folder / stem}.json refines {params.get('base_bits')}-bit "
                f"{params.get('dim')}-d codes, the base codec is {base.bits}-bit {base.dim}-d")
        path = folder / f"{stem}.npz"
        checked = io.BytesIO(verified_bytes(folder, stem, params))
        try:
            with np.load(checked, allow_pickle=False) as archive:
                return cls(base, archive["cutoffs"], archive["weights"], params["bits"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile,
                InvalidInputError) as e:
            raise IndexCorruptError(f"{path} cannot be read as a refinement codec: {e}") from e


def _unpack(packed: np.ndarray, bits: int, dim: int) -> np.ndarray:
    """``(n, dim * bits / 8)`` packed bytes back into ``(n, dim)`` uint8 bucket numbers (the
    layout of :func:`~.residual._pack`), by one gather from a 256-row table."""
    return _UNPACK[bits][packed].reshape(len(packed), dim)


def _unpack_table(bits: int) -> np.ndarray:
    per_byte, mask = 8 // bits, (1 << bits) - 1
    values = np.arange(256)
    return np.stack([(values >> (bits * (per_byte - 1 - j))) & mask for j in range(per_byte)],
                    axis=1).astype(np.uint8)


_UNPACK = {bits: _unpack_table(bits) for bits in BITS}


def _lloyd_max(values: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Cutoffs ``(levels - 1,)`` and weights ``(levels,)`` of the least-squares quantiser of
    the ascending ``values``, started from their quantiles."""
    n = len(values)
    cutoffs = values[np.minimum((np.arange(1, levels) * n) // levels, n - 1)].astype(np.float32)
    weights = values[np.minimum(((2 * np.arange(levels) + 1) * n) // (2 * levels), n - 1)]
    weights = weights.astype(np.float32)
    sums = np.concatenate(([0.0], np.cumsum(values, dtype=np.float64)))
    for round_ in range(_LLOYD_ROUNDS + 1):
        if round_:
            cutoffs = (weights[:-1] + weights[1:]) / 2
        # Bucket i holds the values in (cutoffs[i-1], cutoffs[i]]: a contiguous slice.
        edges = np.concatenate(([0], np.searchsorted(values, cutoffs, side="right"), [n]))
        counts = np.diff(edges)
        filled = counts > 0
        means = (sums[edges[1:]] - sums[edges[:-1]])[filled] / counts[filled]
        weights[filled] = means.astype(np.float32)
    return cutoffs.astype(np.float32), weights
