"""Maximal marginal relevance over late-interaction scores (pure NumPy, shared by sync and async).

Relevance to the query is the normalised MaxSim score of each candidate. Similarity between two
candidates is MaxSim between their token vectors, normalised by the "querying" document's token
count and averaged over both directions (MaxSim is not symmetric), so both live in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from colbridge.scoring import maxsim_packed, normalize_score


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


def select(relevance: np.ndarray, similarity: np.ndarray, k: int, lambda_mult: float) -> list[int]:
    """Greedy MMR: positions of ``k`` candidates trading relevance against redundancy.

    Args:
        relevance: ``(n,)`` relevance of each candidate to the query, in [0, 1].
        similarity: ``(n, n)`` similarity between candidates, in [0, 1].
        k: how many to pick (at most ``n``).
        lambda_mult: 1 ranks by relevance only; 0 maximises diversity only.

    Returns:
        Candidate positions in the order picked; the most relevant one comes first.
    """
    n = len(relevance)
    if n == 0:
        return []
    chosen = [int(np.argmax(relevance))]
    while len(chosen) < min(k, n):
        redundancy = similarity[:, chosen].max(axis=1)
        gain = lambda_mult * relevance - (1.0 - lambda_mult) * redundancy
        gain[chosen] = -np.inf
        chosen.append(int(np.argmax(gain)))
    return chosen
