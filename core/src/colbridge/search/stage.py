"""The search pipeline every backend shares: pool, first stage, pre-rank, exact MaxSim, fusion,
assembly.

The pipeline is written once, as a generator (:func:`search_steps`) that yields each primitive
it needs from the backend, as ``(name, args)``, and receives the answer. :func:`run_search`
drives it with a :class:`~colbridge.search.backend.SearchBackend` whose primitives return their
answers; :func:`through_plans` lets a backend answer with plans of its own I/O calls instead
(the Qdrant backend does, so that one pipeline serves its sync and its async client).

By mode:

* ``colbert``: the first stage's candidates (or, for a pool of at most ``exact_threshold``
  documents, the whole pool) are cut to ``budget`` by their estimated MaxSim, scored with exact
  MaxSim, and the best ``k`` returned.
* ``bm25``: BM25's best ``k`` within the pool.
* ``hybrid``: ColBERT's best ``max(k, HYBRID_DEPTH)`` and BM25's best as many; each candidate
  is scored both ways and the two scores fused (:mod:`colbridge.search.fusion`); equal fused
  scores are ordered by MaxSim.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any, TypeVar

import numpy as np

from .._plans import drive
from ..filters import Condition
from .backend import Candidates, Document, Pool, SearchBackend
from .fusion import DEFAULT_FUSION, DEFAULT_HYBRID_WEIGHT, fusion_named

HYBRID_DEPTH = 100
"""Candidates each ranking contributes to a hybrid search (ColBERT's best, BM25's best)."""

Found = list[tuple[str, float, str, dict[str, Any], tuple[int, int] | None]]
"""Hits as the stage returns them, best first: ``(id, score, text, metadata, passage)``, where
``passage`` is the span of the best passage of a document stored as passages (else None)."""

Step = tuple[str, tuple[Any, ...]]
Steps = Generator[Step, Any, Found]
T = TypeVar("T")


def search_steps(
    query: np.ndarray | None, k: int, conditions: list[Condition], mode: str = "colbert",
    text: str | None = None, hybrid_weight: float = DEFAULT_HYBRID_WEIGHT, *,
    budget: int | None = None, exact_threshold: int = 0, fusion: str = DEFAULT_FUSION,
) -> Steps:
    """The pipeline of one search, as steps for a driver (:func:`run_search`).

    Args:
        query: the ``(tokens, dim)`` query embedding; None in ``bm25`` mode.
        k: hits wanted.
        conditions: the parsed filter.
        mode: ``colbert``, ``bm25`` or ``hybrid``.
        text: the query text (``bm25`` and ``hybrid``).
        hybrid_weight: the share of ColBERT in a fused score.
        budget: most candidates scored exactly after the first stage (at least the depth
            searched); None: all it gives.
        exact_threshold: a pool of at most this many documents is scored exactly, whole.
        fusion: the registered fusion rule of ``hybrid`` mode.

    Returns (as the generator's value): the hits, best first.
    """
    pool: Pool = yield "pool", (conditions,)
    if pool.size == 0:
        return []
    if mode == "bm25":
        keys, scores = yield "lexical_candidates", (text, pool, k)
        return (yield from _assemble(keys, scores, k, None))
    depth = hits_wanted(k, mode)
    if pool.size is not None:
        depth = min(depth, pool.size)
    candidates: Candidates | None = None
    if pool.size is None or pool.size > exact_threshold:
        candidates = yield "first_stage", (query, pool, depth)
    fetched: Mapping[int, Document] = {}
    if candidates is None:
        if pool.keys is None:
            raise TypeError("a backend whose pool has no keys must always give a first stage")
        keys = pool.keys
        scores = yield "exact_maxsim", (query, keys)
    else:
        keys, scores = candidates.keys, candidates.exact
        fetched = candidates.documents or {}
        cut = max(budget, depth) if budget is not None else None
        if cut is not None and len(keys) > cut and candidates.estimate is not None:
            kept = np.sort(np.argpartition(-candidates.estimate(), cut - 1)[:cut])
            keys, scores = keys[kept], (None if scores is None else scores[kept])
        if scores is None:
            scores = yield "exact_maxsim", (query, keys)
    if mode == "colbert":
        return (yield from _assemble(keys, scores, k, query, fetched=fetched))

    lexical_keys, lexical = yield "lexical_candidates", (text, pool, depth)
    best_colbert = keys[top_positions(scores, depth)]
    union = np.union1d(best_colbert, lexical_keys[top_positions(lexical, depth)])
    union_colbert, scored = values_at(keys, scores, union)
    if not scored.all():  # BM25 found them, the first stage did not: score them exactly
        union_colbert[~scored] = yield "exact_maxsim", (query, union[~scored])
    union_lexical = yield "lexical_scores", (text, union)
    fused = fusion_named(fusion).fuse(union_colbert, union_lexical, hybrid_weight)
    return (yield from _assemble(union, fused, k, query, tie_break=union_colbert,
                                 fetched=fetched))


def hits_wanted(k: int, mode: str) -> int:
    """How many of ColBERT's best a search of ``k`` hits in ``mode`` ranks (its depth)."""
    return max(k, HYBRID_DEPTH) if mode == "hybrid" else k


def _assemble(keys: np.ndarray, scores: np.ndarray, k: int, query: np.ndarray | None,
              tie_break: np.ndarray | None = None,
              fetched: Mapping[int, Document] | None = None) -> Steps:
    """The ``k`` best of ``keys`` by ``scores`` (equal scores ordered by ``tie_break``), with
    their ids, texts, metadata and (given the query) best passages; documents deleted since
    the search began are left out."""
    best = top_positions(scores, k) if tie_break is None else np.lexsort((-tie_break, -scores))[:k]
    chosen = keys[best].tolist()
    documents = dict(fetched or {})
    missing = [key for key in chosen if key not in documents]
    if missing:
        documents.update((yield "documents", (missing,)))
    passages: Mapping[int, tuple[int, int]] = {}
    if query is not None and chosen:
        passages = yield "best_passages", (query, keys[best])
    return [
        (documents[key][0], float(scores[b]), documents[key][1], documents[key][2],
         passages.get(key))
        for key, b in zip(chosen, best.tolist(), strict=True)
        if key in documents
    ]


def run_search(backend: SearchBackend, *args: Any, **kwargs: Any) -> Found:
    """Run :func:`search_steps` (same arguments) against ``backend``'s primitives."""
    return drive(search_steps(*args, **kwargs), lambda step: getattr(backend, step[0])(*step[1]))


def through_plans(steps: Generator[Step, Any, T], backend: Any) -> Generator[Any, Any, T]:
    """``steps`` driven by a backend whose primitives may answer with a plan: a generator that
    yields the backend's own I/O requests and returns the answer. The result is one plan, which
    the backend runs with its sync or its async client."""
    answer = None
    while True:
        try:
            name, step_args = steps.send(answer)
        except StopIteration as done:
            return done.value
        answer = getattr(backend, name)(*step_args)
        if isinstance(answer, Generator):
            answer = yield from answer


def values_at(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """``values`` of ``wanted`` among ascending ``keys`` (0 where absent), and which were
    found."""
    at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    found = (keys[at] == wanted) if len(keys) else np.zeros(len(wanted), dtype=bool)
    out = np.zeros(len(wanted), np.float32)
    out[found] = values[at[found]]
    return out, found


def top_positions(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, best first (ties keep their order)."""
    if k < len(scores):
        best = np.argpartition(-scores, k - 1)[:k]
        return best[np.argsort(-scores[best], kind="stable")]
    return np.argsort(-scores, kind="stable")

