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
class TokenMatch:
    """What one query token matched in a document (``explain=True``; see
    ``docs/concepts.md``, "Where it matched").

    Attributes:
        query_token: the token's position in the encoded query (``[MASK]`` expansion included).
        document_token: the matched vector's position among the document's stored vectors.
        span: that token's ``(start, end)`` character offsets in the stored text; None for a
            token with no text (``[CLS]``, the document marker, ``[SEP]``) or when the vectors
            cannot be mapped to the text (pooled, or supplied through ``add_encoded``).
        score: the cosine similarity of the two tokens: this token's contribution to MaxSim.
    """

    query_token: int
    document_token: int
    span: tuple[int, int] | None
    score: float


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
        matches: with ``explain=True``, one :class:`TokenMatch` per query token, in query order;
            their scores add up to the hit's MaxSim (``score`` in ``colbert`` mode). None
            otherwise, and in ``bm25`` mode.
        highlights: with ``explain=True``, ``(start, end)`` character offsets into ``text``,
            best first: the few merged spans of matched words that carry most of the score.
            Empty otherwise.
        passage: for a document indexed as passages (``long_documents="split"``), the
            ``(start, end)`` characters of ``text`` of the passage that scored best (its score
            is the hit's MaxSim); None for a document indexed whole, and in ``bm25`` mode.
            ``matches`` and ``highlights`` then come from that passage, with offsets into the
            whole ``text``.
    """

    id: str
    score: float
    normalized_score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    matches: list[TokenMatch] | None = None
    highlights: list[tuple[int, int]] = field(default_factory=list)
    passage: tuple[int, int] | None = None


@dataclass(frozen=True)
class RerankResult:
    """One reranked document; ``index`` is its position in the list given to ``rerank``.

    ``matches`` and ``highlights`` are filled with ``explain=True``, as on :class:`Hit`
    (a document given as vectors has matches without spans, and no highlights). ``passage``
    is the ``(start, end)`` characters of ``text`` of the best passage of a text split into
    passages (its score is the result's), as on :class:`Hit`; None for one scored whole."""

    index: int
    score: float
    normalized_score: float
    text: str | None = None
    matches: list[TokenMatch] | None = None
    highlights: list[tuple[int, int]] = field(default_factory=list)
    passage: tuple[int, int] | None = None
