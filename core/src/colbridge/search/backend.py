"""What the search stage asks of a backend: seven primitives over documents named by keys.

A backend answers for one search at a time (usually through a small object bound to one
snapshot of its data and to that search's options). Documents are named by **keys**: int64
numbers the backend chooses (the embedded index uses its document numbers), stable for the
whole search. Arrays of keys that the stage passes in are ascending, except in
``best_passages``.

A document may be stored as several passages (:mod:`colbridge.passages`): a key still names the
document, and its MaxSim is its best passage's; ``best_passages`` says which passage that was.

To add a backend, implement :class:`SearchBackend` and hand it to
:func:`colbridge.search.run_search`; a new first stage is a new ``first_stage``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..filters import Condition

Document = tuple[str, str, dict[str, Any]]
"""A stored document as the stage returns it: ``(id, text, metadata)``."""


@dataclass(frozen=True)
class Pool:
    """The documents a filter allows, as the backend knows them.

    Attributes:
        size: how many; None when the backend does not count them (then the stage always
            asks for a first stage).
        keys: their keys, ascending, when the backend enumerates them (it must whenever its
            ``first_stage`` may answer None).
        filtered: whether a filter narrowed the collection.
        scope: the backend's own form of the filter (e.g. a compiled Qdrant filter).
    """

    size: int | None
    keys: np.ndarray | None = None
    filtered: bool = False
    scope: Any = None


@dataclass(frozen=True)
class Candidates:
    """What a first stage found: documents worth exact scoring.

    Attributes:
        keys: the candidates' keys, ascending.
        exact: their exact MaxSim when the first stage computed it already, else None.
        estimate: computes an approximate MaxSim of each candidate, on demand: the stage calls
            it only when there are more candidates than its budget.
        documents: documents the first stage fetched anyway, by key (assembly reuses them).
    """

    keys: np.ndarray
    exact: np.ndarray | None = None
    estimate: Callable[[], np.ndarray] | None = None
    documents: Mapping[int, Document] | None = None


class SearchBackend(Protocol):
    """The primitives a backend gives the search stage (:mod:`colbridge.search.stage`)."""

    def pool(self, conditions: list[Condition]) -> Pool:
        """The documents ``conditions`` allow (every document when there are none)."""
        ...

    def first_stage(self, query: np.ndarray, pool: Pool, depth: int) -> Candidates | None:
        """Candidates for the ``(tokens, dim)`` query within ``pool``, meant to hold its best
        ``depth``; None when this backend cannot supply them (the stage then scores the whole
        pool exactly)."""
        ...

    def exact_maxsim(self, query: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Exact MaxSim of the query against each document of ``keys``, from its token vectors
        (the stage never looks at the vectors themselves)."""
        ...

    def lexical_candidates(self, text: str, pool: Pool, depth: int
                           ) -> tuple[np.ndarray, np.ndarray]:
        """BM25's best ``depth`` documents within ``pool`` for ``text``: ``(keys, scores)``,
        only documents sharing a term with it, in any order."""
        ...

    def lexical_scores(self, text: str, keys: np.ndarray) -> np.ndarray:
        """The BM25 score of each document of ``keys`` for ``text`` (0: no shared term)."""
        ...

    def documents(self, keys: list[int]) -> Mapping[int, Document]:
        """The stored documents of ``keys`` that still exist, by key."""
        ...

    def best_passages(self, query: np.ndarray, keys: np.ndarray) -> Mapping[int, tuple[int, int]]:
        """For the documents of ``keys`` (the hits, a few) that are stored as passages, the
        ``(start, end)`` characters of the one that scored best, by key; others are absent."""
        ...
