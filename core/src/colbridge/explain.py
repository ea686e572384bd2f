"""Where a document matched a query: each query token's best document token, and the spans of
text that carry the score (``explain=True``; ``docs/concepts.md``, "Where it matched").

Explanations are computed after ranking, for the hits returned only, from the same stored
vectors that were scored, so a hit's token contributions add up to its MaxSim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .scoring import token_similarities
from .types import Hit, RerankResult, TokenMatch

MAX_HIGHLIGHTS = 3
"""Most highlight spans per hit."""

HIGHLIGHTS_KEY = "highlights"
"""Metadata key of the highlights (:func:`as_metadata`): ``[start, end]`` offsets, best first."""

MATCHES_KEY = "token_matches"
"""Metadata key of the token matches (:func:`as_metadata`): one dict per query token."""

PASSAGE_KEY = "passage"
"""Metadata key the adapters give the best passage's span (``Hit.passage``): ``[start, end]``
character offsets, set only when the document was split into passages."""


def token_matches(query: np.ndarray, vectors: np.ndarray,
                  spans: Sequence[tuple[int, int] | None] | None) -> list[TokenMatch]:
    """One :class:`TokenMatch` per row of ``query`` against a document's ``vectors``.

    ``spans`` are the vectors' character spans (:meth:`Encoder.document_token_spans`); they
    are used only when there is one per vector (pooled vectors have none).
    """
    similarities = token_similarities(query, vectors)
    best = similarities.argmax(axis=1)
    scores = similarities[np.arange(len(best)), best]
    usable = spans is not None and len(spans) == len(vectors)
    return [
        TokenMatch(query_token=q, document_token=int(j),
                   span=spans[j] if usable else None, score=float(s))  # type: ignore[index]
        for q, (j, s) in enumerate(zip(best.tolist(), scores.tolist(), strict=True))
    ]


def highlights(text: str, matches: Sequence[TokenMatch],
               limit: int = MAX_HIGHLIGHTS) -> list[tuple[int, int]]:
    """The best ``limit`` spans of ``text`` by the score of the matches inside them.

    Each matched token is widened to its whole word; words matched in a row (nothing but
    spaces or punctuation between them) merge into one span, whose weight is the sum of the
    positive contributions of the query tokens that matched in it.
    """
    weight: dict[tuple[int, int], float] = {}
    for match in matches:
        if match.span is not None and match.score > 0:
            word = _whole_word(text, *match.span)
            weight[word] = weight.get(word, 0.0) + match.score
    merged: list[list[float]] = []  # [start, end, weight]
    for (start, end), w in sorted(weight.items()):
        if merged and not any(c.isalnum() for c in text[int(merged[-1][1]):start]):
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][2] += w
        else:
            merged.append([start, end, w])
    merged.sort(key=lambda m: (-m[2], m[0]))
    return [(int(start), int(end)) for start, end, _ in merged[:limit]]


def _whole_word(text: str, start: int, end: int) -> tuple[int, int]:
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    return start, end


def as_metadata(result: Hit | RerankResult | None, *, text: str | None = None,
                scored_text: str | None = None, offset: int | None = None
                ) -> dict[str, list[Any]]:
    """An explained hit or rerank result as JSON values, for a framework's metadata:
    ``{"highlights": [[start, end], ...], "token_matches": [{query_token, document_token, span,
    score}, ...]}``. Both lists are empty when there is nothing to explain (None, or a ``bm25``
    hit).

    When what was scored (``scored_text``) holds the returned ``text`` inside it (LlamaIndex
    scores its metadata header followed by the node's text), pass both: offsets are moved into
    ``text``, and a match outside it keeps no span (nor a highlight). Where ``text`` starts in
    ``scored_text`` is found by search, unless ``offset`` says it (a passage cut out of it).
    """
    if result is None:
        return {HIGHLIGHTS_KEY: [], MATCHES_KEY: []}
    if offset is None:
        offset = 0 if text is None or scored_text is None else _offset_in(scored_text, text)
    limit = None if text is None else len(text)

    def moved(span: tuple[int, int] | None) -> list[int] | None:
        if span is None or offset is None:
            return None
        start, end = span[0] - offset, span[1] - offset
        return [start, end] if start >= 0 and (limit is None or end <= limit) else None

    return {
        HIGHLIGHTS_KEY: [span for span in map(moved, result.highlights) if span is not None],
        MATCHES_KEY: [
            {"query_token": m.query_token, "document_token": m.document_token,
             "span": moved(m.span), "score": m.score}
            for m in result.matches or []
        ],
    }


def passage_and_metadata(result: Hit | RerankResult | None, text: str, *,
                         scored_text: str | None = None, explain: bool = False,
                         return_passage: bool = False) -> tuple[str, dict[str, Any]]:
    """The text an adapter returns for ``result`` and the metadata keys it adds.

    ``text`` is the returned document's whole text; ``scored_text`` what was scored, when it
    holds ``text`` inside it (as for :func:`as_metadata`; default: ``text`` itself).

    * ``PASSAGE_KEY``: the best passage's ``[start, end]`` in ``text`` (cut to it), when the
      result has a passage and some of it lies in ``text``;
    * with ``return_passage`` and such a passage, the returned text is the passage, else
      ``text``;
    * with ``explain``, :func:`as_metadata`'s two keys, their offsets moved into the returned
      text (a match outside it keeps no span, nor a highlight).
    """
    offset = 0 if scored_text is None else _offset_in(scored_text, text)
    span = None if result is None or offset is None else result.passage
    if span is not None:
        start, end = max(span[0] - offset, 0), min(span[1] - offset, len(text))
        span = (start, end) if start < end else None
    extra: dict[str, Any] = {} if span is None else {PASSAGE_KEY: list(span)}
    returned, shift = text, 0
    if return_passage and span is not None:
        returned, shift = text[span[0]:span[1]], span[0]
    if explain:
        extra.update(as_metadata(result, text=returned, scored_text=scored_text,
                                 offset=None if offset is None else offset + shift))
    return returned, extra


def _offset_in(scored_text: str, text: str) -> int | None:
    """Where ``text`` starts in ``scored_text`` (last occurrence; found also when the whole was
    stripped of surrounding whitespace), or None."""
    if scored_text == text:
        return 0
    at = scored_text.rfind(text)
    if at >= 0:
        return at
    stripped = text.strip()
    at = scored_text.rfind(stripped) if stripped else -1
    return at - (len(text) - len(text.lstrip())) if at >= 0 else None
