"""A prototype compressed index: residual codes in RAM, an inverted file over their centroids,
and an optional refinement tier on disk (issue #15's groundwork, docs/compression.md; not
shipped: the embedded index uses a pooled graph and int8 codes instead).

Search runs in two steps, each a public method so a search stage can call them one by one:

1. :meth:`IvfIndex.first_stage`: every query token scores every centroid and probes its
   ``nprobe`` best ones in an inverted file of (centroid → documents); a document's probe
   score is, summed over query tokens, the best probed centroid it has a token in (a token
   whose probed centroids the document misses counts that token's worst probed score). The
   best ``pool`` of those are ranked by PLAID's centroid interaction (MaxSim with every token
   replaced by its centroid, read from the resident centroid ids). Nothing is decoded, and RAM
   grows with the codes, not with a graph over every vector.
2. :meth:`IvfIndex.rescore`: MaxSim over both levels of codes (residual plus refinement) of
   the first stage's candidates, the refinement read from disk with ``pread`` for those
   documents only, so it is never resident. :meth:`IvfIndex.score` is the same over the
   residual codes alone (what an index without a tier searches with).

Folder layout (no pickle; arrays are ``.npy`` read with ``allow_pickle=False``; every file is
written atomically and ``ivf.json`` last, which records the size of each array file):

``codec.npz``/``codec.json``        the :class:`~.codecs.ResidualCodec`
``codes.npy``                       centroid id per token vector (uint16 or uint32)
``residuals.npy``                   packed residual codes, uint8 ``(tokens, dim * bits / 8)``
``lengths.npy``                     int32 token count per document, in document order
``ivf_docs.npy``/``ivf_offsets.npy`` int32 documents of each centroid, int64 offsets
``refinement.npz``/``.json``        the :class:`~.codecs.refine.RefinementCodec` (optional)
``refinement.u8``                   raw uint8 ``(tokens, dim * bits / 8)`` refinement codes
``ivf.json``                        version, counts, file sizes
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from colbridge._files import atomic_write_bytes, fsync_dir, open_nofollow
from colbridge.errors import IndexCorruptError, InvalidInputError
from colbridge.scoring import maxsim_packed, rows_of

from .codecs import ResidualCodec
from .codecs.refine import RefinementCodec

FORMAT_VERSION = 1
_ARRAYS = ("codes", "residuals", "lengths", "ivf_docs", "ivf_offsets")


class IvfIndex:
    """Compressed token vectors of a fixed set of documents, searchable by MaxSim.

    Create one with :meth:`build`, reopen it with :meth:`open`. Documents are numbered in the
    order they were given; results are those numbers.
    """

    def __init__(self, folder: Path, codec: ResidualCodec, codes: np.ndarray,
                 residuals: np.ndarray, lengths: np.ndarray, ivf_docs: np.ndarray,
                 ivf_offsets: np.ndarray, refinement: RefinementCodec | None) -> None:
        self.folder = folder
        self.codec = codec
        self.codes = codes
        self.residuals = residuals
        self.lengths = lengths.astype(np.int64)
        self.starts = np.concatenate(([0], np.cumsum(self.lengths)[:-1])).astype(np.int64)
        self.ivf_docs = ivf_docs
        self.ivf_offsets = ivf_offsets
        self.refinement = refinement
        self._centroids = codec._centroids32

    # -- building -------------------------------------------------------------------------

    @classmethod
    def build(cls, folder: str | Path, vectors: Any, lengths: Any, *, bits: int = 4,
              n_centroids: int | None = None, refinement_bits: int | None = 4,
              iterations: int = 4, seed: int = 0) -> IvfIndex:
        """Train a codec on ``vectors``, encode them, write the folder and open it.

        Args:
            folder: an empty or missing folder.
            vectors: ``(tokens, dim)`` token vectors of every document, one after the other.
            lengths: ``(documents,)`` token count of each document (each at least 1).
            bits: residual bits per dimension kept in RAM (2 or 4).
            n_centroids: codebook size (default: PLAID's rule, see ``suggested_centroids``).
            refinement_bits: bits per dimension of the on-disk refinement tier (2 or 4), or
                ``None`` for no tier (then :meth:`rescore` is unavailable).
            iterations, seed: k-means settings.
        """
        folder = Path(folder)
        if folder.exists() and any(folder.iterdir()):
            raise InvalidInputError(f"{folder} is not empty: build writes a new index folder")
        counts = np.asarray(lengths)
        if counts.ndim != 1 or counts.dtype.kind not in "ui" or len(counts) == 0:
            raise InvalidInputError("lengths must be a non-empty 1-D array of token counts")
        if counts.min() < 1:
            raise InvalidInputError("every document needs at least one token vector")
        if not hasattr(vectors, "shape") or vectors.shape[0] != counts.sum():
            raise InvalidInputError(
                f"lengths add up to {int(counts.sum())} token vectors, vectors has "
                f"{getattr(vectors, 'shape', ('?',))[0]}")
        codec = ResidualCodec.train(vectors, bits=bits, n_centroids=n_centroids,
                                    iterations=iterations, seed=seed)
        codes, residuals = codec.encode(vectors)
        refine = None
        if refinement_bits is not None:
            refine = RefinementCodec.train(codec, vectors, bits=refinement_bits, seed=seed)
        ivf_docs, ivf_offsets = inverted_file(codes, counts, codec.n_centroids)
        folder.mkdir(parents=True, exist_ok=True)
        codec.save(folder, "codec")
        arrays = {"codes": codes, "residuals": residuals, "lengths": counts.astype(np.int32),
                  "ivf_docs": ivf_docs, "ivf_offsets": ivf_offsets}
        sizes = {name: _save_npy(folder / f"{name}.npy", array) for name, array in arrays.items()}
        if refine is not None:
            refine.save(folder, "refinement")
            sizes["refinement.u8"] = _save_raw(folder / "refinement.u8",
                                               refine.encode(vectors, codes, residuals))
        meta = {"format": "colbridge-ivf", "version": FORMAT_VERSION,
                "documents": len(counts), "token_vectors": int(counts.sum()),
                "dim": codec.dim, "refinement": refine is not None, "file_sizes": sizes}
        atomic_write_bytes(folder / "ivf.json", (json.dumps(meta, indent=2) + "\n").encode())
        return cls.open(folder)

    @classmethod
    def open(cls, folder: str | Path) -> IvfIndex:
        """Open a folder written by :meth:`build`; IndexCorruptError when a file is missing,
        truncated, or does not fit the others."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "ivf.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise IndexCorruptError(f"{folder / 'ivf.json'} cannot be read: {e}") from e
        if not isinstance(meta, dict) or meta.get("version") != FORMAT_VERSION:
            raise IndexCorruptError(f"{folder / 'ivf.json'} is not a version "
                                    f"{FORMAT_VERSION} colbridge-ivf description")
        sizes = meta.get("file_sizes", {})
        for name, size in sizes.items():
            path = folder / (name if "." in name else f"{name}.npy")
            actual = path.stat().st_size if path.exists() else None
            if actual != size:
                raise IndexCorruptError(f"{path} is {actual} bytes, ivf.json says {size}")
        codec = ResidualCodec.load(folder, "codec")
        try:
            arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False)
                      for name in _ARRAYS}
        except (OSError, ValueError) as e:
            raise IndexCorruptError(f"an array file in {folder} cannot be read: {e}") from e
        tokens = int(meta.get("token_vectors", -1))
        if (len(arrays["codes"]) != tokens or arrays["residuals"].shape != (
                tokens, codec.residual_bytes) or int(arrays["lengths"].sum()) != tokens
                or len(arrays["ivf_offsets"]) != codec.n_centroids + 1):
            raise IndexCorruptError(f"the arrays in {folder} do not fit together")
        refine = RefinementCodec.load(codec, folder, "refinement") if meta.get("refinement") \
            else None
        return cls(folder, codec, arrays["codes"], arrays["residuals"], arrays["lengths"],
                   arrays["ivf_docs"], arrays["ivf_offsets"], refine)

    # -- size -----------------------------------------------------------------------------

    @property
    def n_documents(self) -> int:
        """Number of documents."""
        return len(self.lengths)

    @property
    def n_tokens(self) -> int:
        """Number of token vectors."""
        return len(self.codes)

    def resident_bytes(self) -> dict[str, int]:
        """Bytes this object holds in RAM, by part (the refinement tier is on disk only)."""
        codec = self.codec
        return {
            "codes": self.codes.nbytes + self.residuals.nbytes,
            "inverted_file": self.ivf_docs.nbytes + self.ivf_offsets.nbytes,
            "codebook": (codec.centroids.nbytes + codec._centroids32.nbytes + codec._table.nbytes
                         + codec.cutoffs.nbytes + codec.weights.nbytes),
            "documents": self.lengths.nbytes + self.starts.nbytes,
        }

    def folder_bytes(self) -> int:
        """Bytes of every file in the folder."""
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())

    # -- search ---------------------------------------------------------------------------

    def search(self, query: Any, k: int = 10, *, nprobe: int = 4, pool: int = 1024,
               candidates: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents for ``query`` ``(q, dim)``: (document numbers, scores),
        best first.

        The first stage keeps ``candidates`` documents (see :meth:`first_stage`); they are
        scored by MaxSim over both levels of codes when the index has a refinement tier
        (:meth:`rescore`), over the residual codes otherwise (:meth:`score`).
        """
        q = self._check_query(query)
        for name, value in (("k", k), ("nprobe", nprobe), ("pool", pool),
                            ("candidates", candidates)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        docs, _ = self.first_stage(q, nprobe=nprobe, pool=max(pool, candidates, k),
                                   n=max(candidates, k))
        scores = self.rescore(q, docs) if self.refinement is not None else self.score(q, docs)
        best = _top(scores, k)
        return docs[best], scores[best]

    def first_stage(self, query: Any, *, nprobe: int = 4, pool: int = 1024, n: int = 64
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` candidate documents and their approximate scores, best first, from
        centroid scores alone: the inverted file's probes keep ``pool`` documents, and those are
        ranked by PLAID's centroid interaction (MaxSim with each token replaced by its
        centroid), read from the resident centroid ids."""
        q = self._check_query(query)
        similarities = q @ self._centroids.T  # (query tokens, centroids)
        docs, approx = self._probe(similarities, nprobe, pool)
        if len(docs) <= n:
            return docs, approx
        counts = self.lengths[docs]
        rows = rows_of(self.starts[docs], counts)
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        interaction = np.maximum.reduceat(similarities[:, self.codes[rows]], offsets,
                                          axis=1).sum(axis=0)
        order = _top(interaction, n)
        return docs[order], interaction[order]

    def _probe(self, similarities: np.ndarray, nprobe: int, n: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` documents best by probed centroids: each query token probes its
        ``nprobe`` best centroids; a document scores, per query token, its best probed
        centroid, or that token's worst probed score when it has none of them."""
        n_tokens, n_centroids = similarities.shape
        p = min(nprobe, n_centroids)
        probed = np.argpartition(-similarities, p - 1, axis=1)[:, :p] if p < n_centroids \
            else np.broadcast_to(np.arange(n_centroids), similarities.shape)
        token = np.repeat(np.arange(n_tokens), p)
        centroid = probed.ravel()
        value = similarities[token, centroid]
        floor = value.reshape(n_tokens, p).min(axis=1)
        begin, end = self.ivf_offsets[centroid], self.ivf_offsets[centroid + 1]
        docs = self.ivf_docs[rows_of(begin, end - begin)]
        if len(docs) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        unique, slot = np.unique(docs, return_inverse=True)
        best = np.repeat(floor[:, None], len(unique), axis=1)
        np.maximum.at(best, (np.repeat(token, end - begin), slot), np.repeat(value, end - begin))
        approx = best.sum(axis=0)
        order = _top(approx, n)
        return unique[order].astype(np.int64), approx[order]

    def score(self, query: Any, docs: np.ndarray) -> np.ndarray:
        """Exact MaxSim of ``query`` over the decoded residual codes of documents ``docs``."""
        return self._maxsim(query, docs, self._decode_residual)

    def rescore(self, query: Any, docs: np.ndarray) -> np.ndarray:
        """MaxSim over both levels of codes, the refinement read from disk for ``docs`` only."""
        if self.refinement is None:
            raise InvalidInputError("this index was built without a refinement tier")
        return self._maxsim(query, docs, self._decode_refined)

    def _maxsim(self, query: Any, docs: Any, decode: Any) -> np.ndarray:
        """MaxSim of ``query`` over the documents ``docs``, their rows decoded by
        ``decode(docs, rows, counts)``."""
        q = self._check_query(query)
        docs = np.asarray(docs, dtype=np.int64)
        if len(docs) == 0:
            return np.zeros(0, np.float32)
        counts = self.lengths[docs]
        rows = rows_of(self.starts[docs], counts)
        return maxsim_packed(q, decode(docs, rows, counts), counts)

    def _decode_residual(self, docs: np.ndarray, rows: np.ndarray, counts: np.ndarray
                         ) -> np.ndarray:
        return self.codec.decode(self.codes[rows], self.residuals[rows], dtype=np.float32)

    def _decode_refined(self, docs: np.ndarray, rows: np.ndarray, counts: np.ndarray
                        ) -> np.ndarray:
        width = self.refinement.refinement_bytes
        refinement = np.empty((len(rows), width), dtype=np.uint8)
        fd = open_nofollow(self.folder / "refinement.u8", os.O_RDONLY)
        try:
            at = 0
            for start, count in zip(self.starts[docs].tolist(), counts.tolist(), strict=True):
                chunk = os.pread(fd, count * width, start * width)
                if len(chunk) != count * width:
                    raise IndexCorruptError(f"{self.folder / 'refinement.u8'} is truncated")
                refinement[at:at + count] = np.frombuffer(chunk, np.uint8).reshape(count, width)
                at += count
        finally:
            os.close(fd)
        return self.refinement.decode(self.codes[rows], self.residuals[rows], refinement)

    def _check_query(self, query: Any) -> np.ndarray:
        q = np.asarray(query, dtype=np.float32) if not isinstance(query, np.ndarray) else query
        if q.ndim != 2 or q.shape[1] != self.codec.dim or len(q) == 0:
            raise InvalidInputError(
                f"query must be (query tokens, {self.codec.dim}), got shape {q.shape}")
        q = q.astype(np.float32, copy=False)
        if not np.isfinite(q).all():
            raise InvalidInputError("query holds NaN or infinite values")
        return q


def inverted_file(codes: np.ndarray, lengths: np.ndarray, n_centroids: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """For each centroid, the documents with a token coded to it: ``(docs int32, offsets
    int64 (n_centroids + 1,))``, documents ascending within each centroid."""
    n_docs = len(lengths)
    doc_of_token = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    pairs = np.unique(np.asarray(codes, dtype=np.int64) * n_docs + doc_of_token)
    offsets = np.searchsorted(pairs // n_docs, np.arange(n_centroids + 1)).astype(np.int64)
    return (pairs % n_docs).astype(np.int32), offsets


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` highest scores, best first (ties by position)."""
    if n < len(scores):
        part = np.argpartition(-scores, n - 1)[:n]
        return part[np.lexsort((part, -scores[part]))]
    return np.lexsort((np.arange(len(scores)), -scores))


def _save_npy(path: Path, array: np.ndarray) -> int:
    """Write ``array`` as ``.npy`` through a scratch file and a rename; its size in bytes."""
    with _scratch(path) as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)
    return path.stat().st_size


def _save_raw(path: Path, array: np.ndarray) -> int:
    with _scratch(path) as f:
        f.write(np.ascontiguousarray(array).tobytes())
    return path.stat().st_size


@contextlib.contextmanager
def _scratch(path: Path):
    scratch = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(scratch)
    with os.fdopen(open_nofollow(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    os.replace(scratch, path)
    fsync_dir(path.parent)
