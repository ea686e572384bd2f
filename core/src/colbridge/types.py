"""The values colbridge hands back (stored documents, search hits, rerank results) and the
search modes it takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


class SearchMode(str, Enum):
    """How a search ranks; accepted wherever a mode string is (``mode="bm25"`` works as well).

    * ``COLBERT``: MaxSim between the query's and the documents' token vectors (the default);
    * ``BM25``: BM25 over the stored texts (the query is not encoded);
    * ``HYBRID``: candidates from both rankings, each scored both ways, the scores fused.

    >>> SearchMode.HYBRID == "hybrid", str(SearchMode.BM25)
    (True, 'bm25')
    """

    COLBERT = "colbert"
    BM25 = "bm25"
    HYBRID = "hybrid"

    __str__ = str.__str__  # "bm25", not "SearchMode.BM25", in messages and f-strings


@dataclass(frozen=True)
class StoredDocument:
    """A document as the index holds it.

    ``vectors`` is the document's ``(n_tokens, dim)`` float32 token vectors when they were
    asked for (``get(..., with_vectors=True)``, ``export()``), else None. They are not part of
    equality: two documents compare by id, text and metadata.
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    vectors: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        id: the document's id.
        score: raw MaxSim — the sum over query tokens of the best cosine similarity among the
            document's tokens; between ``-query_length`` and ``query_length``.
        normalized_score: ``score / query_length`` clipped to [0, 1]
            (see :func:`colbridge.scoring.normalize_score`); use it for thresholds.
        text: the stored text.
        metadata: the stored metadata (a fresh dict per hit).
    """

    id: str
    score: float
    normalized_score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RerankResult:
    """One reranked document; ``index`` is its position in the list given to ``rerank``."""

    index: int
    score: float
    normalized_score: float
    text: str | None = None
