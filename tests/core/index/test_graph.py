"""Graph items: token vectors, or clusters of similar tokens merged within each document."""

from __future__ import annotations

import numpy as np

from colbridge.index.graph import kmeans_clusters, merge_similar, pooled_items


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_merge_similar_groups_near_duplicates():
    # two tight groups of three tokens: merging to two clusters must recover them
    tokens = _unit([[1, 0.01, 0], [0, 1, 0.02], [1, 0, 0.02], [0.01, 1, 0], [1, 0.02, 0.01],
                    [0.02, 1, 0.01]])
    first, centroids = merge_similar(tokens, 2)
    assert sorted(first.tolist()) == [0, 1]
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-6)
    by_first = dict(zip(first.tolist(), centroids))
    assert by_first[0][0] > 0.99 and by_first[1][1] > 0.99


def test_merge_similar_respects_the_target_and_keeps_distinct_ids():
    rng = np.random.default_rng(0)
    tokens = _unit(rng.standard_normal((41, 8)))
    first, centroids = merge_similar(tokens, 11)
    assert 11 <= len(first) <= 41 and len(first) == len(centroids)
    assert len(set(first.tolist())) == len(first) and first.min() == 0


def test_pooled_items_map_back_to_their_documents():
    rng = np.random.default_rng(1)
    counts = np.array([5, 1, 12])
    starts = np.array([0, 5, 6])
    matrix = _unit(rng.standard_normal((18, 8))).astype(np.float16)
    ids, vectors = pooled_items(matrix, starts, counts, 1)
    assert ids.tolist() == list(range(18)) and vectors.dtype == np.float32
    ids, vectors = pooled_items(matrix, starts, counts, 4)
    owner = np.repeat(np.arange(3), counts)[ids.astype(np.int64)]
    assert sorted(set(owner.tolist())) == [0, 1, 2]
    assert len(ids) == len(set(ids.tolist())) == len(vectors) < 18
    ids, vectors = pooled_items(matrix, starts, counts, 4, "kmeans")
    expected_ids, expected = kmeans_clusters(matrix, starts, counts, 4)
    assert ids.tolist() == expected_ids.tolist() and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, expected)
    ids, _ = pooled_items(matrix, starts, counts, 1, "kmeans")  # pool 1: every token
    assert ids.tolist() == list(range(18))


def test_kmeans_separates_interleaved_groups_that_runs_would_mix():
    # tokens alternate between two directions: every run of 2 mixes them, two clusters do not
    a, b = _unit([[1, 0.02, 0], [0, 1, 0.03]])
    rng = np.random.default_rng(2)
    tokens = _unit(np.stack([(a if i % 2 else b) + 0.01 * rng.standard_normal(3)
                             for i in range(8)]))
    _, runs = pooled_items(tokens, np.array([0]), np.array([8]), 4, "runs")
    assert (runs @ np.stack([a, b]).T).max() < 0.9
    ids, clusters = kmeans_clusters(tokens, np.array([0]), np.array([8]), 4)
    assert sorted(ids.tolist()) == [0, 1]  # each cluster's smallest row
    assert np.sort((clusters @ np.stack([a, b]).T).max(axis=1)).min() > 0.99
    np.testing.assert_allclose(np.linalg.norm(clusters, axis=1), 1.0, atol=1e-6)


def test_kmeans_items_do_not_depend_on_the_documents_batched_with_them():
    """Documents are padded into batches: padding must not reach any document's clusters."""
    rng = np.random.default_rng(3)
    counts = np.array([7, 1, 30, 9, 2])
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    matrix = _unit(rng.standard_normal((int(counts.sum()), 8))).astype(np.float16)
    ids, vectors = kmeans_clusters(matrix, starts, counts, 4)
    together = dict(zip(ids.tolist(), vectors, strict=True))
    alone = {}
    for start, count in zip(starts, counts, strict=True):
        one_ids, one_vectors = kmeans_clusters(matrix, np.array([start]), np.array([count]), 4)
        alone.update(zip(one_ids.tolist(), one_vectors, strict=True))
    assert together.keys() == alone.keys()
    for row, vector in together.items():
        np.testing.assert_allclose(vector, alone[row], atol=1e-5)
    owner = np.repeat(np.arange(len(counts)), counts)[ids.astype(np.int64)]
    per_document = np.bincount(owner, minlength=len(counts))
    assert (per_document >= 1).all() and (per_document <= -(-counts // 4)).all()
