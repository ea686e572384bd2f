"""Translations between LlamaIndex objects and colbridge's: nodes, hits and metadata filters.

A node is stored in the core index as one document:

* id: the node id;
* text: ``node.get_content(metadata_mode=MetadataMode.EMBED)`` — what LlamaIndex's own indexes
  embed (the metadata the node does not exclude from embedding, then the text);
* metadata: the node's metadata, plus two reserved keys that start with ``_llamaindex_``:
  ``_llamaindex_node`` (the rest of the node as JSON: class, relationships, exclusion lists,
  templates, character offsets, and the node's own text when it differs from the encoded one)
  and ``_llamaindex_ref_doc_id`` (the source document's id, top-level so that a filter can find
  every node of one document). Both are removed again when the node is rebuilt.

A document that was added to the index without LlamaIndex (no reserved keys) comes back as a
``TextNode`` with the document's id, text and metadata.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.schema import BaseNode, ImageNode, IndexNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from colbridge import Hit

RESERVED_PREFIX = "_llamaindex_"
NODE_KEY = "_llamaindex_node"
REF_DOC_KEY = "_llamaindex_ref_doc_id"

# Node fields that are stored elsewhere (id, text, metadata) or not at all (vectors, media).
_NOT_STORED = (
    "id_", "text", "metadata", "embedding", "text_resource", "image_resource", "audio_resource",
    "video_resource", "obj",
)
_NODE_CLASSES: dict[str, type[TextNode]] = {"IndexNode": IndexNode}

_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}


def node_to_record(node: BaseNode) -> tuple[str, str, dict[str, Any]]:
    """``(id, text to encode, core metadata)`` for one node."""
    if not isinstance(node, TextNode) or isinstance(node, ImageNode):
        raise ValueError(
            f"ColBERTRetriever indexes text nodes only; node {node.node_id!r} is a "
            f"{type(node).__name__}"
        )
    reserved = [key for key in node.metadata if key.startswith(RESERVED_PREFIX)]
    if reserved:
        raise ValueError(
            f"node {node.node_id!r} has metadata keys {reserved}; keys starting with "
            f"{RESERVED_PREFIX!r} are reserved by ColBERTRetriever"
        )
    encoded = node.get_content(metadata_mode=MetadataMode.EMBED)
    if not encoded.strip():
        raise ValueError(f"node {node.node_id!r} has no text to index")
    stored = node.model_dump(mode="json", exclude=set(_NOT_STORED))
    own_text = node.get_content(metadata_mode=MetadataMode.NONE)
    if own_text != encoded:
        stored["text"] = own_text
    metadata = dict(node.metadata)
    metadata[NODE_KEY] = stored
    if node.ref_doc_id is not None:
        metadata[REF_DOC_KEY] = node.ref_doc_id
    return node.node_id, encoded, metadata


def hit_to_node(hit: Hit) -> TextNode:
    """Rebuild the node a hit was indexed from (a plain ``TextNode`` for foreign documents)."""
    metadata = {k: v for k, v in hit.metadata.items() if not k.startswith(RESERVED_PREFIX)}
    stored = hit.metadata.get(NODE_KEY)
    if not isinstance(stored, dict):
        return TextNode(id_=hit.id, text=hit.text, metadata=metadata)
    fields = dict(stored)
    node_class = _NODE_CLASSES.get(fields.pop("class_name", ""), TextNode)
    fields.setdefault("text", hit.text)
    fields["metadata"] = metadata
    fields["id_"] = hit.id
    return node_class.model_validate(fields)


def to_core_filter(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """Translate LlamaIndex ``MetadataFilters`` to a colbridge filter dict.

    Supported: the operators ``==``, ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``in``, ``nin``,
    combined with the ``and`` condition (nested ``MetadataFilters`` too, when they use ``and``).
    Anything else raises ``ValueError`` instead of being ignored.
    """
    if filters is None:
        return None
    if not isinstance(filters, MetadataFilters):
        raise TypeError(f"filters must be a MetadataFilters, got {type(filters).__name__}")
    parts = _and_parts(filters)
    return {"$and": parts} if parts else None


def _and_parts(filters: MetadataFilters) -> list[dict[str, Any]]:
    condition = filters.condition or FilterCondition.AND
    if condition != FilterCondition.AND:
        raise ValueError(
            f"ColBERTRetriever supports only the 'and' filter condition, got {condition.value!r}; "
            "an 'or'/'not' filter would otherwise be applied wrongly"
        )
    parts: list[dict[str, Any]] = []
    for item in filters.filters:
        if isinstance(item, MetadataFilters):
            parts.extend(_and_parts(item))
        elif isinstance(item, MetadataFilter):
            parts.append(_translate_one(item))
        else:
            raise TypeError(f"unexpected filter {item!r}")
    return parts


def _translate_one(item: MetadataFilter) -> dict[str, Any]:
    op = _OPERATORS.get(item.operator)
    if op is None:
        supported = ", ".join(repr(o.value) for o in _OPERATORS)
        raise ValueError(
            f"ColBERTRetriever does not support the filter operator {item.operator.value!r} "
            f"(on {item.key!r}); supported operators: {supported}"
        )
    if item.key.startswith(RESERVED_PREFIX):
        raise ValueError(f"metadata keys starting with {RESERVED_PREFIX!r} are reserved")
    return {item.key: {op: item.value}}
