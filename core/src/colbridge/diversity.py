"""Maximal marginal relevance (MMR) over late-interaction similarities.

Relevance to the query is given (a hit's ``normalized_score``, whatever the search mode). The
similarity between two candidates is MaxSim between their token vectors, normalised by the
"querying" document's token count and averaged over both directions (MaxSim is not symmetric),
so both live in [0, 1] and no single-vector embedding is involved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._validate import check_k
from .errors import InvalidInputError
from .scoring import maxsim_packed, normalize_score


def mmr(
    relevance: Sequence[float] | np.ndarray,
    vectors: Sequence[np.ndarray],
    k: int,
    *,
    lambda_mult: float = 0.5,
) -> list[int]:
    """Pick ``k`` candidates that are relevant and different from each other (greedy MMR).

    Args:
        relevance: each candidate's relevance to the query, in [0, 1] (e.g. the hits'
            ``normalized_score``).
        vectors: each candidate's ``(n_tokens, dim)`` token vectors, unit rows (as
            ``get(..., with_vectors=True)`` gives them); similarity between candidates is
            their normalised MaxSim, averaged over both directions.
        k: how many to pick; fewer come back when there are fewer candidates.
        lambda_mult: 1 ranks by relevance only, 0 by diversity only.

    Returns:
        Candidate positions in the order picked; the most relevant one comes first.

    >>> import numpy as np
    >>> same, other = np.eye(2, dtype=np.float32)[:1], np.eye(2, dtype=np.float32)[1:]
    >>> mmr([0.9, 0.8, 0.5], [same, same, other], k=2)
    [0, 2]
    """
    scores = _check_relevance(relevance)
    k = check_k(k)
    if (isinstance(lambda_mult, bool) or not isinstance(lambda_mult, (int, float))
            or not math.isfinite(lambda_mult) or not 0 <= lambda_mult <= 1):
        raise InvalidInputError(f"lambda_mult must be a number in [0, 1], got {lambda_mult!r}")
    if isinstance(vectors, np.ndarray) or len(vectors) != len(scores):
        raise InvalidInputError(
            f"mmr needs one (n_tokens, dim) array per candidate: got {len(scores)} relevance "
            f"scores and {len(vectors)} arrays")
    if len(scores) == 0:
        return []
    return _select(scores, document_similarities(_check_vectors(vectors)), k, lambda_mult)


def document_similarities(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """Symmetric ``(n, n)`` matrix of normalised MaxSim between documents, each ``(tokens, dim)``.

    One matrix product per document against all the others stacked, so memory stays at
    ``tokens_i x total_tokens`` per step.
    """
    lengths = np.array([len(v) for v in vectors], dtype=np.int64)
    packed = np.concatenate(vectors, axis=0)
    directed = np.stack(
        [normalize_score(maxsim_packed(v, packed, lengths), len(v)) for v in vectors]
    )
    return (directed + directed.T) / 2.0


def _select(relevance: np.ndarray, similarity: np.ndarray, k: int, lambda_mult: float
            ) -> list[int]:
    chosen = [int(np.argmax(relevance))]
    while len(chosen) < min(k, len(relevance)):
        redundancy = similarity[:, chosen].max(axis=1)
        gain = lambda_mult * relevance - (1.0 - lambda_mult) * redundancy
        gain[chosen] = -np.inf
        chosen.append(int(np.argmax(gain)))
    return chosen


def _check_relevance(relevance: Any) -> np.ndarray:
    try:
        scores = np.asarray(relevance, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"relevance must be a list of numbers: {e}") from e
    if scores.ndim != 1 or not np.isfinite(scores).all():
        raise InvalidInputError(f"relevance must be a flat list of finite numbers, got shape "
                                f"{scores.shape}")
    return scores


def _check_vectors(vectors: Sequence[Any]) -> list[np.ndarray]:
    checked = []
    for position, matrix in enumerate(vectors):
        try:
            matrix = np.asarray(matrix, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise InvalidInputError(f"vectors[{position}] is not an array of numbers: {e}") from e
        if (matrix.ndim != 2 or len(matrix) == 0 or not np.isfinite(matrix).all()
                or (checked and matrix.shape[1] != checked[0].shape[1])):
            raise InvalidInputError(
                f"vectors[{position}] must be a finite (n_tokens, dim) array like the others, "
                f"got shape {matrix.shape}")
        checked.append(matrix)
    return checked
