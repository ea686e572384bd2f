"""Copy an embedded index into a Qdrant collection, reusing its stored token vectors.

Nothing is re-encoded: each document's float16 rows go to Qdrant as they are, so the scores
after the move equal the scores before it. The copy goes in batches and skips ids the
collection already holds, so an interrupted migration resumes where it stopped when run again.

Targets are written as URLs:

==========================================  ====================================================
``qdrant://HOST[:PORT]/COLLECTION``         a Qdrant server over HTTP (port 6333 by default)
``qdrants://HOST[:PORT]/COLLECTION``        the same over HTTPS (Qdrant Cloud)
``qdrant+local:///ABSOLUTE/DIR/COLLECTION``  Qdrant's local mode, in the folder ``/ABSOLUTE/DIR``
``qdrant+local:RELATIVE/DIR/COLLECTION``     the same, relative to the working directory
==========================================  ====================================================

The API key of a server comes from the ``api_key`` argument (``--api-key`` or ``QDRANT_API_KEY``
on the command line), never from the URL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ._validate import dump_metadata
from .errors import IndexMismatchError, InvalidInputError
from .index.embedded import EmbeddedIndex
from .index.manifest import Manifest, ModelInfo
from .index.qdrant import QdrantIndex
from .models import ColBERTModel


@dataclass(frozen=True)
class QdrantTarget:
    """Where a migration writes: ``location`` is a URL or a local folder for ``QdrantIndex``."""

    location: str
    collection: str

    @classmethod
    def parse(cls, url: str) -> QdrantTarget:
        """Read a target URL (see the module docstring for the forms).

        >>> QdrantTarget.parse("qdrant://localhost/docs")
        QdrantTarget(location='http://localhost:6333', collection='docs')
        >>> QdrantTarget.parse("qdrant+local:///var/qdrant/docs")
        QdrantTarget(location='/var/qdrant', collection='docs')
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in ("qdrant", "qdrants"):
            try:
                port = parts.port or 6333
            except ValueError as e:
                raise InvalidInputError(f"{url!r} has a bad port: {e}") from e
            collection = parts.path.strip("/")
            if not parts.hostname or not collection or "/" in collection:
                raise InvalidInputError(f"{url!r} should look like {scheme}://HOST:PORT/COLLECTION")
            if parts.username or parts.password:
                raise InvalidInputError(
                    "put the API key in --api-key or QDRANT_API_KEY, not in the URL")
            http = "https" if scheme == "qdrants" else "http"
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            return cls(f"{http}://{host}:{port}", collection)
        if scheme == "qdrant+local":
            path = parts.netloc + parts.path if parts.netloc else parts.path
            folder, _, collection = path.rstrip("/").rpartition("/")
            if not folder or not collection:
                raise InvalidInputError(
                    f"{url!r} should look like qdrant+local:///DIR/COLLECTION")
            return cls(folder, collection)
        raise InvalidInputError(
            f"unknown migration target {url!r}: use qdrant://HOST:PORT/COLLECTION, "
            "qdrants://HOST:PORT/COLLECTION or qdrant+local:///DIR/COLLECTION"
        )


@dataclass(frozen=True)
class MigrationResult:
    """What a migration did: documents copied now, and ones the collection already held."""

    copied: int
    skipped: int
    total: int


def migrate_index(
    source: str | os.PathLike[str],
    target: str | QdrantIndex,
    *,
    api_key: str | None = None,
    batch_size: int = 256,
    create_options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MigrationResult:
    """Copy the embedded index at ``source`` into a Qdrant collection, without re-encoding.

    Args:
        source: an embedded index folder.
        target: a target URL (:meth:`QdrantTarget.parse`) or an open :class:`QdrantIndex`
            built for the same model.
        api_key: the server's API key, for a URL target.
        batch_size: documents per round trip.
        create_options: ``create_collection`` arguments when the collection is created, e.g.
            ``{"shard_number": 6, "replication_factor": 2}``.
        progress: called after each batch with the documents handled so far and the total.

    Returns:
        How many documents were copied, and how many were skipped because the collection held
        their ids already (a resumed run). Writers to ``source`` wait until the copy is done,
        so it is a consistent snapshot.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    info = Manifest.read(Path(source)).model
    # Only names are needed: neither index encodes anything, so no weights are loaded.
    model = ColBERTModel(info.name, query_length=info.query_length,
                         document_length=info.document_length)
    with EmbeddedIndex(source, model=model, create=False) as src:
        owned = not isinstance(target, QdrantIndex)
        dest = _open_target(target, model, info, api_key, create_options) if owned else target
        try:
            if (dest.model.name, dest.dimension) != (info.name, info.dimension):
                raise IndexMismatchError(
                    f"the target collection is for {dest.dimension}-d vectors of the model "
                    f"{dest.model.name!r}, the source index holds {info.dimension}-d vectors of "
                    f"{info.name!r}"
                )
            with src._writing():  # a consistent snapshot: writers wait for the copy
                return _copy(src, dest, batch_size, progress)
        finally:
            if owned:
                dest.close()


def _open_target(target: str, model: ColBERTModel, info: ModelInfo, api_key: str | None,
                 create_options: dict[str, Any] | None) -> QdrantIndex:
    where = QdrantTarget.parse(target)
    remote = where.location.startswith(("http://", "https://"))  # local mode takes no key
    return QdrantIndex._for_model_info(where.location, where.collection, model, info,
                                       api_key=api_key if remote else None,
                                       create_options=create_options)


def _copy(src: EmbeddedIndex, dest: QdrantIndex, batch_size: int,
          progress: Callable[[int, int], None] | None) -> MigrationResult:
    matrix = src._vectors.view()
    documents = src.count()
    copied = skipped = total = 0
    for batch in _batches(src._store.iter_documents(), batch_size):
        present = dest._run(dest._present_plan([doc[0] for doc in batch]))
        todo = [doc for doc in batch if doc[0] not in present]
        if todo:
            dest._upsert(
                [doc_id for doc_id, *_ in todo],
                [text for _, text, *_ in todo],
                [dump_metadata(metadata) for _, _, metadata, _, _ in todo],
                [np.asarray(matrix[start : start + count], dtype=np.float32)
                 for *_, start, count in todo],
            )
        copied += len(todo)
        skipped += len(batch) - len(todo)
        total += len(batch)
        if progress is not None:
            progress(total, documents)
    return MigrationResult(copied=copied, skipped=skipped, total=total)


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
