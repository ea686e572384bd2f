"""Explanations (``explain=True``) as node metadata: highlights and token matches, with their
character offsets moved from the text that was scored to the node's own text.

LlamaIndex scores ``get_content(metadata_mode=MetadataMode.EMBED)``: the metadata LlamaIndex
embeds, then the node's text. Offsets given to users point into the node's text
(``node.get_content()``, what a UI shows); a match inside the metadata part has no span there
(``colbridge.explain.as_metadata`` does the moving). The two keys are excluded from the node's
embedded and LLM text, so they never reach a prompt.
"""

from __future__ import annotations

from llama_index.core.schema import BaseNode, MetadataMode

from colbridge import Hit, RerankResult
from colbridge.explain import HIGHLIGHTS_KEY, MATCHES_KEY, as_metadata


def explained_copy(node: BaseNode, result: Hit | RerankResult, scored_text: str) -> BaseNode:
    """A copy of ``node`` with the explanation of ``result`` (scored on ``scored_text``) in its
    metadata, offsets moved into the node's text, the two keys excluded from its embedded and
    LLM text."""
    explained = as_metadata(result, text=node.get_content(metadata_mode=MetadataMode.NONE),
                            scored_text=scored_text)
    return node.model_copy(update={
        "metadata": {**node.metadata, **explained},
        "excluded_embed_metadata_keys": _excluding(node.excluded_embed_metadata_keys),
        "excluded_llm_metadata_keys": _excluding(node.excluded_llm_metadata_keys),
    })


def _excluding(keys: list[str]) -> list[str]:
    return [*keys, *(key for key in (HIGHLIGHTS_KEY, MATCHES_KEY) if key not in keys)]
