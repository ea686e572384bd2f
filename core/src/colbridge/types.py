"""The values colbridge hands back: stored documents, search hits, rerank results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StoredDocument:
    """A document as the index holds it."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


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
