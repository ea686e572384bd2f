"""The Qdrant backend: the index contract on a Qdrant collection, in-process or distributed.

Collection layout (``docs/scaling.md`` has the details)::

    vectors   "colbert"  every token vector of a document (or passage): a multivector compared
                         with MaxSim, dot product, stored as the collection's ``storage``
                         datatype (turbo8 or float16), no HNSW graph (m=0), so it is
                         scored exactly
              "pooled"   one vector per point, the normalised mean of its token vectors
                         (cosine, HNSW): the optional cheap first stage
    payload   {"id", "text", "metadata", "fields", "field_names"} (see ``_qdrant_payload``)
    point id  uuid5(ID_NAMESPACE, id): the same id always lands on the same point
    metadata  {"colbridge": {"format_version": 2, "model": ..., "dimension": ...,
               "query_length": ..., "document_length": ..., "long_documents": "split",
               "storage": "turbo8"}}
              (collection metadata, Qdrant >= 1.16; no "storage" means float16)

A document split into passages (``long_documents="split"``, :mod:`colbridge.passages`) is one
point per passage. The first sits at the document's point id and carries the payload above plus
``"passages": [[start, end, rows], ...]`` and its ``"span"``; passage ``j >= 1`` sits at
:func:`passage_point_id` and carries ``"id"``, the filter copies, ``"span"`` and ``"part": j``
(no text). Reads, counts and filters look at the first points only (no ``"part"``); searches
group points by ``"id"`` (Qdrant's ``query_points_groups``), so a document scores its best
passage's MaxSim and ``k`` hits are ``k`` documents. Format 1 (no ``"long_documents"``)
collections hold whole documents only and truncate.

Every operation is written once, as a generator that yields the client calls it needs and
receives their results; :meth:`QdrantIndex._run` drives it with the ``QdrantClient`` (the sync
hooks) and :meth:`QdrantIndex._arun` with the ``AsyncQdrantClient`` (the async hooks). The
public methods and their async twins, argument checks included, come from
:class:`~colbridge.index.base.BaseIndex`, shared with every backend.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .._aio import run_off_loop
from .._linalg import l2_normalize
from .._plans import drive
from ..errors import (
    BackendError,
    ColbridgeError,
    DocumentNotFoundError,
    IndexClosedError,
    IndexCorruptError,
    IndexLockedError,
    IndexMismatchError,
    InvalidInputError,
)
from ..filters import Condition
from ..models import ColBERTModel
from ..passages import DEFAULT_LONG_DOCUMENTS, LongDocuments, Passage, long_documents_setting
from ..search import Candidates, Pool, search_steps, through_plans
from ..search.stage import top_positions, values_at
from ._qdrant_payload import (
    FIELD_NAMES,
    FIELDS,
    ID,
    METADATA,
    NEVER,
    TEXT,
    build_payload,
    read_payload,
    to_qdrant_filter,
)
from .base import MODES, BaseIndex, SearchRequest
from .lexical import Segment, segment_scores
from .manifest import ModelInfo

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient, QdrantClient

INSTALL_HINT = 'pip install "colbridge[qdrant]"'
TOKENS_VECTOR = "colbert"
POOLED_VECTOR = "pooled"
METADATA_KEY = "colbridge"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
ID_NAMESPACE = uuid.UUID("b3f5c2d4-8e0a-5d6f-9a41-c01b21d9e7a0")
PASSAGE_NAMESPACE = uuid.UUID("6c1d9e0a-3b7f-5a2e-8d4c-0f9b2a6e51c3")
PART, PASSAGES, SPAN = "part", "passages", "span"
UPSERT_TOKENS = 8192  # token vectors per upsert request: ~15 MB of JSON at 96 dimensions
READ_BATCH = 1000  # ids per retrieve request
# How the token multivector is stored: colbridge's name -> qdrant_client's Datatype member.
# turbo8 is TurboQuant at 8 bits: about half of float16's bytes at nearly its rankings (measured
# with Qdrant's engine: docs/scaling.md). uint8 is left out on purpose: Qdrant casts the query
# to uint8 too, which wipes out normalised vectors. turbo4 is left out until it can be measured.
STORAGES = {"turbo8": "TURBO8", "float16": "FLOAT16"}
DEFAULT_STORAGE = "turbo8"
LEGACY_STORAGE = "float16"  # collections made before the metadata recorded a storage

T = TypeVar("T")
# A plan yields (client method, keyword arguments) and receives each call's result.
Plan = Generator[tuple[str, dict[str, Any]], Any, T]


def point_id(doc_id: str) -> str:
    """The Qdrant point id that stores the document ``doc_id``: ``uuid5(ID_NAMESPACE, doc_id)``.

    >>> point_id("doc-1") == point_id("doc-1") != point_id("doc-2")
    True
    """
    return str(uuid.uuid5(ID_NAMESPACE, doc_id))


def passage_point_id(doc_id: str, number: int) -> str:
    """The point id of passage ``number`` (from 1) of the split document ``doc_id``."""
    return str(uuid.uuid5(PASSAGE_NAMESPACE, f"{number}:{doc_id}"))


def _part_ids(doc_id: str, payload: Mapping[str, Any], keep: int = 1) -> list[str]:
    """The point ids of a stored document's passages from number ``keep`` on."""
    count = len(payload.get(PASSAGES) or ())
    return [passage_point_id(doc_id, j) for j in range(max(keep, 1), count)]


