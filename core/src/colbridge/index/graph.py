"""The HNSW graph over token vectors (Voyager), used only to find candidate documents.

A graph item is a token vector, or the normalised mean of a few of one document's token
vectors (``GraphParams.pool``); its Voyager id is the vector-file row of its first token, so
the snapshot maps an id back to its document from the documents' row ranges alone. The graph
is a checkpointed cache: the vector file and the store are the truth, and rows added after the
last checkpoint are re-added from the vector file when the index opens. Checkpoints are named
``graph-<generation>-<rows>.voy`` and written to a temporary name, then renamed, so a crash
never leaves a half-written graph.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .._files import file_digest
from ..errors import IndexCorruptError
from ..scoring import rows_of
from . import layout
from .layout import graph_file_name
from .manifest import GraphParams

_ADD_CHUNK = 65_536


def checkpoints(folder: Path, generation: int, max_rows: int) -> list[tuple[Path, int]]:
    """The checkpoints of ``generation`` covering at most ``max_rows`` rows, newest first."""
    return [(path, name.rows) for name, path in layout.files_of(folder, layout.GRAPH)
            if name.generation == generation and name.rows <= max_rows]


# A checkpoint with no recorded checksum (written by colbridge before checksums existed) is
# loaded and searched in a child process first: if damage makes Voyager crash, the child dies,
# not the caller, and the graph is rebuilt from the vectors instead (minutes on a large index,
# where the child takes about a second).
_PROBE = """
import sys
import numpy as np
import voyager
index = voyager.Index.load(sys.argv[1])
if index.num_dimensions != int(sys.argv[2]):
    sys.exit(3)
if len(index):
    queries = np.random.default_rng(0).standard_normal((256, index.num_dimensions))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    try:
        index.query(queries, k=min(32, len(index)), query_ef=128)
    except voyager.RecallError:
        pass
"""


def probe_unrecorded(path: Path, dimension: int, timeout: float = 300.0) -> tuple[int, str] | None:
    """``(bytes, sha256)`` of the checkpoint at ``path`` if a child process could load it and
    answer 256 searches with it, else None (the caller rebuilds the graph)."""
    import subprocess
    import sys

    try:
        before = file_digest(path)
        child = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(dimension)],
                               capture_output=True, timeout=timeout, check=False)
        after = file_digest(path)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return before if child.returncode == 0 and before == after else None


class TokenGraph:
    """A Voyager index with a lock: Voyager's query holds the GIL and is not documented as
    safe against a concurrent ``add_items``, so one thread uses the graph at a time."""

    def __init__(self, dimension: int, params: GraphParams, *, rows: int = 0, index=None) -> None:
        import voyager

        self.dimension = dimension
        self.params = params
        self.rows = rows  # vector-file rows covered (ids below this were considered)
        self._lock = threading.Lock()
        self._index = index or voyager.Index(
            voyager.Space.InnerProduct,
            num_dimensions=dimension,
            M=params.M,
            ef_construction=params.ef_construction,
            storage_data_type=_storage(params.storage),
        )

    @classmethod
    def load(cls, path: Path, dimension: int, params: GraphParams, rows: int,
             checksum: tuple[int, str]) -> TokenGraph:
        """Load a checkpoint whose ``(bytes, sha256)`` must be ``checksum`` (recorded when it
        was written): Voyager's native code never reads bytes that were not verified, as a few
        flipped bits can crash it."""
        import voyager

        try:
            digest = file_digest(path)
        except OSError as e:  # deleted by a compaction in another process: the caller retries
            raise IndexCorruptError(f"{path} cannot be read ({e})") from e
        if digest != tuple(checksum):
            raise IndexCorruptError(
                f"{path} does not match the checksum recorded when it was written (it is "
                "damaged); run `colbridge check --repair` to rebuild the graph from the stored "
                "vectors"
            )
        try:
            index = voyager.Index.load(str(path))
        except Exception as e:
            raise IndexCorruptError(
                f"{path} cannot be read ({e}); run `colbridge check --repair` to rebuild the graph "
                "from the stored vectors"
            ) from e
        if index.num_dimensions != dimension:
            raise IndexCorruptError(
                f"{path} has {index.num_dimensions}-d vectors, the index {dimension}-d"
            )
        return cls(dimension, params, rows=rows, index=index)

    def __len__(self) -> int:
        return len(self._index)

    def add_documents(self, matrix: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                      covered_rows: int, id_offset: int = 0) -> None:
        """Add the graph items of documents whose token vectors are ``matrix[start:start+count]``.

        About every ``params.pool`` tokens of a document become one item (see
        :func:`pooled_items`; ``starts`` index ``matrix``, and ids are rows plus ``id_offset``).
        ``covered_rows`` is the vector-file row count the graph covers afterwards.
        """
        pool, pooling = self.params.pool, self.params.pooling
        for begin in range(0, len(starts), 1024):
            part_starts, part_counts = starts[begin:begin + 1024], counts[begin:begin + 1024]
            if not len(part_starts):
                continue
            ids, vectors = pooled_items(matrix, part_starts, part_counts, pool, pooling)
            ids += np.uint64(id_offset)
            for first in range(0, len(ids), _ADD_CHUNK):
                with self._lock:
                    self._index.add_items(vectors[first:first + _ADD_CHUNK],
                                          ids=ids[first:first + _ADD_CHUNK].tolist(), num_threads=-1)
        self.rows = max(self.rows, covered_rows)

    def query(self, queries: np.ndarray, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest rows for each query vector: ``(ids, similarities)``, both ``(len(queries), k)``."""
        import voyager

        with self._lock:
            k = min(k, len(self._index))
            try:
                ids, distances = self._index.query(
                    np.asarray(queries, dtype=np.float32), k=k, query_ef=max(ef, k)
                )
            except voyager.RecallError:
                return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        return ids.astype(np.int64), (1.0 - distances).astype(np.float32)

    def save(self, folder: Path, generation: int) -> Path:
        target = folder / graph_file_name(generation, self.rows)
        with layout.atomic_file(target) as scratch, self._lock:
            self._index.save(str(scratch))
        return target


