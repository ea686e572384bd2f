"""colbridge: late-interaction (ColBERT) retrieval and reranking for RAG.

>>> from colbridge import ColBERTModel, EmbeddedIndex          # doctest: +SKIP
>>> index = EmbeddedIndex("my-index", model=ColBERTModel())     # doctest: +SKIP
>>> index.add(["Voyager builds HNSW graphs."], ids=["voyager"])  # doctest: +SKIP
>>> index.search("which library builds the graph?", k=1)         # doctest: +SKIP

Names are imported on first use, so ``import colbridge`` stays fast (no torch until needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

_EXPORTS = {
    "ColBERTModel": "colbridge.models",
    "Encoder": "colbridge.models",
    "BaseIndex": "colbridge.index",
    "EmbeddedIndex": "colbridge.index",
    "GraphParams": "colbridge.index",
    "QdrantIndex": "colbridge.index",
    "SearchOptions": "colbridge.index",
    "SearchMode": "colbridge.types",
    "mmr": "colbridge.diversity",
    "Reranker": "colbridge.rerank",
    "Hit": "colbridge.types",
    "RerankResult": "colbridge.types",
    "StoredDocument": "colbridge.types",
    "TokenMatch": "colbridge.types",
    "ColbridgeError": "colbridge.errors",
    "BackendError": "colbridge.errors",
    "IndexClosedError": "colbridge.errors",
    "InvalidInputError": "colbridge.errors",
    "DocumentNotFoundError": "colbridge.errors",
    "DocumentTooLongError": "colbridge.errors",
    "LongDocuments": "colbridge.passages",
    "Passage": "colbridge.passages",
    "ModelLoadError": "colbridge.errors",
    "IndexMismatchError": "colbridge.errors",
    "IndexCorruptError": "colbridge.errors",
    "IndexLockedError": "colbridge.errors",
    "IndexNotFoundError": "colbridge.errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .diversity import mmr
    from .errors import (
        BackendError,
        ColbridgeError,
        DocumentNotFoundError,
        DocumentTooLongError,
        IndexClosedError,
        IndexCorruptError,
        IndexLockedError,
        IndexMismatchError,
        IndexNotFoundError,
        InvalidInputError,
        ModelLoadError,
    )
    from .index import BaseIndex, EmbeddedIndex, GraphParams, QdrantIndex, SearchOptions
    from .models import ColBERTModel, Encoder
    from .passages import LongDocuments, Passage
    from .rerank import Reranker
    from .types import Hit, RerankResult, SearchMode, StoredDocument, TokenMatch


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'colbridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
