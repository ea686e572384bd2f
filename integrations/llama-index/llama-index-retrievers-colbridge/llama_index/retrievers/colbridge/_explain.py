"""Passages and explanations as node metadata, with character offsets moved from the text that
was scored to the node's own text.

LlamaIndex scores ``get_content(metadata_mode=MetadataMode.EMBED)``: the metadata LlamaIndex
embeds, then the node's text. Offsets given to users point into the node's text
(``node.get_content()``, what a UI shows); a match inside the metadata part has no span there
(``colbridge.explain.passage_and_metadata`` does the moving). The keys added are excluded from
the node's embedded and LLM text, so they never reach a prompt.

``llama-index-postprocessor-colbridge-rerank`` imports ``shaped_copy`` from here (it depends
on this package), so its signature is shared by both packages.
"""

from __future__ import annotations

from llama_index.core.schema import BaseNode, MetadataMode

from colbridge import Hit, RerankResult
from colbridge.explain import passage_and_metadata


def shaped_copy(node: BaseNode, result: Hit | RerankResult, scored_text: str, *,
                explain: bool, return_passage: bool) -> BaseNode:
    """``node`` as returned for ``result`` (scored on ``scored_text``): a copy with the best
    passage's span (``"passage"``, into the node's text) and, with ``explain``, the
    explanation in its metadata, those keys excluded from its embedded and LLM text; with
    ``return_passage`` and a passage, the passage as its text (and ``start_char_idx`` /
    ``end_char_idx`` moved to it). ``node`` itself when there is nothing to add."""
    text = node.get_content(metadata_mode=MetadataMode.NONE)
    returned, extra = passage_and_metadata(result, text, scored_text=scored_text,
                                           explain=explain, return_passage=return_passage)
    if not extra:
        return node
    update = {
        "metadata": {**node.metadata, **extra},
        "excluded_embed_metadata_keys": _excluding(node.excluded_embed_metadata_keys, extra),
        "excluded_llm_metadata_keys": _excluding(node.excluded_llm_metadata_keys, extra),
    }
    if returned != text:
        start, end = extra["passage"]
        update["text"] = returned
        if node.start_char_idx is not None:
            update["start_char_idx"] = node.start_char_idx + start
            update["end_char_idx"] = node.start_char_idx + end
    return node.model_copy(update=update)


def _excluding(keys: list[str], added: dict[str, object]) -> list[str]:
    return [*keys, *(key for key in added if key not in keys)]
