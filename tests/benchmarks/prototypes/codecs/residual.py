"""Residual compression of token vectors: a centroid id plus an n-bit code per dimension.

A token vector ``v`` is stored as the id of its nearest centroid ``c`` (k-means over a sample
of the collection's token vectors) and, for each dimension ``d``, the bucket of ``v[d] - c[d]``
among ``2**bits`` buckets. Decoding adds each bucket's weight to the centroid and normalises
the sum. This is ColBERTv2's scheme with two changes: cutoffs and weights are learned per
dimension rather than shared by all, and they are refined from ColBERTv2's quantile buckets
into the least-squares (Lloyd-Max) quantiser of that dimension's residuals.

Stored per vector: the centroid id (``uint16`` while there are at most 65,536 centroids,
``uint32`` beyond) and ``dim * bits / 8`` bytes of packed codes. The codes of dimension ``d``
sit in byte ``d // (8 // bits)``, the first dimension of a byte in its most significant bits.

Persisted form (no pickle), written by :meth:`ResidualCodec.save` as two files:

``<stem>.npz``
    A NumPy archive, read with ``allow_pickle=False``, of ``centroids`` (float16,
    ``(n_centroids, dim)``), ``cutoffs`` (float32, ``(dim, 2**bits - 1)``, ascending per row)
    and ``weights`` (float32, ``(dim, 2**bits)``).
``<stem>.json``
    ``{"codec": "residual", "version": 1, "bits": …, "dim": …, "n_centroids": …,
    "arrays_sha256": …}``. The hash is that of the ``.npz`` file, so a pair of files from two
    different saves is detected as damage instead of decoding garbage. The JSON is written last.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from colbridge._files import atomic_write_bytes
from colbridge.errors import IndexCorruptError, InvalidInputError

FORMAT_VERSION = 1
BITS = (2, 4)
_MAX_UINT16_CENTROIDS = 1 << 16
# Rows per block while encoding: bounds the (rows, n_centroids) similarity matrix to 64 MB.
_BLOCK_ELEMENTS = 1 << 24
_LLOYD_ROUNDS = 10
_ENCODE_ROWS = 1 << 16


def suggested_centroids(n_vectors: int) -> int:
    """PLAID's rule for the number of centroids: ``2 ** floor(log2(16 * sqrt(n_vectors)))``,
    never more than there are vectors (at least 1)."""
    if n_vectors < 1:
        raise InvalidInputError(f"cannot size a codebook for {n_vectors} vectors")
    return max(1, min(n_vectors, 2 ** math.floor(math.log2(16 * math.sqrt(n_vectors)))))


class ResidualCodec:
    """Compresses token vectors of one dimension to a centroid id and ``bits`` bits per dimension.

    Build one with :meth:`train` (or :meth:`load`), then :meth:`encode` and :meth:`decode`.
    Decoded vectors are L2-normalised, as ColBERT's token vectors are.
    """

    name = "residual"

    def __init__(self, centroids: np.ndarray, cutoffs: np.ndarray, weights: np.ndarray,
                 bits: int) -> None:
        if bits not in BITS:
            raise InvalidInputError(f"bits must be one of {BITS}, got {bits!r}")
        centroids = np.asarray(centroids)
        if centroids.ndim != 2 or len(centroids) == 0:
            raise InvalidInputError(
                f"centroids must be a non-empty 2-D array, got shape {centroids.shape}")
        dim = centroids.shape[1]
        if (dim * bits) % 8:
            raise InvalidInputError(
                f"dimension {dim} times {bits} bits is not a whole number of bytes")
        levels = 1 << bits
        cutoffs = np.asarray(cutoffs, dtype=np.float32)
        weights = np.asarray(weights, dtype=np.float32)
        if cutoffs.shape != (dim, levels - 1) or weights.shape != (dim, levels):
            raise InvalidInputError(
                f"expected cutoffs {(dim, levels - 1)} and weights {(dim, levels)} for {dim}-d "
                f"vectors at {bits} bits, got {cutoffs.shape} and {weights.shape}"
            )
        for what, array in (("centroids", centroids), ("cutoffs", cutoffs), ("weights", weights)):
            if not np.isfinite(array).all():
                raise InvalidInputError(f"{what} hold NaN or infinite values")
        if (np.diff(cutoffs, axis=1) < 0).any():
            raise InvalidInputError("cutoffs must be ascending along each dimension")
        self.bits = bits
        self.centroids = centroids.astype(np.float16)
        self.cutoffs = cutoffs
        self.weights = weights
        self._centroids32 = self.centroids.astype(np.float32)
        self._table = _byte_table(weights, bits)
        self._byte_offsets = np.arange(self.dim * bits // 8, dtype=np.intp) << 8

    # -- shape of the codes -------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Dimension of the vectors this codec encodes."""
        return int(self.centroids.shape[1])

    @property
    def n_centroids(self) -> int:
        """Number of centroids in the codebook."""
        return int(self.centroids.shape[0])

    @property
    def code_dtype(self) -> np.dtype:
        """``uint16`` while there are at most 65,536 centroids, else ``uint32``."""
        return np.dtype(np.uint16 if self.n_centroids <= _MAX_UINT16_CENTROIDS else np.uint32)

    @property
    def residual_bytes(self) -> int:
        """Bytes of packed residual codes per vector: ``dim * bits / 8``."""
        return self.dim * self.bits // 8

    @property
    def bytes_per_vector(self) -> int:
        """Bytes stored per vector, centroid id and residual codes (the codebook not counted)."""
        return self.code_dtype.itemsize + self.residual_bytes

    # -- training -----------------------------------------------------------------------------

    @classmethod
    def train(cls, vectors: Any, *, bits: int = 4, n_centroids: int | None = None,
              sample_size: int | None = None, iterations: int = 4, seed: int = 0) -> ResidualCodec:
        """Learn centroids and per-dimension residual buckets from ``vectors``.

        Args:
            vectors: ``(n, dim)`` token vectors (float16 or float32, finite).
            bits: bits per dimension of the residual, 2 or 4.
            n_centroids: codebook size; by default :func:`suggested_centroids` of ``n``.
            sample_size: vectors drawn (without replacement) for k-means; by default all of them,
                up to 256 per centroid. First, ``max(n // 20, min(n // 2, 10_000))`` vectors (at
                most 100,000) are held out to learn the residual buckets from; none when
                k-means would then have fewer vectors than centroids.
            iterations: k-means (Lloyd) iterations.
            seed: the same seed and vectors give the same codec (on one machine).
        """
        if bits not in BITS:
            raise InvalidInputError(f"bits must be one of {BITS}, got {bits!r}")
        data = _check_vectors(vectors, None, widen=False)  # only the rows drawn are widened
        n = len(data)
        k = suggested_centroids(n) if n_centroids is None else n_centroids
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= n:
            raise InvalidInputError(
                f"n_centroids must be an integer from 1 to {n} (the vectors given), got {k!r}")
        if not isinstance(iterations, int) or iterations < 1:
            raise InvalidInputError(f"iterations must be a positive integer, got {iterations!r}")
        rng = np.random.default_rng(seed)
        order = rng.permutation(n)
        heldout_n = min(max(n // 20, min(n // 2, 10_000)), 100_000)
        if n - heldout_n < k:
            heldout_n = 0
        heldout_rows = order[:heldout_n]
        train_rows = order[heldout_n:]
        wanted = min(len(train_rows), 256 * k) if sample_size is None else sample_size
        if not isinstance(wanted, (int, np.integer)) or not k <= wanted:
            raise InvalidInputError(
                f"sample_size must be at least n_centroids ({k}), got {sample_size!r}")
        train_rows = np.sort(train_rows[:wanted])
        sample = np.ascontiguousarray(data[train_rows], dtype=np.float32)
        centroids = _kmeans(sample, int(k), iterations, seed).astype(np.float16)
        heldout = data[np.sort(heldout_rows)].astype(np.float32) if heldout_n else sample
        wide = centroids.astype(np.float32)
        residuals = heldout - wide[_nearest(heldout, wide)]
        cutoffs, weights = _buckets(residuals, bits)
        return cls(centroids, cutoffs, weights, bits)

    # -- encoding and decoding ----------------------------------------------------------------

    def encode(self, vectors: Any) -> tuple[np.ndarray, np.ndarray]:
        """Codes of ``(n, dim)`` vectors: ``(centroid ids (n,) of code_dtype, residuals (n,
        residual_bytes) uint8)``. Refuses an empty array, a wrong dimension, NaN or infinity."""
        data = _check_vectors(vectors, self.dim, widen=False)
        ids = np.empty(len(data), dtype=self.code_dtype)
        packed = np.empty((len(data), self.residual_bytes), dtype=np.uint8)
        for start in range(0, len(data), _ENCODE_ROWS):  # bounds the float32 scratch arrays
            block = np.asarray(data[start:start + _ENCODE_ROWS], dtype=np.float32)
            nearest = _nearest(block, self._centroids32)
            residuals = block - self._centroids32[nearest]
            # Bucket j of dimension d holds residuals in (cutoffs[d, j-1], cutoffs[d, j]].
            buckets = np.zeros(residuals.shape, dtype=np.uint8)
            for j in range(self.cutoffs.shape[1]):
                buckets += residuals > self.cutoffs[:, j]
            ids[start:start + len(block)] = nearest
            packed[start:start + len(block)] = _pack(buckets, self.bits)
        return ids, packed

    def decode(self, codes: Any, residuals: Any, *, dtype: Any = np.float16) -> np.ndarray:
        """L2-normalised ``(n, dim)`` vectors of ``dtype`` (float16 or float32) from the output
        of :meth:`encode`. No codes give a ``(0, dim)`` array."""
        out_dtype = np.dtype(dtype)
        if out_dtype not in (np.float16, np.float32):
            raise InvalidInputError(f"dtype must be float16 or float32, got {out_dtype}")
        codes = np.asarray(codes)
        residuals = np.asarray(residuals)
        if codes.ndim != 1 or codes.dtype.kind not in "ui":
            raise InvalidInputError(
                f"codes must be a 1-D integer array, got {codes.dtype} {codes.shape}")
        if residuals.dtype != np.uint8 or residuals.shape != (len(codes), self.residual_bytes):
            raise InvalidInputError(
                f"residuals must be uint8 of shape {(len(codes), self.residual_bytes)}, got "
                f"{residuals.dtype} {residuals.shape}"
            )
        if len(codes) and (codes.min() < 0 or codes.max() >= self.n_centroids):
            raise InvalidInputError(f"codes must be centroid ids in [0, {self.n_centroids})")
        # One gather: row (byte position * 256 + byte value) of the table holds that byte's
        # dimensions' weights, so the residual is read without unpacking bits.
        flat = residuals.astype(np.intp)
        flat += self._byte_offsets
        vectors = np.take(self._table, flat, axis=0).reshape(len(codes), self.dim)
        vectors += self._centroids32[codes]
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        vectors /= np.maximum(norms, 1e-12)[:, None]
        return vectors.astype(out_dtype, copy=False)

    # -- persistence --------------------------------------------------------------------------

    def save(self, folder: str | Path, stem: str = "codec") -> None:
        """Write ``<stem>.npz`` then ``<stem>.json`` into ``folder``, each atomically."""
        folder = Path(folder)
        buffer = _npz_bytes(centroids=self.centroids, cutoffs=self.cutoffs, weights=self.weights)
        atomic_write_bytes(folder / f"{stem}.npz", buffer)
        params = {"codec": self.name, "version": FORMAT_VERSION, "bits": self.bits,
                  "dim": self.dim, "n_centroids": self.n_centroids,
                  "arrays_sha256": hashlib.sha256(buffer).hexdigest()}
        atomic_write_bytes(folder / f"{stem}.json", (json.dumps(params, indent=2) + "\n").encode())

    @classmethod
    def load(cls, folder: str | Path, stem: str = "codec") -> ResidualCodec:
        """Read a codec written by :meth:`save`; IndexCorruptError when its files are missing,
        damaged, from two different saves, or of another codec or version."""
        folder = Path(folder)
        params = read_params(folder, stem)
        if params.get("codec") != cls.name or params.get("version") != FORMAT_VERSION:
            raise IndexCorruptError(
                f"{folder / stem}.json describes codec {params.get('codec')!r} version "
                f"{params.get('version')!r}; this colbridge reads {cls.name!r} version "
                f"{FORMAT_VERSION}"
            )
        path = folder / f"{stem}.npz"
        checked = io.BytesIO(verified_bytes(folder, stem, params))
        try:
            with np.load(checked, allow_pickle=False) as archive:
                centroids = archive["centroids"]
                cutoffs, weights = archive["cutoffs"], archive["weights"]
            codec = cls(centroids, cutoffs, weights, params["bits"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise IndexCorruptError(
                f"{path} cannot be read as a residual codec ({type(e).__name__}: {e})") from e
        if (codec.dim, codec.n_centroids) != (params.get("dim"), params.get("n_centroids")):
            raise IndexCorruptError(
                f"{path} holds {codec.n_centroids} {codec.dim}-d centroids, {stem}.json says "
                f"{params.get('n_centroids')} {params.get('dim')}-d")
        return codec


def verified_bytes(folder: Path, stem: str, params: dict[str, Any]) -> bytes:
    """The bytes of ``<stem>.npz``, once they match the checksum ``<stem>.json`` records. They
    are read once, so what the caller loads is what was checked."""
    path = folder / f"{stem}.npz"
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise IndexCorruptError(f"{path} cannot be read: {e}") from e
    if hashlib.sha256(raw).hexdigest() != params.get("arrays_sha256"):
        raise IndexCorruptError(
            f"{path} does not match {stem}.json (damaged, or from another save)")
    return raw


def read_params(folder: Path, stem: str) -> dict[str, Any]:
    """The JSON half of a saved codec, IndexCorruptError when missing or not a JSON object."""
    path = folder / f"{stem}.json"
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IndexCorruptError(f"{path} cannot be read as a codec description: {e}") from e
    if not isinstance(params, dict):
        raise IndexCorruptError(f"{path} is not a JSON object")
    return params


# -- helpers ----------------------------------------------------------------------------------

def _check_vectors(vectors: Any, dim: int | None, *, widen: bool = True) -> np.ndarray:
    """The vectors as a non-empty, finite, 2-D float array (float32 when ``widen``)."""
    try:
        array = np.asarray(vectors)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"vectors must be a 2-D array of floats: {e}") from None
    if array.ndim != 2:
        raise InvalidInputError(f"vectors must be a 2-D array (n, dim), got shape {array.shape}")
    if array.dtype.kind != "f":
        raise InvalidInputError(f"vectors must be floating point, got {array.dtype}")
    if len(array) == 0:
        raise InvalidInputError("vectors is empty: there is nothing to encode")
    if dim is not None and array.shape[1] != dim:
        raise InvalidInputError(
            f"vectors have dimension {array.shape[1]}, this codec encodes {dim}")
    if widen:
        array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise InvalidInputError(f"vectors hold NaN or infinite values (first at row {bad})")
    return array


def _kmeans(sample: np.ndarray, k: int, iterations: int, seed: int) -> np.ndarray:
    """Lloyd's k-means on the CPU with fastkmeans (a dependency of PyLate), leaving the
    caller's NumPy and PyTorch random states as they were (fastkmeans seeds both globally)."""
    import torch
    from fastkmeans import FastKMeans

    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            kmeans = FastKMeans(sample.shape[1], k, niter=iterations, tol=0.0, gpu=False,
                                device="cpu", seed=seed, max_points_per_centroid=len(sample))
            with contextlib.redirect_stdout(None):
                kmeans.train(sample)
    finally:
        np.random.set_state(state)
    return np.asarray(kmeans.centroids, dtype=np.float32)


def _nearest(data: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) of each row, ``int64``."""
    half_norms = 0.5 * np.einsum("ij,ij->i", centroids, centroids)
    out = np.empty(len(data), dtype=np.int64)
    block = max(1, _BLOCK_ELEMENTS // len(centroids))
    for start in range(0, len(data), block):
        scores = data[start:start + block] @ centroids.T
        scores -= half_norms
        out[start:start + block] = scores.argmax(axis=1)
    return out


def _buckets(residuals: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension cutoffs and weights that minimise the squared error of the residuals:
    Lloyd-Max quantisation, started from ColBERTv2's buckets (cutoffs at the quantiles
    ``j / 2**bits``) and refined a few rounds (each cutoff the midpoint of its two weights, each
    weight the mean residual of its bucket). On SciFact token vectors the refinement halves the
    4-bit error of the quantile buckets (see docs/compression.md)."""
    levels = 1 << bits
    dim = residuals.shape[1]
    cutoffs = np.quantile(residuals, np.arange(1, levels) / levels, axis=0).T.astype(np.float32)
    weights = np.quantile(residuals, (np.arange(levels) + 0.5) / levels, axis=0).T
    weights = weights.astype(np.float32)
    slots = np.arange(dim, dtype=np.int64) * levels
    for round_ in range(_LLOYD_ROUNDS + 1):
        if round_:
            cutoffs = (weights[:, :-1] + weights[:, 1:]) / 2
        cutoffs = np.maximum.accumulate(cutoffs, axis=1)
        buckets = np.zeros(residuals.shape, dtype=np.int64)
        for j in range(levels - 1):
            buckets += residuals > cutoffs[:, j]
        buckets += slots
        counts = np.bincount(buckets.ravel(), minlength=dim * levels).reshape(dim, levels)
        sums = np.bincount(buckets.ravel(), weights=residuals.ravel(), minlength=dim * levels)
        filled = counts > 0
        weights[filled] = (sums.reshape(dim, levels)[filled] / counts[filled]).astype(np.float32)
    return cutoffs.astype(np.float32), weights


def _pack(buckets: np.ndarray, bits: int) -> np.ndarray:
    """``(n, dim)`` bucket numbers below ``2**bits`` into ``(n, dim * bits / 8)`` bytes."""
    per_byte = 8 // bits
    grouped = buckets.reshape(len(buckets), -1, per_byte)
    packed = np.zeros(grouped.shape[:2], dtype=np.uint8)
    for j in range(per_byte):
        packed |= grouped[:, :, j] << np.uint8(bits * (per_byte - 1 - j))
    return packed


def _byte_table(weights: np.ndarray, bits: int) -> np.ndarray:
    """``(n_bytes * 256, 8 // bits)`` float32: row ``p * 256 + b`` holds the weights that byte
    value ``b`` at byte position ``p`` stands for."""
    dim, per_byte, mask = weights.shape[0], 8 // bits, (1 << bits) - 1
    values = np.arange(256)
    table = np.empty((dim // per_byte, 256, per_byte), dtype=np.float32)
    for j in range(per_byte):
        bucket = (values >> (bits * (per_byte - 1 - j))) & mask  # (256,)
        table[:, :, j] = weights[j::per_byte][:, bucket]
    return table.reshape(-1, per_byte)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
