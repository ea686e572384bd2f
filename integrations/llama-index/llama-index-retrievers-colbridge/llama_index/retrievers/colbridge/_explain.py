"""Explanations (``explain=True``) as node metadata: highlights and token matches, with their
character offsets moved from the text that was scored to the node's own text.

LlamaIndex scores ``get_content(metadata_mode=MetadataMode.EMBED)``: the metadata LlamaIndex
embeds, then the node's text. Offsets given to users point into the node's text
(``node.get_content()``, what a UI shows); a match inside the metadata part has no span there.
The two keys are excluded from the node's embedded and LLM text, so they never reach a prompt.

(The postprocessor package has the same module: the two distributions do not depend on each
other.)
"""

from __future__ import annotations

from llama_index.core.schema import BaseNode, MetadataMode

from colbridge import Hit, RerankResult

HIGHLIGHTS_KEY = "highlights"
"""``[start, end]`` character offsets into the node's text, best first."""

MATCHES_KEY = "token_matches"
"""One dict per query token: ``query_token``, ``document_token``, ``span``, ``score``."""

_KEYS = (HIGHLIGHTS_KEY, MATCHES_KEY)


def explained_copy(node: BaseNode, result: Hit | RerankResult, scored_text: str) -> BaseNode:
    """A copy of ``node`` with the explanation of ``result`` (scored on ``scored_text``) in its
    metadata, the two keys excluded from its embedded and LLM text."""
    text = node.get_content(metadata_mode=MetadataMode.NONE)
    offset = _text_offset(scored_text, text)

    def moved(span: tuple[int, int] | None) -> list[int] | None:
        if span is None or offset is None:
            return None
        start, end = span[0] - offset, span[1] - offset
        return [start, end] if start >= 0 and end <= len(text) else None

    highlights = [span for span in map(moved, result.highlights) if span is not None]
    matches = [
        {"query_token": m.query_token, "document_token": m.document_token,
         "span": moved(m.span), "score": m.score}
        for m in result.matches or []
    ]
    return node.model_copy(update={
        "metadata": {**node.metadata, HIGHLIGHTS_KEY: highlights, MATCHES_KEY: matches},
        "excluded_embed_metadata_keys": _with_keys(node.excluded_embed_metadata_keys),
        "excluded_llm_metadata_keys": _with_keys(node.excluded_llm_metadata_keys),
    })


def _text_offset(scored_text: str, text: str) -> int | None:
    """Where ``text`` starts in ``scored_text`` (LlamaIndex's template puts it last, and strips
    the whole), or None when it cannot be found there."""
    if scored_text == text:
        return 0
    at = scored_text.rfind(text)
    if at >= 0:
        return at
    stripped = text.strip()
    at = scored_text.rfind(stripped) if stripped else -1
    return at - (len(text) - len(text.lstrip())) if at >= 0 else None


def _with_keys(keys: list[str]) -> list[str]:
    return [*keys, *(key for key in _KEYS if key not in keys)]