def import_qdrant() -> Any:
    """The ``qdrant_client`` module, or an ImportError that says how to install it."""
    try:
        import qdrant_client
    except ImportError as e:
        raise ImportError(
            f"the Qdrant backend needs the qdrant-client package: {INSTALL_HINT}"
        ) from e
    return qdrant_client


@dataclass(frozen=True)
class QdrantSearchOptions:
    """Search knobs of :class:`QdrantIndex`; each search may override them by keyword.

    Attributes:
        prefetch: 0 (the default) ranks every matching document by exact MaxSim. ``N > 0``
            first takes the ``N`` documents whose pooled vector is closest to the query's mean
            token vector, then ranks those by exact MaxSim: far less work on a large
            collection, at the recall cost measured in ``docs/scaling.md``.
        ef: HNSW search breadth of the pooled first stage (Qdrant's ``hnsw_ef``); None leaves
            the server's default.
    """

    prefetch: int = 0
    ef: int | None = None

    def __post_init__(self) -> None:
        for name, minimum in (("prefetch", 0), ("ef", 1)):
            value = getattr(self, name)
            if value is None and name == "ef":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InvalidInputError(f"search option {name} must be an integer >= {minimum}, "
                                        f"got {value!r}")


class QdrantIndex(BaseIndex):
    """A ColBERT index in a Qdrant collection: the embedded index's API, on Qdrant's engine.

    Args:
        client: a ``qdrant_client.QdrantClient``, or where to connect: a URL
            (``"http://host:6333"``), ``":memory:"``, or a folder for Qdrant's local mode.
        collection_name: the collection; created (with ``model``'s dimension) when absent.
        model: a :class:`ColBERTModel` or model name; None uses the model recorded in the
            collection (or ``COLBRIDGE_MODEL``/the default when creating it).
        async_client: the ``AsyncQdrantClient`` the ``a*`` methods use. Built from ``client``
            when that talks to a server; local mode (``":memory:"`` or a folder) keeps its data
            in one client object, so there the ``a*`` methods run the sync client in a worker
            thread instead.
        api_key: the API key when ``client`` is a URL.
        create: create the collection when it is missing (default True).
        create_options: extra ``create_collection`` arguments, e.g.
            ``{"shard_number": 6, "replication_factor": 2}``.
        search_options: default search knobs (see :class:`QdrantSearchOptions`).
        long_documents: what ``add`` does with a text longer than the model's document
            length (``"split"``, the default for a new collection, ``"truncate"`` or
            ``"error"``; :mod:`colbridge.passages`). Recorded with the collection; naming
            another than an existing collection's raises :class:`~colbridge.IndexMismatchError`.
        storage: how a new collection stores the token vectors: ``"turbo8"`` (the default:
            TurboQuant, 8 bits a value, about half of float16's bytes) or ``"float16"``.
            Recorded with the collection; None takes what an existing collection stores, and
            naming another raises :class:`~colbridge.IndexMismatchError`; ``index.storage``
            says which it is. turbo8 needs a Qdrant server with TurboQuant storage; on an older
            one, pass ``"float16"``.

    Raises:
        IndexMismatchError: the collection was built for another model or dimension, or not by
            colbridge.

    Example:
        >>> index = QdrantIndex(":memory:", "docs", model="offline-minilm")  # doctest: +SKIP
        >>> index.add(["ColBERT scores with MaxSim."], ids=["a"])             # doctest: +SKIP
        >>> index.search("what is MaxSim?", k=1, prefetch=200)[0].id          # doctest: +SKIP
        'a'
    """

    search_option_names = tuple(f.name for f in fields(QdrantSearchOptions))
    search_modes = MODES

    def __init__(
        self,
        client: QdrantClient | str | os.PathLike[str],
        collection_name: str,
        model: ColBERTModel | str | None = None,
        *,
        async_client: AsyncQdrantClient | None = None,
        api_key: str | None = None,
        create: bool = True,
        create_options: Mapping[str, Any] | None = None,
        search_options: QdrantSearchOptions | None = None,
        long_documents: LongDocuments | str | None = None,
        storage: str | None = None,
    ) -> None:
        qdrant = import_qdrant()
        asked = None if long_documents is None else long_documents_setting(long_documents)
        self._asked_long_documents = asked
        self._asked_storage = None if storage is None else storage_setting(storage)
        if not isinstance(collection_name, str) or not collection_name.strip():
            raise InvalidInputError(
                f"collection_name must be a non-empty string, got {collection_name!r}")
        if isinstance(model, (str, os.PathLike)):
            model = ColBERTModel(model)
        self.collection_name = collection_name
        self._models = qdrant.models
        self._lexicon = _Lexicon()
        self._closed = False
        self.client, self._owns_client = _connect(qdrant, client, api_key)
        options = self.client.init_options
        self.local = _is_local(self.client)
        self._where = (options.get("url") or options.get("path") or options.get("location")
                       or "server")
        # Local mode is plain Python over shared arrays: one call at a time.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.local else contextlib.nullcontext()
        )
        self._owns_async = False
        self.async_client = async_client
        self.options = search_options or QdrantSearchOptions()
        try:
            if async_client is not None:
                _check_async_client(self.client, async_client, self.local)
            info = self._open_collection(model, create, create_options)
        except BaseException:
            self.close()
            raise
        if async_client is None and not self.local:  # the sync client checked the version
            self.async_client = qdrant.AsyncQdrantClient(
                **{**options, "check_compatibility": False})
            self._owns_async = True
        if model is None:
            model = ColBERTModel(info.name, query_length=info.query_length,
                                 document_length=info.document_length)
        self.model = model
        self.dimension = info.dimension

    # -- the collection -----------------------------------------------------------------------
    def _open_collection(
        self, model: ColBERTModel | None, create: bool, create_options: Mapping[str, Any] | None
    ) -> ModelInfo:
        if not self._call("collection_exists"):
            if not create:
                raise IndexCorruptError(
                    f"there is no Qdrant collection {self.collection_name!r} at {self._where}"
                )
            model = model or ColBERTModel()
            info = ModelInfo(model.name, model.dimension, model.query_length,
                             model.document_length)
            self._create_collection(info, create_options)
        info = self._read_collection_info(self._call("get_collection"))
        asked = self._asked_long_documents
        if asked is not None and asked != self.long_documents:
            raise IndexMismatchError(
                f"the Qdrant collection {self.collection_name!r} was built with long_documents="
                f"{self.long_documents.value!r}, not {asked.value!r}: leave the setting out, or "
                "use another collection")
        if self._asked_storage is not None and self._asked_storage != self.storage:
            raise IndexMismatchError(
                f"the Qdrant collection {self.collection_name!r} stores its token vectors as "
                f"{self.storage}, not {self._asked_storage}: leave storage out (or pass "
                f"storage={self.storage!r}), or create another collection with "
                f"storage={self._asked_storage!r} and copy this one into it "
                "(colbridge.migrate.migrate_index takes two open indexes)")
        if model is not None:
            if model.name != info.name:
                raise IndexMismatchError(
                    f"the Qdrant collection {self.collection_name!r} was built with the model "
                    f"{info.name!r}, not {model.name!r}: open it with that model (or leave the "
                    "model out), or use another collection for this one"
                )
            if model.loaded and model.dimension != info.dimension:
                raise IndexMismatchError(
                    f"the model {model.name!r} produces {model.dimension}-d vectors, but the "
                    f"collection {self.collection_name!r} stores {info.dimension}-d vectors"
                )
        return info

    def _create_collection(self, info: ModelInfo, create_options: Mapping[str, Any] | None) -> None:
        m = self._models
        storage = self._asked_storage or DEFAULT_STORAGE
        vectors = {
            TOKENS_VECTOR: m.VectorParams(
                size=info.dimension, distance=m.Distance.DOT,
                datatype=getattr(m.Datatype, STORAGES[storage]),
                multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
                hnsw_config=m.HnswConfigDiff(m=0),
            ),
            POOLED_VECTOR: m.VectorParams(size=info.dimension, distance=m.Distance.COSINE),
        }
        metadata = {METADATA_KEY: {
            "format_version": FORMAT_VERSION, "model": info.name, "dimension": info.dimension,
            "query_length": info.query_length, "document_length": info.document_length,
            "long_documents": (self._asked_long_documents or DEFAULT_LONG_DOCUMENTS).value,
            "storage": storage,
        }}
        try:
            self._call("create_collection", vectors_config=vectors, metadata=metadata,
                       **dict(create_options or {}))
        except BackendError as e:
            if self._call("collection_exists"):  # a race lost to another creator
                return
            if storage != LEGACY_STORAGE:
                raise BackendError(
                    f"{e}; if this Qdrant server predates TurboQuant storage, create the "
                    f"collection with storage={LEGACY_STORAGE!r}") from (e.__cause__ or e)
            raise

    def _read_collection_info(self, description: Any) -> ModelInfo:
        name = self.collection_name
        meta = (description.config.metadata or {}).get(METADATA_KEY)
        if not isinstance(meta, Mapping):
            raise IndexMismatchError(
                f"the Qdrant collection {name!r} was not created by colbridge (its metadata has "
                f"no {METADATA_KEY!r} entry; collection metadata needs Qdrant >= 1.16): use "
                "another collection name"
            )
        if meta.get("format_version") not in READABLE_FORMATS:
            raise IndexMismatchError(
                f"the Qdrant collection {name!r} has colbridge format "
                f"{meta.get('format_version')!r}; this colbridge reads formats "
                f"{', '.join(map(str, READABLE_FORMATS))}"
            )
        try:
            self.long_documents = LongDocuments(meta.get("long_documents", "truncate"))
        except ValueError:
            raise IndexCorruptError(f"the Qdrant collection {name!r} records an unknown "
                                    f"long_documents {meta.get('long_documents')!r}") from None
        storage = meta.get("storage", LEGACY_STORAGE)
        if storage not in STORAGES:
            raise IndexCorruptError(f"the Qdrant collection {name!r} records an unknown storage "
                                    f"{storage!r} (this colbridge knows {', '.join(STORAGES)})")
        self.storage: str = storage
        vectors = description.config.params.vectors
        tokens = vectors.get(TOKENS_VECTOR) if isinstance(vectors, Mapping) else None
        comparator = getattr(getattr(tokens, "multivector_config", None), "comparator", None)
        if (tokens is None or comparator != self._models.MultiVectorComparator.MAX_SIM
                or tokens.size != meta.get("dimension") or POOLED_VECTOR not in vectors):
            raise IndexMismatchError(
                f"the Qdrant collection {name!r} should hold a {meta.get('dimension')}-d MaxSim "
                f"multivector {TOKENS_VECTOR!r} and a {POOLED_VECTOR!r} vector, but its vectors "
                f"are {vectors!r}"
            )
        return ModelInfo(str(meta["model"]), int(meta["dimension"]), int(meta["query_length"]),
                         int(meta["document_length"]))

    # -- driving plans ------------------------------------------------------------------------
    def _run(self, plan: Plan[T]) -> T:
        return drive(plan, lambda request: self._call(request[0], **request[1]))

    async def _arun(self, plan: Plan[T]) -> T:
        if self.async_client is None:  # local mode: its one client, in a worker thread
            return await run_off_loop(self._run, plan)
        result = None
        while True:
            try:
                method, kwargs = plan.send(result)
            except StopIteration as done:
                return done.value
            self._check_open()
            try:
                with self._translated(method):
                    result = await getattr(self.async_client, method)(
                        collection_name=self.collection_name, **kwargs)
            finally:
                self._lexicon.saw(method)

    def _call(self, method: str, **kwargs: Any) -> Any:
        self._check_open()
        try:
            with self._lock, self._translated(method):
                return getattr(self.client, method)(collection_name=self.collection_name, **kwargs)
        finally:
            self._lexicon.saw(method)

    @contextlib.contextmanager
    def _translated(self, method: str) -> Iterator[None]:
        try:
            yield
        except ColbridgeError:
            raise
        except Exception as e:
            hint = "" if self.local else "; check that the Qdrant server is up and reachable"
            raise BackendError(
                f"Qdrant {method} on collection {self.collection_name!r} at {self._where} "
                f"failed: {e}{hint}"
            ) from e

    # -- the five hooks, each a plan driven by the sync client ----------------------------------
    def _upsert(
        self, ids: list[str], texts: list[str], metadata_json: list[str],
        embeddings: list[np.ndarray], passages: list[tuple[Passage, ...] | None] | None = None,
    ) -> None:
        self._run(self._upsert_plan(ids, texts, metadata_json, embeddings, passages))

    def _delete(self, ids: list[str], missing_ok: bool) -> int:
        return self._run(self._delete_plan(ids, missing_ok))

    def _get(self, ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        return self._run(self._get_plan(ids))

    def _get_with_vectors(
        self, ids: list[str]
    ) -> dict[str, tuple[str, dict[str, Any], np.ndarray]]:
        return self._run(self._get_plan(ids, with_vectors=True))

    def _ids(self, conditions: list[Condition]) -> list[str]:
        return self._run(self._ids_plan(conditions))

    def _passages(self, ids: list[str]) -> dict[str, tuple[Passage, ...]]:
        return self._run(self._passages_plan(ids))

    def _export(
        self, batch_size: int
    ) -> Iterator[list[tuple[str, str, dict[str, Any], np.ndarray]]]:
        offset = None
        while True:
            records, offset = self._call("scroll", limit=batch_size, offset=offset,
                                         scroll_filter=self._documents_only(None),
                                         with_payload=[ID, TEXT, METADATA, PASSAGES],
                                         with_vectors=[TOKENS_VECTOR])
            if records:
                parts = self._run(self._parts_plan(records))
                yield [(*read_payload(r.payload), _joined(r, parts)) for r in records]
            if offset is None:
                return

    def _documents_only(self, query_filter: Any) -> Any:
        """``query_filter`` narrowed to the points that stand for documents (no passage
        ``j >= 1``)."""
        m = self._models
        lead = m.IsEmptyCondition(is_empty=m.PayloadField(key=PART))
        return m.Filter(must=[lead] if query_filter is None else [query_filter, lead])

    def _parts_plan(self, records: list[Any]) -> Plan[dict[str, np.ndarray]]:
        """The token vectors of passages ``j >= 1`` of the split documents among ``records``
        (first points with their payload), by point id."""
        wanted = [pid for r in records for pid in _part_ids(r.payload[ID], r.payload)]
        found: dict[str, np.ndarray] = {}
        for begin in range(0, len(wanted), READ_BATCH):
            parts = yield "retrieve", {"ids": wanted[begin:begin + READ_BATCH],
                                       "with_payload": False, "with_vectors": [TOKENS_VECTOR]}
            found.update((str(p.id), _token_vectors(p)) for p in parts)
        return found

    def _passages_plan(self, ids: list[str]) -> Plan[dict[str, tuple[Passage, ...]]]:
        found: dict[str, tuple[Passage, ...]] = {}
        for begin in range(0, len(ids), READ_BATCH):
            records = yield "retrieve", {
                "ids": [point_id(i) for i in ids[begin : begin + READ_BATCH]],
                "with_payload": [ID, PASSAGES], "with_vectors": False,
            }
            for r in records:
                if r.payload.get(PASSAGES):
                    found[r.payload[ID]] = tuple(Passage(int(a), int(b), int(n))
                                                 for a, b, n in r.payload[PASSAGES])
        return found

    def _count(self) -> int:
        return self._run(self._count_plan())

    def _search(
        self, embedding: np.ndarray | None, k: int, conditions: list[Condition],
        options: dict[str, Any], mode: SearchRequest,
    ) -> list[tuple[str, float, str, dict[str, Any], tuple[int, int] | None]]:
        return self._run(self._search_plan(embedding, k, conditions, options, mode))

    # -- plans ----------------------------------------------------------------------------------
    def _upsert_plan(
        self, ids: list[str], texts: list[str], metadata_json: list[str],
        embeddings: Sequence[np.ndarray],
        passages: Sequence[tuple[Passage, ...] | None] | None = None,
    ) -> Plan[None]:
        """Replace or insert whole points (one per passage of a split document), in requests
        of at most ``UPSERT_TOKENS`` vectors; then delete the passages a replaced document no
        longer has.

        Vectors are rounded to float16 first, as the embedded index stores them, so both
        backends start from the same numbers (a float16 collection stores exactly those; a
        turbo8 one codes them further, on the server).
        """
        m = self._models
        layouts = list(passages or [None] * len(ids))
        stale: list[str] = []
        for begin in range(0, len(ids), READ_BATCH):
            records = yield "retrieve", {
                "ids": [point_id(i) for i in ids[begin : begin + READ_BATCH]],
                "with_payload": [ID, PASSAGES], "with_vectors": False,
            }
            kept = {i: len(p or ()) for i, p in zip(ids[begin:begin + READ_BATCH],
                                                    layouts[begin:begin + READ_BATCH], strict=True)}
            stale += [pid for r in records if r.payload.get(ID) in kept
                      for pid in _part_ids(r.payload[ID], r.payload, kept[r.payload[ID]])]
        batch: list[Any] = []
        tokens = 0
        for doc_id, text, meta, emb, layout in zip(ids, texts, metadata_json, embeddings, layouts,
                                                   strict=True):
            vectors = np.asarray(emb, dtype=np.float32).astype(np.float16).astype(np.float32)
            if batch and tokens + len(vectors) > UPSERT_TOKENS:
                yield "upsert", {"points": batch, "wait": True}
                batch, tokens = [], 0
            payload = build_payload(doc_id, text, json.loads(meta))
            if layout is None:
                pieces = [(point_id(doc_id), payload, vectors)]
            else:
                pieces, first = [], 0
                for number, passage in enumerate(layout):
                    part = vectors[first:first + passage.rows]
                    first += passage.rows
                    span = [passage.start, passage.end]
                    if number == 0:
                        lead = {**payload, SPAN: span,
                                PASSAGES: [[p.start, p.end, p.rows] for p in layout]}
                        pieces.append((point_id(doc_id), lead, part))
                    else:
                        rest = {ID: doc_id, FIELDS: payload[FIELDS],
                                FIELD_NAMES: payload[FIELD_NAMES], SPAN: span, PART: number}
                        pieces.append((passage_point_id(doc_id, number), rest, part))
            batch += [m.PointStruct(id=pid, payload=body, vector={
                TOKENS_VECTOR: part.tolist(), POOLED_VECTOR: pooled(part).tolist()})
                for pid, body, part in pieces]
            tokens += len(vectors)
        if batch:
            yield "upsert", {"points": batch, "wait": True}
        if stale:
            yield "delete", {"points_selector": m.PointIdsList(points=stale), "wait": True}

    def _present_plan(self, ids: list[str]) -> Plan[dict[str, list[str]]]:
        """The stored documents among ``ids``, each with the ids of all its points."""
        present: dict[str, list[str]] = {}
        wanted = set(ids)
        for begin in range(0, len(ids), READ_BATCH):
            records = yield "retrieve", {
                "ids": [point_id(i) for i in ids[begin : begin + READ_BATCH]],
                "with_payload": [ID, PASSAGES], "with_vectors": False,
            }
            present.update((r.payload[ID], [point_id(r.payload[ID]),
                                            *_part_ids(r.payload[ID], r.payload)])
                           for r in records if r.payload[ID] in wanted)
        return present

    def _delete_plan(self, ids: list[str], missing_ok: bool) -> Plan[int]:
        present = yield from self._present_plan(ids)
        missing = [i for i in ids if i not in present]
        if missing and not missing_ok:
            raise DocumentNotFoundError(missing)
        if present:
            points = [pid for point_ids in present.values() for pid in point_ids]
            selector = self._models.PointIdsList(points=points)
            yield "delete", {"points_selector": selector, "wait": True}
        return len(present)

    def _get_plan(self, ids: list[str], with_vectors: bool = False) -> Plan[dict[str, tuple]]:
        """``{id: (text, metadata)}``, or ``(text, metadata, vectors)`` ``with_vectors``."""
        found: dict[str, tuple] = {}
        wanted = set(ids)
        for begin in range(0, len(ids), READ_BATCH):
            records = yield "retrieve", {
                "ids": [point_id(i) for i in ids[begin : begin + READ_BATCH]],
                "with_payload": [ID, TEXT, METADATA, PASSAGES] if with_vectors
                else [ID, TEXT, METADATA],
                "with_vectors": [TOKENS_VECTOR] if with_vectors else False,
            }
            parts = (yield from self._parts_plan(records)) if with_vectors else {}
            for record in records:
                doc_id, text, metadata = read_payload(record.payload)
                if doc_id in wanted:
                    found[doc_id] = ((text, metadata, _joined(record, parts)) if with_vectors
                                     else (text, metadata))
        return found

    def _ids_plan(self, conditions: list[Condition]) -> Plan[list[str]]:
        query_filter = to_qdrant_filter(conditions, self._models)
        if query_filter is NEVER:
            return []
        ids: list[str] = []
        offset = None
        while True:
            records, offset = yield "scroll", {
                "scroll_filter": self._documents_only(query_filter), "limit": READ_BATCH,
                "offset": offset,
                "with_payload": [ID], "with_vectors": False,
            }
            ids.extend(r.payload[ID] for r in records)
            if offset is None:
                return ids

    def _count_plan(self) -> Plan[int]:
        response = yield "count", {"count_filter": self._documents_only(None), "exact": True}
        return int(response.count)

    def _search_plan(
        self, embedding: np.ndarray | None, k: int, conditions: list[Condition],
        options: dict[str, Any], mode: SearchRequest,
    ) -> Plan[list[tuple[str, float, str, dict[str, Any], tuple[int, int] | None]]]:
        """The shared search stage (:mod:`colbridge.search`) over this collection's primitives.
        Qdrant's own MaxSim query is the first stage and scores exactly, so there is no
        pre-rank budget and no threshold below which the whole pool is scored."""
        opts = replace(self.options, **options) if options else self.options
        steps = search_steps(embedding, k, conditions, mode.name, mode.text, mode.hybrid_weight)
        return (yield from through_plans(steps, _QdrantSearch(self, opts)))

    # -- the same hooks, each the same plan driven by the async client --------------------------
    async def _aupsert(
        self, ids: list[str], texts: list[str], metadata_json: list[str],
        embeddings: list[np.ndarray], passages: list[tuple[Passage, ...] | None] | None = None,
    ) -> None:
        await self._arun(self._upsert_plan(ids, texts, metadata_json, embeddings, passages))

    async def _adelete(self, ids: list[str], missing_ok: bool) -> int:
        return await self._arun(self._delete_plan(ids, missing_ok))

    async def _aget(self, ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        return await self._arun(self._get_plan(ids))

    async def _acount(self) -> int:
        return await self._arun(self._count_plan())

    async def _asearch(
        self, embedding: np.ndarray | None, k: int, conditions: list[Condition],
        options: dict[str, Any], mode: SearchRequest,
    ) -> list[tuple[str, float, str, dict[str, Any], tuple[int, int] | None]]:
        return await self._arun(self._search_plan(embedding, k, conditions, options, mode))

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Close the clients this index opened itself (clients passed in stay open).

        In async code prefer :meth:`aclose`, which also closes an async client it opened.
        """
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            with contextlib.suppress(Exception):
                self.client.close()

    async def aclose(self) -> None:
        """Async :meth:`close`, closing the async client too when this index opened it."""
        was_open = not self._closed
        self.close()
        if was_open and self._owns_async and self.async_client is not None:
            with contextlib.suppress(Exception):
                await self.async_client.close()

    async def __aenter__(self) -> QdrantIndex:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise IndexClosedError(f"the index on collection {self.collection_name!r} is closed")

    def __repr__(self) -> str:
        return (f"QdrantIndex({self.collection_name!r} at {self._where!r}, "
                f"model={getattr(getattr(self, 'model', None), 'name', None)!r})")


def _joined(record: Any, parts: Mapping[str, np.ndarray]) -> np.ndarray:
    """A document's token vectors: its first point's, then its other passages' in order."""
    first = _token_vectors(record)
    rest = [parts[pid] for pid in _part_ids(record.payload[ID], record.payload) if pid in parts]
    return np.concatenate([first, *rest]) if rest else first


def _token_vectors(record: Any) -> np.ndarray:
    """A retrieved point's stored token vectors, ``(n_tokens, dim)`` float32."""
    return np.asarray(record.vector[TOKENS_VECTOR], dtype=np.float32)


class _Lexicon:
    """What a Qdrant index keeps between searches for the stage: a key (an int64, as the
    stage wants) for every document id it has seen, and a BM25 segment over the texts stored in
    the collection's payloads.

    The segment is built (bm25s, the embedded index's tokenizer and scoring) by the first
    lexical search, and again when this handle has written since, or when the collection's point
    count changed; see docs/hybrid.md for what that misses.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, int] = {}
        self._ids: list[str] = []
        self.writes = 0  # write calls made through this handle (finished or failed)
        self._segment: tuple[tuple[int, int], Segment | None] | None = None

    def saw(self, method: str) -> None:
        """Count a client call that may have changed the stored texts."""
        if method in ("upsert", "delete"):
            self.writes += 1

    def key(self, doc_id: str) -> int:
        with self._lock:
            key = self._keys.get(doc_id)
            if key is None:
                key = self._keys[doc_id] = len(self._ids)
                self._ids.append(doc_id)
            return key

    def doc_id(self, key: int) -> str:
        return self._ids[key]

    def segment_plan(self, documents_only: Any = None) -> Plan[Segment | None]:
        """The segment over every stored text (None for an empty collection);
        ``documents_only`` is the filter that leaves out passages ``j >= 1``."""
        writes = self.writes  # read before counting: a write meanwhile forces a rebuild
        counted = yield "count", {"exact": True}
        stamp = (writes, int(counted.count))
        cached = self._segment
        if cached is not None and cached[0] == stamp:
            return cached[1]
        keys: list[int] = []
        texts: list[str] = []
        offset = None
        while True:
            records, offset = yield "scroll", {"limit": READ_BATCH, "offset": offset,
                                               "scroll_filter": documents_only,
                                               "with_payload": [ID, TEXT], "with_vectors": False}
            for record in records:
                keys.append(self.key(record.payload[ID]))
                texts.append(record.payload[TEXT])
            if offset is None:
                break
        segment = None
        if keys:
            order = np.argsort(keys)
            segment = Segment.build(np.asarray(keys, np.int64)[order],
                                    [texts[i] for i in order.tolist()], upto=max(keys))
        self._segment = (stamp, segment)
        return segment


class _QdrantSearch:
    """The search primitives (:class:`colbridge.search.SearchBackend`) of a Qdrant index for
    one search. Those that need the server answer with a plan (see the module docstring);
    keys come from the index's :class:`_Lexicon`."""

    def __init__(self, index: QdrantIndex, opts: QdrantSearchOptions) -> None:
        self._index, self._opts = index, opts
        self._m = index._models
        self._lexicon = index._lexicon
        self._lexical: tuple[str, np.ndarray, np.ndarray] | None = None
        self._spans: dict[int, tuple[int, int]] = {}  # best passage of split documents scored

    def pool(self, conditions: list[Condition]) -> Pool:
        scope = to_qdrant_filter(conditions, self._m)
        if scope is NEVER:
            return Pool(size=0)
        return Pool(size=None, filtered=scope is not None, scope=scope)

    def first_stage(self, query: np.ndarray, pool: Pool, depth: int) -> Plan[Candidates]:
        """Qdrant's exact MaxSim ranking within the pool (after the pooled-vector prefetch when
        one is asked for), points grouped by document (its best passage), with the payloads
        of the documents whose first point scored best."""
        m, opts = self._m, self._opts
        request: dict[str, Any] = {
            "query": np.asarray(query, dtype=np.float32).tolist(),
            "using": TOKENS_VECTOR,
            "query_filter": pool.scope,
            "limit": depth,
            "with_payload": [ID, TEXT, METADATA, SPAN, PART],
            "with_vectors": False,
        }
        if opts.prefetch:
            request["prefetch"] = m.Prefetch(
                query=pooled(query).tolist(), using=POOLED_VECTOR, filter=pool.scope,
                limit=max(opts.prefetch, depth),
                params=m.SearchParams(hnsw_ef=opts.ef) if opts.ef else None,
            )
        # Points are passages: ask for more of them until ``depth`` documents are among them
        # (or the collection has no more), keeping each document's best.
        documents, scores = {}, {}
        while True:
            response = yield "query_points", request
            for point in response.points:
                key = self._lexicon.key(point.payload[ID])
                if key in scores:
                    continue
                scores[key] = float(point.score)
                self._note_span(key, point.payload)
                if PART not in point.payload:
                    documents[key] = read_payload(point.payload)
            if len(scores) >= depth or len(response.points) < request["limit"]:
                break
            request["limit"] *= 2
        keys = np.array(sorted(scores), np.int64)
        return Candidates(keys, exact=np.array([scores[key] for key in keys.tolist()]),
                          documents=documents)

    def exact_maxsim(self, query: np.ndarray, keys: np.ndarray) -> Plan[np.ndarray]:
        """MaxSim of the given documents (their best passage's), computed by Qdrant (0 for one
        deleted meanwhile)."""
        m = self._m
        scores = np.zeros(len(keys), np.float32)
        position = {key: i for i, key in enumerate(keys.tolist())}
        for begin in range(0, len(keys), READ_BATCH):
            part = keys[begin : begin + READ_BATCH].tolist()
            ids = [self._lexicon.doc_id(key) for key in part]
            response = yield "query_points_groups", {
                "query": np.asarray(query, dtype=np.float32).tolist(), "using": TOKENS_VECTOR,
                "query_filter": m.Filter(must=[m.FieldCondition(key=ID,
                                                                match=m.MatchAny(any=ids))]),
                "group_by": ID, "group_size": 1, "limit": len(ids),
                "with_payload": [ID, SPAN], "with_vectors": False,
            }
            for group in response.groups:
                point = group.hits[0]
                key = self._lexicon.key(point.payload[ID])
                if key in position:
                    scores[position[key]] = point.score
                    self._note_span(key, point.payload)
        return scores

    def _note_span(self, key: int, payload: Mapping[str, Any]) -> None:
        span = payload.get(SPAN)
        if span:
            self._spans[key] = (int(span[0]), int(span[1]))

    def _table(self, text: str) -> Plan[tuple[np.ndarray, np.ndarray]]:
        """BM25 scores of every document sharing a term with ``text`` (once per search)."""
        if self._lexical is None or self._lexical[0] != text:
            segment = yield from self._lexicon.segment_plan(self._index._documents_only(None))
            if segment is None:
                keys, scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
            else:
                keys, scores = segment_scores([segment], text)
            self._lexical = (text, keys, scores)
        return self._lexical[1], self._lexical[2]

    def lexical_candidates(self, text: str, pool: Pool, depth: int
                           ) -> Plan[tuple[np.ndarray, np.ndarray]]:
        """BM25's best within the pool: the segment ranks, Qdrant says which of the best still
        exist and pass the filter (in rounds, until ``depth`` do or none are left)."""
        m = self._m
        keys, scores = yield from self._table(text)
        order = top_positions(scores, len(scores)).tolist()
        listed = keys.tolist()
        chosen: list[int] = []
        step = max(2 * depth, 256)
        for begin in range(0, len(order), step):
            part = order[begin : begin + step]
            must = [m.HasIdCondition(has_id=[point_id(self._lexicon.doc_id(listed[p]))
                                             for p in part])]
            if pool.scope is not None:
                must.append(pool.scope)
            records, _ = yield "scroll", {"scroll_filter": m.Filter(must=must), "limit": len(part),
                                          "with_payload": [ID], "with_vectors": False}
            passed = {self._lexicon.key(r.payload[ID]) for r in records}
            chosen.extend(p for p in part if listed[p] in passed)
            if len(chosen) >= depth:
                break
        best = np.array(chosen[:depth], np.int64)
        return keys[best], scores[best]

    def lexical_scores(self, text: str, keys: np.ndarray) -> Plan[np.ndarray]:
        table_keys, scores = yield from self._table(text)
        return values_at(table_keys, scores, keys)[0]

    def best_passages(self, query: np.ndarray, keys: np.ndarray) -> dict[int, tuple[int, int]]:
        """The best passages noted while Qdrant scored the documents (every hit was scored
        by ``first_stage`` or ``exact_maxsim``)."""
        return {key: self._spans[key] for key in keys.tolist() if key in self._spans}

    def documents(self, keys: list[int]) -> Plan[dict[int, tuple[str, str, dict[str, Any]]]]:
        found = yield from self._index._get_plan([self._lexicon.doc_id(key) for key in keys])
        return {self._lexicon.key(doc_id): (doc_id, text, metadata)
                for doc_id, (text, metadata) in found.items()}


def storage_setting(value: object) -> str:
    """A valid ``storage`` name (see :class:`QdrantIndex`), or InvalidInputError.

    >>> storage_setting("float16")
    'float16'
    """
    if not isinstance(value, str) or value not in STORAGES:
        raise InvalidInputError(
            f"storage must be one of {', '.join(map(repr, STORAGES))}, got {value!r}")
    return value


def pooled(vectors: np.ndarray) -> np.ndarray:
    """The unit-length mean of a ``(n, dim)`` set of token vectors: the first-stage vector."""
    return l2_normalize(np.asarray(vectors, dtype=np.float32).mean(axis=0), eps=1e-12)


def _is_local(client: Any) -> bool:
    options = client.init_options
    return options.get("location") == ":memory:" or options.get("path") is not None


def _check_async_client(client: Any, async_client: Any, local: bool) -> None:
    """Refuse an async client that cannot see the sync client's data.

    Local mode keeps a collection inside the client object that made it, so a second local
    client, async or not, sees a different (empty) store, unless the two share one.
    """
    if not hasattr(async_client, "init_options") or not hasattr(async_client, "query_points"):
        raise InvalidInputError(f"async_client must be an AsyncQdrantClient, got {async_client!r}")
    if _is_local(async_client) != local:
        raise InvalidInputError("client and async_client must talk to the same Qdrant")
    if local:
        store = getattr(getattr(client, "_client", None), "collections", None)
        if store is None or getattr(getattr(async_client, "_client", None), "collections",
                                    None) is not store:
            raise InvalidInputError(
                "in local mode an AsyncQdrantClient keeps its own, separate data: leave "
                "async_client out (the a* methods then run the local client in a worker thread)"
            )


def _connect(qdrant: Any, client: Any, api_key: str | None) -> tuple[Any, bool]:
    """A ``QdrantClient`` for ``client`` and whether this module opened it."""
    if isinstance(client, qdrant.QdrantClient):
        if api_key is not None:
            raise InvalidInputError("api_key goes to the QdrantClient you pass, not to QdrantIndex")
        return client, False
    if isinstance(client, qdrant.AsyncQdrantClient):
        raise InvalidInputError(
            "pass a QdrantClient as client (the AsyncQdrantClient goes in async_client)"
        )
    if not isinstance(client, (str, os.PathLike)) or not os.fspath(client).strip():
        raise InvalidInputError(
            f"client must be a QdrantClient, a URL, ':memory:' or a folder, got {client!r}"
        )
    spec = os.fspath(client)
    if api_key is not None and not spec.startswith(("http://", "https://")):
        raise InvalidInputError("api_key is for a server URL; here it would be ignored")
    if spec == ":memory:":
        return qdrant.QdrantClient(location=":memory:"), True
    if spec.startswith(("http://", "https://")):
        return qdrant.QdrantClient(url=spec, api_key=api_key), True
    try:
        # Calls are serialised by the index's lock, so worker threads may share the connection.
        return qdrant.QdrantClient(path=spec, force_disable_check_same_thread=True), True
    except RuntimeError as e:
        if "already accessed" in str(e):
            raise IndexLockedError(
                f"the Qdrant local folder {spec} is open in another client (local mode allows "
                "one at a time): close it, or run a Qdrant server for concurrent access"
            ) from e
        raise
