"""Translation between colbridge's values and LangChain ``Document`` objects, nothing more."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import colbridge.explain as explain_keys
from colbridge.explain import as_metadata
from langchain_core.documents import Document

if TYPE_CHECKING:
    from colbridge import Hit, RerankResult, StoredDocument

SCORE_KEY = "relevance_score"
"""Metadata key under which a score in [0, 1] is written on returned copies."""

HIGHLIGHTS_KEY, MATCHES_KEY = explain_keys.HIGHLIGHTS_KEY, explain_keys.MATCHES_KEY
"""Metadata keys of the explanation (``explain=True``): ``"highlights"``, ``[start, end]``
offsets into ``page_content``, best first; ``"token_matches"``, one dict per query token."""


def hit_to_document(hit: Hit, *, with_score: bool, explain: bool = False) -> Document:
    """A new ``Document`` for a search hit; the score goes in ``metadata[SCORE_KEY]`` if asked,
    the explanation under ``HIGHLIGHTS_KEY`` and ``MATCHES_KEY`` with ``explain``."""
    metadata: dict[str, Any] = dict(hit.metadata)
    if with_score:
        metadata[SCORE_KEY] = hit.normalized_score
    if explain:
        metadata.update(explanation(hit))
    return Document(id=hit.id, page_content=hit.text, metadata=metadata)


def explanation(result: Hit | RerankResult | None) -> dict[str, Any]:
    """The two explanation keys for a hit or rerank result, as plain lists and dicts (JSON
    values); both lists are empty when there is nothing to explain (None, or a ``bm25`` hit)."""
    return as_metadata(result)


def stored_to_document(stored: StoredDocument) -> Document:
    """A new ``Document`` for a stored document."""
    return Document(id=stored.id, page_content=stored.text, metadata=dict(stored.metadata))


def scored_copy(document: Document, score: float,
                extra: dict[str, Any] | None = None) -> Document:
    """A copy of ``document`` with ``metadata[SCORE_KEY] = score`` (and the ``extra`` keys);
    the original is untouched.

    Every field (``id``, ``type``, subclass fields) carries over; only ``metadata`` is a new dict.
    """
    metadata = {**document.metadata, SCORE_KEY: score, **(extra or {})}
    return document.model_copy(update={"metadata": metadata})
