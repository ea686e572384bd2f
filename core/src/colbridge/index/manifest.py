"""``manifest.json``: what an index folder is, which model built it, how its graph is built.

The manifest is written once, when the index is created, and never changes; everything that
changes with writes lives in the SQLite store, inside its transactions.

Format (version 3)::

    {
      "format": "colbridge-index",
      "format_version": 3,
      "created_by": "colbridge 0.1.0",
      "model": {"name": "...", "dimension": 96, "query_length": 32, "document_length": 300},
                # plus "precision": "int8" for an index built with the onnx-int8 backend
      "graph": {"space": "inner_product", "M": 8, "ef_construction": 40, "storage": "float8",
                "pool": 8, "pooling": "kmeans"},
      "codec": "int8",
      "long_documents": "split"
    }

``codec`` names how new token vectors are stored (see :mod:`colbridge.index.vectors`); a
manifest without it means ``float16``, the only codec format-1 folders hold.

Version 2 added the ``int8`` codec and ``graph.pooling``, which releases reading only version 1
cannot use; the version tells them to upgrade instead. Version 1 folders open unchanged: a
manifest without ``pooling`` means ``"similar"``, what those folders were built with, and
``EmbeddedIndex.compact(codec=...)`` converts the vectors (and rewrites the manifest, the one
time a manifest changes).

Version 3 added ``"kmeans"`` pooling, the default for new folders. Version 2 folders open
unchanged and keep the pooling their manifest names; a release reading only version 2 would
call ``"kmeans"`` malformed, and the version tells it to upgrade instead.

``long_documents`` (also version 2) says what the index does with a text longer than the
model's document length (:mod:`colbridge.passages`); a manifest without it was written before
passages existed, and its index truncates.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .._files import atomic_write_bytes
from ..errors import IndexCorruptError, InvalidInputError
from .layout import MANIFEST
from .vectors import DEFAULT_CODEC, store_class

FORMAT = "colbridge-index"
FORMAT_VERSION = 3
FILENAME = MANIFEST
STORAGE_TYPES = ("float32", "float8", "e4m3")
POOLINGS = ("runs", "similar", "kmeans")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    dimension: int
    query_length: int
    document_length: int
    precision: str = "float32"
    """The vectors' family (:attr:`colbridge.Encoder.precision`): an index keeps one."""


@dataclass(frozen=True)
class GraphParams:
    """How the HNSW graph over token vectors is built (see Voyager's ``Index``).

    The defaults were chosen by measurement on SciFact: one item per 8 tokens divides the
    graph's memory and build time by about 8 and still keeps the exact top 10
    (``docs/benchmarks.md``, "A graph over runs of tokens"); grouping a document's tokens by
    k-means rather than by position keeps more of it at the same size and speed ("Graph items
    by k-means"); Float8 storage builds faster than E4M3 at the same neighbour recall, and a
    small M and ef_construction build much faster for a loss of candidate recall that
    ``SearchOptions`` can buy back ("A lighter graph").
    """

    M: int = 8
    ef_construction: int = 40
    storage: str = "float8"
    space: str = "inner_product"
    pool: int = 8
    """About this many tokens of a document make one graph item (their normalised mean)."""
    pooling: str = "kmeans"
    """Which tokens make an item: clusters of similar ones found by ``"kmeans"``
    (:func:`colbridge.index.graph.kmeans_clusters`), ``"runs"`` of ``pool`` consecutive tokens,
    or ``"similar"`` ones merged pairwise (:func:`colbridge.index.graph.merge_similar`)."""

    def __post_init__(self) -> None:
        if self.storage not in STORAGE_TYPES:
            raise InvalidInputError(f"storage must be one of {STORAGE_TYPES}, got {self.storage!r}")
        if self.pooling not in POOLINGS:
            raise InvalidInputError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.space != "inner_product":
            raise InvalidInputError("only the inner_product space is supported (vectors are normalised)")
        for name, minimum in (("M", 2), ("ef_construction", 2), ("pool", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InvalidInputError(f"graph parameter {name} must be an integer >= {minimum}")


@dataclass(frozen=True)
class Manifest:
    model: ModelInfo
    graph: GraphParams
    created_by: str
    codec: str = "float16"
    """The token-vector codec (a name registered in :mod:`colbridge.index.vectors`)."""
    long_documents: str = "truncate"
    """What ``add`` does with long texts (:class:`colbridge.passages.LongDocuments`)."""
    format_version: int = FORMAT_VERSION
    """The version the folder's manifest says; a manifest written now says ``FORMAT_VERSION``."""

    def to_json(self) -> bytes:
        body = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_by": self.created_by,
            # Left out at its default, so colbridge releases before the field read the index.
            "model": {k: v for k, v in asdict(self.model).items()
                      if not (k == "precision" and v == "float32")},
            "graph": asdict(self.graph),
            "codec": self.codec,
            "long_documents": self.long_documents,
        }
        return (json.dumps(body, indent=2) + "\n").encode()

    def write(self, folder: Path) -> Manifest:
        """Write this manifest (as ``FORMAT_VERSION``) and return it as it now reads."""
        atomic_write_bytes(folder / FILENAME, self.to_json())
        return replace(self, format_version=FORMAT_VERSION)

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / FILENAME
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise IndexCorruptError(f"{folder} is not a colbridge index (no {FILENAME})") from None
        except OSError as e:
            raise IndexCorruptError(f"{path} cannot be read ({e})") from e
        try:
            body: Any = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise IndexCorruptError(f"{path} is not valid JSON ({e})") from e
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise IndexCorruptError(f"{path} is not a colbridge manifest (format is not {FORMAT!r})")
        version = body.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise IndexCorruptError(f"{path} has an invalid format_version {version!r}")
        if version > FORMAT_VERSION:
            raise IndexCorruptError(
                f"{folder} was written by a newer colbridge (format {version}; this one reads up to "
                f"{FORMAT_VERSION}): upgrade colbridge"
            )
        try:
            model = ModelInfo(**body["model"])
            # Manifests written before a setting existed were built with its first value.
            graph = GraphParams(**{**_ORIGINAL_GRAPH, **body["graph"]})
            if not isinstance(model.name, str):
                raise ValueError("model.name must be a string")
            for name in ("dimension", "query_length", "document_length"):
                value = getattr(model, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"model.{name} must be a positive integer, got {value!r}")
        except (KeyError, TypeError, ValueError) as e:  # InvalidInputError is a ValueError
            raise IndexCorruptError(f"{path} is incomplete or malformed: {e}") from e
        codec = body.get("codec", DEFAULT_CODEC)
        try:
            store_class(codec)
        except IndexCorruptError as e:
            raise IndexCorruptError(f"{path}: {e}") from None
        long_documents = body.get("long_documents", "truncate")
        if long_documents not in ("split", "truncate", "error"):
            raise IndexCorruptError(f"{path}: unknown long_documents {long_documents!r}")
        return cls(model=model, graph=graph, created_by=str(body.get("created_by", "")),
                   codec=codec, long_documents=long_documents, format_version=version)


_ORIGINAL_GRAPH = {"pool": 1, "pooling": "similar"}


def looks_empty(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(os.scandir(folder)))
