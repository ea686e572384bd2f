"""ColBERT retriever for LlamaIndex, backed by colbridge.

>>> from llama_index.retrievers.colbridge import ColBERTRetriever  # doctest: +SKIP
"""

from __future__ import annotations

from .base import ColBERTRetriever

__all__ = ["ColBERTRetriever"]