def pooled_items(matrix: np.ndarray, starts: np.ndarray, counts: np.ndarray, pool: int,
                 pooling: str = "runs") -> tuple[np.ndarray, np.ndarray]:
    """Graph items of documents: ``(ids, float32 vectors)``; see :meth:`TokenGraph.add_documents`.

    With ``pool == 1`` every token vector is an item, with its row as id. Otherwise, with
    ``pooling="runs"``, each run of ``pool`` consecutive tokens of a document (the last one may
    be shorter) is an item: their normalised mean, with the run's first row as id. With
    ``pooling="similar"``, each document's tokens are merged into about ``count / pool``
    clusters of similar tokens (see :func:`merge_similar`), with the smallest row among a
    cluster's tokens as id; ``pooling="kmeans"`` refines the runs into clusters of similar
    tokens by spherical k-means (see :func:`kmeans_clusters`), again with the smallest row as
    id. Either way an id is a row of the item's own document.
    """
    if pooling == "kmeans" and pool > 1:
        return kmeans_clusters(matrix, starts, counts, pool)
    if pool == 1 or pooling == "runs":
        rows = rows_of(starts, counts)
        tokens = np.asarray(matrix[rows], dtype=np.float32)
        if pool == 1:
            return rows.astype(np.uint64), tokens
        offsets = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        firsts = np.flatnonzero(offsets % pool == 0)
        sums = np.add.reduceat(tokens, firsts, axis=0) if len(firsts) else tokens[:0]
        sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        return rows[firsts].astype(np.uint64), sums
    ids, vectors = [], []
    for start, count in zip(starts.tolist(), counts.tolist()):
        tokens = np.asarray(matrix[start:start + count], dtype=np.float32)
        members, centroids = merge_similar(tokens, max(1, -(-count // pool)))
        ids.append(start + members)
        vectors.append(centroids)
    return np.concatenate(ids).astype(np.uint64), np.concatenate(vectors)


# One round of reassignment found more of the exact top 10 than three on SciFact, in three
# builds of each, for less k-means work (docs/benchmarks.md, "One round is enough";
# at 50,000 and 200,000 synthetic documents the two are within build variance).
_KMEANS_ROUNDS = 1
_KMEANS_BLOCK = 128


def kmeans_clusters(matrix: np.ndarray, starts: np.ndarray, counts: np.ndarray, pool: int,
                    rounds: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each document's tokens in ``ceil(count / pool)`` clusters of similar tokens, found by
    spherical k-means seeded with the runs of ``pool`` consecutive tokens.

    A run mixes whatever tokens stand side by side; reassigning each token to its most similar
    cluster mean (``rounds`` times, once by default) makes items that a query token matches
    when it matches one of their tokens. Documents of similar length are processed together as
    one padded batch of matrix products, so a round costs about what building the runs does.
    A cluster left empty is dropped. Returns ``(ids, float32 vectors)``: each cluster's
    smallest row and its normalised mean.
    """
    rounds = _KMEANS_ROUNDS if rounds is None else rounds
    dimension = matrix.shape[1]
    ids_out, vectors_out = [], []
    by_length = np.argsort(counts, kind="stable")
    for begin in range(0, len(by_length), _KMEANS_BLOCK):
        block = by_length[begin:begin + _KMEANS_BLOCK]
        block_starts, block_counts = starts[block], counts[block]
        docs, longest = len(block), int(block_counts.max())
        clusters = -(-longest // pool)
        present = np.arange(longest)[None, :] < block_counts[:, None]  # (docs, tokens)
        tokens = np.zeros((docs, longest, dimension), np.float32)
        tokens[present] = np.asarray(matrix[rows_of(block_starts, block_counts)], np.float32)
        usable = np.arange(clusters)[None, :] < -(-block_counts // pool)[:, None]
        doc_of, position = np.nonzero(present)
        assignment = position // pool
        for round_ in range(rounds + 1):
            members = np.zeros((docs, longest, clusters), np.float32)
            members[doc_of, position, assignment] = 1.0
            sums = members.transpose(0, 2, 1) @ tokens  # (docs, clusters, dimension)
            live = usable & (members.sum(axis=1) > 0)
            if round_ == rounds:
                break
            means = sums / np.maximum(np.linalg.norm(sums, axis=2, keepdims=True), 1e-12)
            similarity = tokens @ means.transpose(0, 2, 1)  # (docs, tokens, clusters)
            similarity = np.where(live[:, None, :], similarity, -np.inf)
            assignment = similarity[doc_of, position].argmax(axis=1)
        first = np.where(members > 0, np.arange(longest)[None, :, None], longest).min(axis=1)
        ids_out.append((block_starts[:, None] + first)[live])
        kept = sums[live]
        vectors_out.append(kept / np.maximum(np.linalg.norm(kept, axis=1, keepdims=True), 1e-12))
    if not ids_out:
        return np.zeros(0, np.uint64), np.zeros((0, dimension), np.float32)
    return np.concatenate(ids_out).astype(np.uint64), np.concatenate(vectors_out)


def merge_similar(tokens: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy agglomeration of one document's token vectors into about ``target`` clusters.

    Each round merges every pair of clusters that are each other's most similar cluster (mutual
    nearest neighbours, by cosine of their means), until ``target`` is reached or no mutual pair
    is left. It approximates Ward clustering — measured on SciFact, candidate recall matches
    PyLate's hierarchical pooling — at a fraction of its cost: a few small matrix products per
    document instead of a full linkage.

    Returns each cluster's smallest token index and its normalised mean vector.
    """
    sums = tokens.copy()
    first = np.arange(len(tokens))
    while len(sums) > target:
        means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        similarity = means @ means.T
        np.fill_diagonal(similarity, -np.inf)
        nearest = similarity.argmax(axis=1)
        mutual = np.nonzero((nearest[nearest] == np.arange(len(sums))) & (np.arange(len(sums)) < nearest))[0]
        if not len(mutual):
            break
        excess = len(sums) - target
        if len(mutual) > excess:  # merge only the most similar pairs needed to reach the target
            mutual = mutual[np.argsort(-similarity[mutual, nearest[mutual]])[:excess]]
        partners = nearest[mutual]
        sums[mutual] += sums[partners]
        first[mutual] = np.minimum(first[mutual], first[partners])
        keep = np.ones(len(sums), dtype=bool)
        keep[partners] = False
        sums, first = sums[keep], first[keep]
    norms = np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return first, (sums / norms).astype(np.float32)


def _storage(name: str):
    import voyager

    return {
        "float32": voyager.StorageDataType.Float32,
        "float8": voyager.StorageDataType.Float8,
        "e4m3": voyager.StorageDataType.E4M3,
    }[name]
