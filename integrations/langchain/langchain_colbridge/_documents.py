"""Translation between colbridge's values and LangChain ``Document`` objects, nothing more."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import colbridge.explain as explain_keys
from colbridge import InvalidInputError
from colbridge.explain import passage_and_metadata
from langchain_core.documents import Document

if TYPE_CHECKING:
    from colbridge import Hit, StoredDocument

SCORE_KEY = "relevance_score"
"""Metadata key under which a score in [0, 1] is written on returned copies."""

HIGHLIGHTS_KEY, MATCHES_KEY = explain_keys.HIGHLIGHTS_KEY, explain_keys.MATCHES_KEY
"""Metadata keys of the explanation (``explain=True``): ``"highlights"``, ``[start, end]``
offsets into ``page_content``, best first; ``"token_matches"``, one dict per query token."""

PASSAGE_KEY = explain_keys.PASSAGE_KEY
"""Metadata key of the best passage's span, ``"passage"``: ``[start, end]`` offsets into the
whole stored text (set only for a document split into passages)."""


def hit_to_document(hit: Hit, *, with_score: bool, explain: bool = False,
                    return_passage: bool = False) -> Document:
    """A new ``Document`` for a search hit; the score goes in ``metadata[SCORE_KEY]`` if asked,
    the explanation under ``HIGHLIGHTS_KEY`` and ``MATCHES_KEY`` with ``explain``, the best
    passage's span under ``PASSAGE_KEY``; with ``return_passage`` the passage is the text."""
    text, extra = passage_and_metadata(hit, hit.text, explain=explain,
                                       return_passage=return_passage)
    metadata: dict[str, Any] = dict(hit.metadata)
    if with_score:
        metadata[SCORE_KEY] = hit.normalized_score
    metadata.update(extra)
    return Document(id=hit.id, page_content=text, metadata=metadata)


def check_return_passage(value: Any) -> bool:
    """``value`` if it is a bool; anything else raises ``colbridge.InvalidInputError``."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"return_passage must be True or False, got {value!r}")
    return value


def stored_to_document(stored: StoredDocument) -> Document:
    """A new ``Document`` for a stored document."""
    return Document(id=stored.id, page_content=stored.text, metadata=dict(stored.metadata))


def scored_copy(document: Document, score: float,
                extra: dict[str, Any] | None = None, text: str | None = None) -> Document:
    """A copy of ``document`` with ``metadata[SCORE_KEY] = score`` (and the ``extra`` keys),
    and ``text`` as its ``page_content`` if given; the original is untouched.

    Every other field (``id``, ``type``, subclass fields) carries over; ``metadata`` is a new
    dict.
    """
    update: dict[str, Any] = {"metadata": {**document.metadata, SCORE_KEY: score, **(extra or {})}}
    if text is not None:
        update["page_content"] = text
    return document.model_copy(update=update)
