"""Fixtures for index tests: small indexes over the tiny model, and the contract's ``index``
(and ``filled``) on every backend."""

from __future__ import annotations

import importlib.util

import pytest
from colbridge import ColBERTModel, EmbeddedIndex, GraphParams, QdrantIndex

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
         "sigma tau upsilon phi chi psi omega river mountain forest desert ocean valley").split()


def synthetic_docs(n: int, seed: int = 0) -> tuple[list[str], list[str], list[dict]]:
    """``n`` short distinct texts with ids ``d0..`` and metadata {group, n, even}."""
    import random

    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + f" item {i}"
             for i in range(n)]
    ids = [f"d{i}" for i in range(n)]
    metadatas = [{"group": f"g{i % 20}", "n": i, "even": i % 2 == 0} for i in range(n)]
    return texts, ids, metadatas


@pytest.fixture
def empty_index(tmp_path, tiny_model):
    index = EmbeddedIndex(tmp_path / "index", model=tiny_model)
    yield index
    index.close()


@pytest.fixture
def small_index(tmp_path, tiny_model):
    """40 synthetic documents."""
    index = EmbeddedIndex(tmp_path / "index", model=tiny_model)
    texts, ids, metadatas = synthetic_docs(40)
    index.add(texts, ids=ids, metadatas=metadatas)
    yield index
    index.close()


@pytest.fixture(scope="module")
def large_index(tmp_path_factory, tiny_model_path):
    """900 synthetic documents: more than the exact-search threshold, so the graph is used.

    Its graph pools pairs of tokens, not the default 8: the tiny model's random weights give
    neighbouring tokens unrelated vectors, so the means of longer runs say little about its
    15-token documents (runs of 8 keep 0.73 of the exact top 10 here, where a real encoder's
    keep 0.98; see docs/benchmarks.md, "A graph over runs of tokens").

    Its vectors are float32 ones (``onnx``, else ``torch``), whatever the default backend: in
    bfloat16 (``openvino``, the default on a CPU with AMX) the tiny model's 16-d vectors kept
    0.943 of the exact top 10 through the graph (0.942 over 300 queries), where its float32
    ones keep 1.000 and offline-minilm's keep 0.997 in bfloat16 (docs/benchmarks.md)."""
    float32 = "onnx" if importlib.util.find_spec("onnxruntime") else "torch"
    model = ColBERTModel(tiny_model_path, name="tiny-test-model", device="cpu", backend=float32)
    index = EmbeddedIndex(tmp_path_factory.mktemp("large") / "index", model=model,
                          graph=GraphParams(pool=2))
    texts, ids, metadatas = synthetic_docs(900, seed=1)
    index.add(texts, ids=ids, metadatas=metadatas)
    yield index
    index.close()


# -- every backend (test_contract.py, test_public_reads.py, ...) ---------------------------------
BACKENDS = ["embedded", "qdrant"]


def qdrant_clients():
    """A local-mode ``QdrantClient`` and an ``AsyncQdrantClient`` that see the same data.

    Local mode keeps a client's collections in the client object, so two clients never share
    them. Point the async client at the sync one's collections, as two clients of one server
    would be; the index's ``a*`` methods then really run on the ``AsyncQdrantClient``.
    """
    from qdrant_client import AsyncQdrantClient, QdrantClient

    client, async_client = QdrantClient(":memory:"), AsyncQdrantClient(":memory:")
    sync_local, async_local = client._client, async_client._client
    assert isinstance(sync_local.collections, dict) and isinstance(async_local.collections, dict)
    async_local.collections = sync_local.collections
    async_local.aliases = sync_local.aliases
    return client, async_client


def open_index(backend, tmp_path, model, name="index", codec=None):
    """A new index of ``backend``; ``codec`` for the embedded one (its default when None)."""
    if backend == "embedded":  # created now, as QdrantIndex creates its collection
        return EmbeddedIndex.open_or_create(tmp_path / name, model=model, codec=codec)
    client, async_client = qdrant_clients()
    return QdrantIndex(client, name, model=model, async_client=async_client)


@pytest.fixture
def client():
    """A local-mode ``QdrantClient`` (in memory), closed after the test."""
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    yield client
    client.close()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def index(backend, tmp_path, tiny_model):
    index = open_index(backend, tmp_path, tiny_model)
    yield index
    index.close()


@pytest.fixture
def filled(index):
    """``index`` holding 40 synthetic documents (ids d0..d39, metadata {group, n, even})."""
    texts, ids, metadatas = synthetic_docs(40)
    index.add(texts, ids=ids, metadatas=metadatas)
    return index
