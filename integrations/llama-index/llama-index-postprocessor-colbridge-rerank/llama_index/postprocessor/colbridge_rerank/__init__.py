"""ColBERT reranking node postprocessor for LlamaIndex, backed by colbridge.

>>> from llama_index.postprocessor.colbridge_rerank import ColBERTRerank  # doctest: +SKIP
"""

from __future__ import annotations

from .base import ColBERTRerank

__all__ = ["ColBERTRerank"]
