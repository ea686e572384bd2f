"""Graph items: token vectors, or clusters of similar tokens merged within each document."""

from __future__ import annotations

import numpy as np

from colbridge.index.graph import merge_similar, pooled_items


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
