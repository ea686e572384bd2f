"""LangChain integration for colbridge: ColBERT late-interaction retrieval and reranking.

* :class:`ColBERTRetriever`: a retriever over a colbridge index.
* :class:`ColBERTRerank`: a document compressor that reranks any retriever's output by MaxSim.
* :class:`ColBERTVectorStore`: a vector store (add, delete, search, MMR) on a colbridge index.
"""

from __future__ import annotations

from .document_compressors import ColBERTRerank
from .retrievers import ColBERTRetriever
from .vectorstores import ColBERTVectorStore

__all__ = ["ColBERTRerank", "ColBERTRetriever", "ColBERTVectorStore"]
