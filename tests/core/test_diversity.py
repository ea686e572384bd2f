"""``colbridge.mmr``: greedy maximal marginal relevance over MaxSim between token vectors."""

from __future__ import annotations

import numpy as np
import pytest
from colbridge import InvalidInputError, mmr
from colbridge.diversity import document_similarities
from colbridge.scoring import maxsim


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def candidates():
    """Six candidates of 3-8 random unit token vectors; 1 is a copy of 0, 4 one of 3."""
    rng = np.random.default_rng(11)
    vectors = [_unit(rng.normal(size=(rng.integers(3, 9), 16))) for _ in range(6)]
    vectors[1], vectors[4] = vectors[0].copy(), vectors[3].copy()
    relevance = [0.9, 0.88, 0.7, 0.6, 0.58, 0.3]
    return relevance, vectors


def test_similarity_is_symmetric_normalised_maxsim(candidates):
    _, vectors = candidates
    similarity = document_similarities(vectors)
    assert similarity.shape == (6, 6)
    np.testing.assert_allclose(similarity, similarity.T)
    np.testing.assert_allclose(np.diag(similarity), 1.0, atol=1e-5)
    a, b = vectors[2], vectors[5]
    expected = (maxsim(a, b) / len(a) + maxsim(b, a) / len(b)) / 2
    assert similarity[2, 5] == pytest.approx(max(expected, 0.0), abs=1e-5)


def test_relevance_only_keeps_the_ranking(candidates):
    relevance, vectors = candidates
    assert mmr(relevance, vectors, k=6, lambda_mult=1.0) == list(np.argsort(relevance)[::-1])


def test_copies_of_a_chosen_candidate_are_passed_over(candidates):
    relevance, vectors = candidates
    picked = mmr(relevance, vectors, k=4)
    assert picked[0] == 0  # the most relevant always comes first
    assert 1 not in picked[:3] and set(picked[:3]) == {0, 2, 3}  # 1 copies 0, 4 copies 3


def test_diversity_only_takes_the_least_similar_next(candidates):
    relevance, vectors = candidates
    similarity = document_similarities(vectors)
    second = mmr(relevance, vectors, k=2, lambda_mult=0.0)[1]
    others = [i for i in range(6) if i != 0]
    assert similarity[0, second] == min(similarity[0, i] for i in others)


def test_k_beyond_the_candidates_and_no_candidates(candidates):
    relevance, vectors = candidates
    assert sorted(mmr(relevance, vectors, k=50)) == list(range(6))
    assert mmr([], [], k=3) == []


@pytest.mark.parametrize(("relevance", "vectors", "k", "lambda_mult", "message"), [
    ([0.5, 0.4], [np.ones((2, 4))], 2, 0.5, "one .* array per candidate"),
    ([0.5], [np.ones((2, 4))], 1, 1.5, "lambda_mult"),
    ([0.5], [np.ones((2, 4))], 1, True, "lambda_mult"),
    ([0.5], [np.ones((2, 4))], 1, float("nan"), "lambda_mult"),
    ([float("nan")], [np.ones((2, 4))], 1, 0.5, "finite"),
    ([[0.5]], [np.ones((2, 4))], 1, 0.5, "flat"),
    ([0.5, 0.4], [np.ones((2, 4)), np.ones((2, 5))], 1, 0.5, r"vectors\[1\]"),
    ([0.5], [np.ones((0, 4))], 1, 0.5, r"vectors\[0\]"),
    ([0.5], [np.ones(4)], 1, 0.5, r"vectors\[0\]"),
    ([0.5], [np.ones((2, 4))], 0, 0.5, "k must be at least 1"),
])
def test_bad_arguments_are_refused(relevance, vectors, k, lambda_mult, message):
    with pytest.raises(InvalidInputError, match=message):
        mmr(relevance, vectors, k, lambda_mult=lambda_mult)
