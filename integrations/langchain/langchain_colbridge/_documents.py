"""Translation between colbridge's values and LangChain ``Document`` objects, nothing more."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document

if TYPE_CHECKING:
    from colbridge import Hit, StoredDocument

SCORE_KEY = "relevance_score"
"""Metadata key under which a score in [0, 1] is written on returned copies."""


def hit_to_document(hit: Hit, *, with_score: bool) -> Document:
    """A new ``Document`` for a search hit; the score goes in ``metadata[SCORE_KEY]`` if asked."""
    metadata: dict[str, Any] = dict(hit.metadata)
    if with_score:
        metadata[SCORE_KEY] = hit.normalized_score
    return Document(id=hit.id, page_content=hit.text, metadata=metadata)


def stored_to_document(stored: StoredDocument) -> Document:
    """A new ``Document`` for a stored document."""
    return Document(id=stored.id, page_content=stored.text, metadata=dict(stored.metadata))


def scored_copy(document: Document, score: float) -> Document:
    """A copy of ``document`` with ``metadata[SCORE_KEY] = score``; the original is untouched.

    Every field (``id``, ``type``, subclass fields) carries over; only ``metadata`` is a new dict.
    """
    return document.model_copy(update={"metadata": {**document.metadata, SCORE_KEY: score}})
