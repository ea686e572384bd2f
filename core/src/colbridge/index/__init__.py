"""Index backends: the shared contract, the embedded (Voyager + SQLite) index, and Qdrant."""

from .base import BaseIndex
from .embedded import EmbeddedIndex, SearchOptions
from .manifest import GraphParams
from .qdrant import QdrantIndex

__all__ = ["BaseIndex", "EmbeddedIndex", "GraphParams", "QdrantIndex", "SearchOptions"]
