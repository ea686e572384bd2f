"""Index backends: the shared contract and the embedded (Voyager + SQLite) index."""

from .base import BaseIndex
from .embedded import EmbeddedIndex, SearchOptions
from .manifest import GraphParams

__all__ = ["BaseIndex", "EmbeddedIndex", "GraphParams", "SearchOptions"]
