"""Copy an index into another, reusing its stored token vectors: an embedded index into a
Qdrant collection (the command line's ``colbridge migrate``), or between any two open indexes.

Nothing is re-encoded: the copy reads documents with their vectors through the source's public
``export()`` and writes them with the target's ``add_encoded``, so the scores after the move
equal the scores before it. The copy goes in batches and skips ids the target already holds, so
an interrupted migration resumes where it stopped when run again.

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
from typing import Any
from urllib.parse import urlsplit

from .errors import IndexMismatchError, IndexNotFoundError, InvalidInputError, ModelLoadError
from .index.base import BaseIndex
from .index.embedded import EmbeddedIndex
from .index.manifest import ModelInfo
from .index.qdrant import QdrantIndex
from .models import Encoder
from .passages import LongDocuments


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
    source: str | os.PathLike[str] | BaseIndex,
    target: str | BaseIndex,
    *,
    api_key: str | None = None,
    batch_size: int = 256,
    create_options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    long_documents: LongDocuments | str | None = None,
    storage: str | None = None,
) -> MigrationResult:
    """Copy the index ``source`` into ``target``, without re-encoding.

    Args:
        source: an embedded index folder, or an open index of any backend.
        target: a Qdrant target URL (:meth:`QdrantTarget.parse`), or an open index of any
            backend built for the same model.
        api_key: the server's API key, for a URL target.
        batch_size: documents per round trip.
        create_options: ``create_collection`` arguments when the collection is created, e.g.
            ``{"shard_number": 6, "replication_factor": 2}``.
        progress: called after each batch with the documents handled so far and the total.
        long_documents: the setting a URL target's new collection records (what its own
            ``add`` does with long texts); default: the source's. Documents the source holds
            as passages are copied as passages whatever it is.
        storage: how a URL target's new collection stores token vectors (``"turbo8"``, the
            default, or ``"float16"``; see :class:`~colbridge.QdrantIndex`); an existing
            collection must match it when given.

    Returns:
        How many documents were copied, and how many were skipped because the target held
        their ids already (a resumed run). Writers to ``source`` are not blocked: documents
        written while the copy runs may be missed (see :meth:`BaseIndex.export`), so stop them
        for an exact copy. Indexes given open stay open.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    # Opened with the model that built it, by name only: nothing is encoded, no weights load.
    src = source if isinstance(source, BaseIndex) else EmbeddedIndex(source, create=False)
    try:
        dest = target if isinstance(target, BaseIndex) else _open_target(
            target, src, api_key, create_options, long_documents, storage)
        try:
            if (dest.model.name, dest.dimension) != (src.model.name, src.dimension):
                raise IndexMismatchError(
                    f"the target is for {dest.dimension}-d vectors of the model "
                    f"{dest.model.name!r}, the source holds {src.dimension}-d vectors of "
                    f"{src.model.name!r}"
                )
            return _copy(src, dest, batch_size, progress)
        finally:
            if dest is not target:
                dest.close()
    finally:
        if src is not source:
            src.close()


def _open_target(target: str, src: BaseIndex, api_key: str | None,
                 create_options: dict[str, Any] | None,
                 long_documents: LongDocuments | str | None = None,
                 storage: str | None = None) -> QdrantIndex:
    where = QdrantTarget.parse(target)
    remote = where.location.startswith(("http://", "https://"))  # local mode takes no key
    manifest = getattr(src, "manifest", None)
    info = manifest.model if manifest is not None else ModelInfo(
        src.model.name, src.dimension, src.model.query_length, src.model.document_length)
    # The collection takes its shape from the source's record, not from weights that would
    # have to be loaded (a migration copies stored vectors and never encodes).
    options: dict[str, Any] = {"api_key": api_key if remote else None,
                               "create_options": create_options, "storage": storage}
    if long_documents is not None:
        return QdrantIndex(where.location, where.collection, _RecordedModel(info),
                           long_documents=long_documents, **options)
    try:  # a new collection takes the source's setting; an existing one keeps its own
        return QdrantIndex(where.location, where.collection, _RecordedModel(info),
                           long_documents=src.long_documents, **options)
    except IndexMismatchError as e:
        if "long_documents" not in str(e):
            raise
        return QdrantIndex(where.location, where.collection, _RecordedModel(info), **options)


class _RecordedModel(Encoder):
    """The source's model as its record describes it: name, shapes and precision, no weights.
    The target opened with it can take stored vectors (``add_encoded``) but not encode."""

    def __init__(self, info: ModelInfo) -> None:
        super().__init__(name=info.name)
        self._info = info

    dimension = property(lambda self: self._info.dimension)
    query_length = property(lambda self: self._info.query_length)
    document_length = property(lambda self: self._info.document_length)
    precision = property(lambda self: self._info.precision)

    def _encode(self, texts: list[str], *, is_query: bool, pool_factor: int = 1,
                show_progress: bool = False) -> list[Any]:
        raise ModelLoadError(f"the migration target holds {self.name!r} vectors copied from its "
                             "source; open it with that model to encode")


def _copy(src: BaseIndex, dest: BaseIndex, batch_size: int,
          progress: Callable[[int, int], None] | None) -> MigrationResult:
    documents = src.count()
    copied = skipped = total = 0
    for batch in _batches(src.export(batch_size=batch_size), batch_size):
        try:
            present = {d.id for d in dest.get([d.id for d in batch], missing_ok=True)}
        except IndexNotFoundError:  # an embedded target whose first add creates it
            present = set()
        todo = [d for d in batch if d.id not in present]
        if todo:
            layouts = src._passages([d.id for d in todo])
            dest.add_encoded([d.vectors for d in todo], [d.text for d in todo],
                             [d.id for d in todo], [d.metadata for d in todo],
                             passages=[layouts.get(d.id) for d in todo])
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
