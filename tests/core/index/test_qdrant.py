"""The Qdrant backend's own behaviour (collection layout, model checks, the first-stage option,
the async client, local folders) and migration from the embedded index.

Everything runs on qdrant-client's local mode, offline. What every backend must do alike is in
``test_contract.py``; the SciFact recall measurement at the end is marked slow.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from colbridge import (
    BackendError,
    ColBERTModel,
    EmbeddedIndex,
    Encoder,
    IndexClosedError,
    IndexCorruptError,
    IndexLockedError,
    IndexMismatchError,
    InvalidInputError,
    QdrantIndex,
)
from colbridge.cli import app
from colbridge.index import qdrant as qdrant_module
from colbridge.index._qdrant_payload import field_key
from colbridge.index.qdrant import QdrantSearchOptions, point_id, pooled
from colbridge.migrate import QdrantTarget, migrate_index
from typer.testing import CliRunner

from .conftest import synthetic_docs
from .test_concurrency import _ticks_during

qdrant_client = pytest.importorskip("qdrant_client")
from qdrant_client import AsyncQdrantClient, QdrantClient, models  # noqa: E402


@pytest.fixture
def index(client, tiny_model):
    """40 synthetic documents in an in-memory collection."""
    index = QdrantIndex(client, "docs", model=tiny_model)
    texts, ids, metadatas = synthetic_docs(40)
    index.add(texts, ids=ids, metadatas=metadatas)
    yield index
    index.close()


# -- the collection ---------------------------------------------------------------------------
def test_collection_is_created_for_the_model(index, client, tiny_model):
    config = client.get_collection("docs").config
    tokens, pooled_params = config.params.vectors["colbert"], config.params.vectors["pooled"]
    assert tokens.size == pooled_params.size == tiny_model.dimension
    assert tokens.multivector_config.comparator == models.MultiVectorComparator.MAX_SIM
    assert tokens.distance == models.Distance.DOT and tokens.hnsw_config.m == 0
    assert pooled_params.multivector_config is None
    assert config.metadata["colbridge"] == {
        "format_version": 2, "model": "tiny-test-model", "dimension": tiny_model.dimension,
        "query_length": tiny_model.query_length, "document_length": tiny_model.document_length,
        "long_documents": "split", "storage": "turbo8",
    }
    assert tokens.datatype == models.Datatype.TURBO8


def test_points_have_uuid5_ids_and_payload_keys_of_their_own(client, tiny_model):
    index = QdrantIndex(client, "docs", model=tiny_model)
    metadata = {"id": "meta id", "text": "meta text", "a.b": 2.0, "tags": ["x"], "none": None}
    index.add(["the stored text"], ids=["doc/1"], metadatas=[metadata])
    (record,) = client.retrieve("docs", ids=[point_id("doc/1")], with_vectors=True)
    assert record.id == point_id("doc/1") == point_id("doc/1") != point_id("doc/2")
    assert record.payload["id"] == "doc/1" and record.payload["text"] == "the stored text"
    assert record.payload["metadata"] == metadata
    assert record.payload["fields"] == {
        "id": "meta id", "text": "meta text", "a_2eb": 2, "none": None}
    assert sorted(record.payload["field_names"]) == sorted(field_key(k) for k in metadata)
    tokens = np.array(record.vector["colbert"])
    assert tokens.shape[1] == tiny_model.dimension
    np.testing.assert_array_equal(tokens, tokens.astype(np.float16))  # stored as float16 values
    np.testing.assert_allclose(record.vector["pooled"], pooled(tokens), atol=1e-6)
    assert index.get(["doc/1"])[0].metadata == metadata


def test_field_keys_are_distinct_and_plain():
    names = ["a_b", "a__b", "a.b", "a_2eb", "a-b", "a b", 'a"b', "é", "_", "__", "x", "X", "1"]
    keys = [field_key(n) for n in names]
    assert len(set(keys)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", k) for k in keys)


def test_reopening_takes_the_model_from_the_collection(index, client):
    reopened = QdrantIndex(client, "docs")
    assert reopened.model.name == "tiny-test-model" and not reopened.model.loaded
    assert reopened.count() == 40 and reopened.dimension == index.dimension


def test_a_model_with_another_name_is_refused(index, client):
    with pytest.raises(IndexMismatchError, match="tiny-test-model"):
        QdrantIndex(client, "docs", model=ColBERTModel("some/other-model"))


def test_a_model_with_another_dimension_is_refused(client, tiny_model):
    QdrantIndex(client, "wide", _Shaped(tiny_model.name, tiny_model.dimension * 2))  # 32-d
    with pytest.raises(IndexMismatchError, match=f"{tiny_model.dimension * 2}-d"):
        QdrantIndex(client, "wide", model=tiny_model)  # the tiny model is loaded: 16-d


def test_a_collection_colbridge_did_not_create_is_refused(client, tiny_model):
    client.create_collection("foreign", vectors_config=models.VectorParams(
        size=tiny_model.dimension, distance=models.Distance.COSINE))
    with pytest.raises(IndexMismatchError, match="not created by colbridge"):
        QdrantIndex(client, "foreign", model=tiny_model)


def test_a_missing_collection_is_not_created_when_create_is_false(client, tiny_model):
    with pytest.raises(IndexCorruptError, match="no Qdrant collection 'absent'"):
        QdrantIndex(client, "absent", model=tiny_model, create=False)
    assert not client.collection_exists("absent")


def test_create_options_reach_create_collection(client, tiny_model, monkeypatch):
    seen = {}
    original = client.create_collection

    def spy(**kwargs):
        seen.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(client, "create_collection", spy)
    QdrantIndex(client, "sharded", model=tiny_model,
                create_options={"shard_number": 4, "replication_factor": 2})
    assert (seen["shard_number"], seen["replication_factor"]) == (4, 2)


def test_bad_client_arguments(tiny_model):
    with pytest.raises(InvalidInputError, match="async_client"):
        QdrantIndex(AsyncQdrantClient(":memory:"), "docs", model=tiny_model)
    with pytest.raises(InvalidInputError, match="collection_name"):
        QdrantIndex(":memory:", "", model=tiny_model)
    with pytest.raises(InvalidInputError, match="client must be"):
        QdrantIndex(42, "docs", model=tiny_model)
    with pytest.raises(InvalidInputError, match="separate data"):
        QdrantIndex(QdrantClient(":memory:"), "docs", model=tiny_model,
                    async_client=AsyncQdrantClient(":memory:"))
    with pytest.raises(InvalidInputError, match="same Qdrant"):
        QdrantIndex(QdrantClient(":memory:"), "docs", model=tiny_model,
                    async_client=AsyncQdrantClient(url="http://127.0.0.1:9",
                                                   check_compatibility=False))
    with pytest.raises(InvalidInputError, match="api_key"):
        QdrantIndex(":memory:", "docs", model=tiny_model, api_key="secret")
    with pytest.raises(InvalidInputError, match="api_key"):
        QdrantIndex(QdrantClient(":memory:"), "docs", model=tiny_model, api_key="secret")


def test_without_qdrant_client_the_error_names_the_extra(monkeypatch, tiny_model):
    monkeypatch.setitem(sys.modules, "qdrant_client", None)
    with pytest.raises(ImportError, match=re.escape('pip install "colbridge[qdrant]"')):
        QdrantIndex(":memory:", "docs", model=tiny_model)


def test_server_failures_are_wrapped_with_the_cause(index, client):
    client.delete_collection("docs")
    with pytest.raises(BackendError, match="query_points on collection 'docs'") as caught:
        index.search("alpha", k=3)
    assert caught.value.__cause__ is not None


def test_an_unreachable_server_fails_with_a_hint(tiny_model):
    unreachable = QdrantClient(url="http://127.0.0.1:9", check_compatibility=False)
    with pytest.raises(BackendError, match="reachable") as caught:
        QdrantIndex(unreachable, "docs", model=tiny_model)
    assert "127.0.0.1:9" in str(caught.value)


def test_closing_leaves_a_passed_client_open(index, client):
    index.close()
    with pytest.raises(IndexClosedError, match="closed"):
        index.count()
    assert client.count("docs").count == 40


async def test_a_closed_index_refuses_async_calls_too(tiny_model):
    client, async_client = QdrantClient(":memory:"), AsyncQdrantClient(":memory:")
    async_client._client.collections = client._client.collections
    for index in (QdrantIndex(client, "docs", model=tiny_model, async_client=async_client),
                  QdrantIndex(":memory:", "docs", model=tiny_model)):
        await index.aclose()
        with pytest.raises(IndexClosedError, match="closed"):
            await index.acount()
        with pytest.raises(IndexClosedError, match="closed"):
            await index.asearch("alpha", k=3)


def test_upserts_are_split_into_bounded_requests(client, tiny_model, monkeypatch):
    monkeypatch.setattr(qdrant_module, "UPSERT_TOKENS", 40)
    calls = []
    original = client.upsert
    monkeypatch.setattr(client, "upsert",
                        lambda **kw: calls.append(len(kw["points"])) or original(**kw))
    index = QdrantIndex(client, "docs", model=tiny_model)
    texts, ids, _ = synthetic_docs(30)
    index.add(texts, ids=ids)
    assert len(calls) > 3 and sum(calls) == 30
    assert index.count() == 30 and [d.id for d in index.get(ids)] == ids


# -- local folders ----------------------------------------------------------------------------
def test_a_local_folder_persists_and_is_locked_while_open(tmp_path, tiny_model):
    folder = tmp_path / "qdrant"
    texts, ids, metadatas = synthetic_docs(12)
    with QdrantIndex(folder, "docs", model=tiny_model) as index:
        index.add(texts, ids=ids, metadatas=metadatas)
        before = [(h.id, h.score) for h in index.search("alpha river", k=5)]
        with pytest.raises(IndexLockedError, match="another client"):
            QdrantIndex(folder, "docs", model=tiny_model)
    with QdrantIndex(str(folder), "docs", model=tiny_model) as reopened:
        assert reopened.count() == 12
        assert [(h.id, h.score) for h in reopened.search("alpha river", k=5)] == before


# -- the first-stage option -------------------------------------------------------------------
def test_prefetch_covering_the_collection_equals_exact_search(index):
    exact = index.search("alpha river forest", k=10)
    staged = index.search("alpha river forest", k=10, prefetch=40)
    assert [(h.id, h.score) for h in staged] == [(h.id, h.score) for h in exact]


def test_prefetch_ranks_its_candidates_by_exact_maxsim(index, tiny_model):
    query = "omega desert mountain"
    embedding = tiny_model.encode_query(query)
    exact = {h.id: h.score for h in index.search(query, k=40)}
    docs = index.get([f"d{i}" for i in range(40)])
    mean_query = pooled(embedding)
    by_pooled = sorted(
        docs, key=lambda d: -float(pooled(tiny_model.encode_documents([d.text])[0]) @ mean_query))
    hits = index.search(query, k=3, prefetch=5)
    assert {h.id for h in hits} <= {d.id for d in by_pooled[:5]}
    assert len(hits) == 3
    for hit in hits:
        assert hit.score == pytest.approx(exact[hit.id], abs=1e-5)
    assert [h.id for h in index.search(query, k=1, prefetch=1)] == [by_pooled[0].id]


def test_prefetch_smaller_than_k_still_returns_k(index):
    assert len(index.search("alpha", k=8, prefetch=2)) == 8


def test_prefetch_with_a_filter_returns_k_matching_hits(index):
    hits = index.search("alpha river", k=6, filter={"even": True}, prefetch=6)
    assert len(hits) == 6 and all(h.metadata["even"] is True for h in hits)


def test_default_search_options_come_from_the_constructor(client, tiny_model):
    index = QdrantIndex(client, "docs", model=tiny_model,
                        search_options=QdrantSearchOptions(prefetch=1))
    texts, ids, _ = synthetic_docs(20)
    index.add(texts, ids=ids)
    assert len(index.search("alpha", k=5)) == 5
    assert [h.id for h in index.search("alpha", k=1)] == [
        h.id for h in index.search("alpha", k=1, prefetch=1)]


@pytest.mark.parametrize("options", [{"prefetch": -1}, {"prefetch": "10"}, {"prefetch": True},
                                     {"ef": 0}, {"token_k": 10}])
def test_bad_search_options_are_refused(index, options):
    with pytest.raises(InvalidInputError):
        index.search("alpha", k=3, **options)


# -- async --------------------------------------------------------------------------------------
async def test_async_methods_run_on_the_async_client(tiny_model, monkeypatch):
    client, async_client = QdrantClient(":memory:"), AsyncQdrantClient(":memory:")
    async_client._client.collections = client._client.collections  # one store, two clients
    index = QdrantIndex(client, "docs", model=tiny_model, async_client=async_client)

    def refuse(*args, **kwargs):
        raise AssertionError("the sync client was used by an async method")

    texts, ids, metadatas = synthetic_docs(10)
    for method in ("upsert", "retrieve", "delete", "count", "query_points",
                   "query_points_groups"):
        monkeypatch.setattr(client, method, refuse)
    assert await index.aadd(texts, ids=ids, metadatas=metadatas) == ids
    assert await index.acount() == 10
    assert [d.id for d in await index.aget(["d4", "d2"])] == ["d4", "d2"]
    hits = await index.asearch("alpha", k=4, filter={"even": True}, prefetch=5)
    assert len(hits) == 4 and all(h.metadata["even"] for h in hits)
    assert await index.adelete(["d1", "ghost"], missing_ok=True) == 1
    monkeypatch.undo()
    assert index.count() == 9
    await index.aclose()


async def test_encoded_async_paths_run_on_the_async_client(tiny_model, monkeypatch):
    client, async_client = QdrantClient(":memory:"), AsyncQdrantClient(":memory:")
    async_client._client.collections = client._client.collections  # one store, two clients
    index = QdrantIndex(client, "docs", model=tiny_model, async_client=async_client)
    texts, ids, metadatas = synthetic_docs(8)
    embeddings = tiny_model.encode_documents(texts)
    query = tiny_model.encode_query("alpha river")

    def refuse(*args, **kwargs):
        raise AssertionError("the sync client was used by an async method")

    awaited = []
    for method in ("upsert", "query_points"):
        monkeypatch.setattr(client, method, refuse)
        original = getattr(async_client, method)

        async def spy(*args, _original=original, _method=method, **kwargs):
            awaited.append(_method)
            return await _original(*args, **kwargs)

        monkeypatch.setattr(async_client, method, spy)
    assert await index.aadd_encoded(embeddings, texts, ids=ids, metadatas=metadatas) == ids
    hits = await index.asearch_encoded(query, k=3, filter={"even": True})
    assert awaited == ["upsert", "query_points"]
    monkeypatch.undo()
    assert [(h.id, h.score) for h in hits] == [
        (h.id, h.score) for h in index.search_encoded(query, k=3, filter={"even": True})]
    await index.aclose()


async def test_local_mode_without_an_async_client_works_in_threads(tiny_model):
    async with QdrantIndex(":memory:", "docs", model=tiny_model) as index:
        assert index.async_client is None
        texts, ids, _ = synthetic_docs(6)
        await index.aadd(texts, ids=ids)
        assert await index.acount() == 6
        assert len(await index.asearch("alpha", k=3)) == 3


async def test_local_mode_async_calls_keep_the_loop_running(tiny_model, monkeypatch):
    async with QdrantIndex(":memory:", "docs", model=tiny_model) as index:
        texts, ids, _ = synthetic_docs(6)
        index.add(texts, ids=ids)
        run = index._run

        def slow(plan):
            time.sleep(0.3)  # a slow local-mode client call: it blocks its thread, not the loop
            return run(plan)

        monkeypatch.setattr(index, "_run", slow)
        query = tiny_model.encode_query("alpha")
        ticks, hits = await _ticks_during(index.asearch_encoded(query, k=3))
        assert len(hits) == 3 and ticks >= 20


# -- migration ----------------------------------------------------------------------------------
@pytest.fixture
def source(tmp_path, tiny_model):
    """An embedded index of 55 documents that has seen deletes and upserts."""
    path = tmp_path / "embedded"
    texts, ids, metadatas = synthetic_docs(60, seed=7)
    # float16: the rankings compared below hold near-ties that int8 codes may order differently
    with EmbeddedIndex(path, model=tiny_model, codec="float16") as index:
        index.add(texts, ids=ids, metadatas=metadatas)
        index.delete(["d0", "d11", "d22", "d33", "d44"])
        index.add(["replaced text about the ocean"], ids=["d5"], metadatas=[{"group": "new"}])
    return path


def _results(index, queries):
    return {(q, str(f)): [(h.id, h.score, h.text, h.metadata)
                          for h in index.search(q, k=55, filter=f)]
            for q, f in queries}


QUERIES = [("alpha river", None), ("ocean replaced", None), ("theta sigma", {"even": True}),
           ("forest", {"n": {"$gte": 30}})]


def _assert_same_results(before, after):
    assert before.keys() == after.keys()
    for key in before:
        assert [(i, t, m) for i, _, t, m in after[key]] == [(i, t, m) for i, _, t, m in before[key]]
        np.testing.assert_allclose([s for _, s, _, _ in after[key]],
                                   [s for _, s, _, _ in before[key]], atol=1e-4)


def test_migration_keeps_ids_texts_metadata_and_scores(source, tmp_path, tiny_model):
    with EmbeddedIndex(source, model=tiny_model) as embedded:
        before = _results(embedded, QUERIES)
    seen = []
    result = migrate_index(source, f"qdrant+local://{tmp_path}/qdrant/docs", batch_size=16,
                           progress=lambda done, total: seen.append((done, total)))
    assert (result.copied, result.skipped, result.total) == (55, 0, 55)
    assert seen[-1] == (55, 55) and len(seen) == 4
    with QdrantIndex(tmp_path / "qdrant", "docs", model=tiny_model) as target:
        assert target.count() == 55
        _assert_same_results(before, _results(target, QUERIES))


def test_an_interrupted_migration_resumes(source, tmp_path, tiny_model, monkeypatch):
    url = f"qdrant+local://{tmp_path}/qdrant/docs"
    calls = []
    original = QdrantIndex._upsert

    def flaky(self, *args):
        calls.append(len(args[0]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(QdrantIndex, "_upsert", flaky)
    with pytest.raises(KeyboardInterrupt):
        migrate_index(source, url, batch_size=10)
    monkeypatch.undo()
    with QdrantIndex(tmp_path / "qdrant", "docs") as partial:
        assert partial.count() == 20
    result = migrate_index(source, url, batch_size=10)
    assert (result.copied, result.skipped, result.total) == (35, 20, 55)
    with EmbeddedIndex(source, model=tiny_model) as embedded:
        before = _results(embedded, QUERIES)
    with QdrantIndex(tmp_path / "qdrant", "docs", model=tiny_model) as target:
        assert target.count() == 55
        _assert_same_results(before, _results(target, QUERIES))
    again = migrate_index(source, url)
    assert (again.copied, again.skipped) == (0, 55)


def test_migration_into_a_collection_of_another_model_is_refused(source, tmp_path):
    QdrantIndex(tmp_path / "qdrant", "docs", _Shaped("another-model", 16)).close()
    with pytest.raises(IndexMismatchError, match="another-model"):
        migrate_index(source, f"qdrant+local://{tmp_path}/qdrant/docs")


def test_migrating_into_an_open_index(source, client, tiny_model):
    target = QdrantIndex(client, "docs", model=tiny_model)
    assert migrate_index(source, target).copied == 55
    assert target.count() == 55


def test_migration_from_qdrant_into_an_embedded_index(source, client, tmp_path, tiny_model):
    qdrant = QdrantIndex(client, "docs", model=tiny_model)
    migrate_index(source, qdrant)
    before = _results(qdrant, QUERIES)
    with EmbeddedIndex(tmp_path / "copy", model=tiny_model, codec="float16") as copy:
        result = migrate_index(qdrant, copy, batch_size=16)
        assert (result.copied, result.skipped, result.total) == (55, 0, 55)
        _assert_same_results(before, _results(copy, QUERIES))
        stored = {d.id: d.vectors for d in qdrant.export()}
        copied = {d.id: d.vectors for d in copy.export()}
        assert copied.keys() == stored.keys()
        for doc_id, vectors in copied.items():
            np.testing.assert_allclose(vectors, stored[doc_id], atol=1e-3)
        assert migrate_index(qdrant, copy).skipped == 55
    assert qdrant.count() == 55  # an index given open is left open


@pytest.mark.parametrize(("url", "location", "collection"), [
    ("qdrant://localhost/docs", "http://localhost:6333", "docs"),
    ("qdrant://qdrant.internal:7000/my-docs", "http://qdrant.internal:7000", "my-docs"),
    ("qdrants://xyz.cloud.qdrant.io:6333/docs", "https://xyz.cloud.qdrant.io:6333", "docs"),
    ("qdrant://[::1]:6333/docs", "http://[::1]:6333", "docs"),
    ("qdrant+local:///var/lib/qdrant/docs", "/var/lib/qdrant", "docs"),
    ("qdrant+local:data/qdrant/docs", "data/qdrant", "docs"),
])
def test_target_urls(url, location, collection):
    assert QdrantTarget.parse(url) == QdrantTarget(location, collection)


@pytest.mark.parametrize("url", ["http://localhost:6333/docs", "qdrant://localhost", "qdrant:///docs",
                                 "qdrant://host:99999/docs", "qdrant://key:secret@host/docs",
                                 "qdrant://host/a/b", "qdrant+local:docs", "docs"])
def test_bad_target_urls_are_refused(url):
    with pytest.raises(InvalidInputError):
        QdrantTarget.parse(url)


def test_cli_migrate_then_resume(source, tmp_path):
    runner = CliRunner()
    url = f"qdrant+local://{tmp_path}/qdrant/docs"
    first = runner.invoke(app, ["migrate", "--from", str(source), "--to", url,
                                "--batch-size", "20"])
    assert first.exit_code == 0, first.output
    assert "Copied 55 documents" in first.output and "0 of 55 were there already" in first.output
    second = runner.invoke(app, ["migrate", "--from", str(source), "--to", url],
                           env={"QDRANT_API_KEY": "for servers only"})
    assert second.exit_code == 0, second.output
    assert "Copied 0 documents" in second.output and "55 of 55" in second.output
    bad = runner.invoke(app, ["migrate", "--from", str(source), "--to", "mongodb://x/y"])
    assert bad.exit_code == 1 and "unknown migration target" in bad.output


# -- measured: the first stage's recall on SciFact (slow) -----------------------------------------
SCIFACT = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "scifact"
PREFETCH = (10, 20, 50, 100, 200, 500, 1000)


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.timeout(3600)
def test_first_stage_recall_on_scifact(tmp_path, offline_model):
    """Recall@10 of ``prefetch=N`` (k=10) against exact MaxSim on 1,000 SciFact documents.

    Run: ``uv run pytest tests/core/index/test_qdrant.py -m slow -s``. It prints the table
    quoted in docs/scaling.md, and the embedded index's bytes per token vector.
    """
    from colbridge.evaluation import agreement_at, load_beir, quality

    data = load_beir(SCIFACT, limit_docs=1000, limit_queries=100)
    embeddings, encode_s = _scifact_embeddings(offline_model, data)
    source = tmp_path / "embedded"
    with EmbeddedIndex(source, model=offline_model) as embedded:
        embedded.add_encoded(embeddings, data.doc_texts, ids=data.doc_ids)
        embedded.flush()
        stats = embedded.stats()
    started = time.perf_counter()
    result = migrate_index(source, f"qdrant+local://{tmp_path}/qdrant/scifact")
    migrate_s = time.perf_counter() - started
    assert result.copied == len(data.doc_ids)

    queries = {qid: offline_model.encode_query(text) for qid, text in data.queries.items()}
    with EmbeddedIndex(source, model=offline_model) as embedded, \
            QdrantIndex(tmp_path / "qdrant", "scifact", model=offline_model) as index:
        exact = {qid: index.search_encoded(q, k=10) for qid, q in queries.items()}
        for qid, q in list(queries.items())[:20]:  # the backends agree on real data too
            reference = embedded.search_encoded(q, k=10, exact_threshold=100_000)
            assert [h.id for h in reference] == [h.id for h in exact[qid][:10]]
            np.testing.assert_allclose([h.score for h in reference],
                                       [h.score for h in exact[qid][:10]], atol=1e-3)
        exact_runs = {qid: [h.id for h in hits] for qid, hits in exact.items()}
        rows = []
        for n in PREFETCH:
            runs = {qid: [h.id for h in index.search_encoded(q, k=10, prefetch=n)]
                    for qid, q in queries.items()}
            missed = sum(len(set(exact_runs[qid]) - set(run)) for qid, run in runs.items())
            rows.append((n, agreement_at(runs, exact_runs, 10), missed,
                         quality(runs, data.qrels)["ndcg@10"]))

    tokens = stats["token_vectors"]
    vectors_bytes = sum(v for k, v in stats["files"].items() if k.startswith("vectors-"))
    graph_bytes = sum(v for k, v in stats["files"].items() if k.startswith("graph-"))
    print(f"\nSciFact: {len(data.doc_ids)} documents, {tokens:,} token vectors "
          f"({tokens / len(data.doc_ids):.0f} per document), {len(queries)} queries, "
          f"{offline_model.name} ({offline_model.dimension}-d); encoding {encode_s:.0f} s "
          "(when not cached), "
          f"migration {migrate_s:.1f} s")
    print(f"embedded index: {vectors_bytes / tokens:.0f} B/token vector in vectors-*.f16, "
          f"{graph_bytes / tokens:.0f} B/token vector in the graph checkpoint, "
          f"{stats['bytes_on_disk'] / tokens:.0f} B/token vector on disk in all")
    print(f"exact MaxSim nDCG@10 {quality(exact_runs, data.qrels)['ndcg@10']:.4f}")
    print("prefetch  recall@10  exact top-10 hits missed (of 1000)  nDCG@10")
    for n, r10, missed, ndcg in rows:
        print(f"{n:>8}  {r10:9.3f}  {missed:33d}  {ndcg:7.4f}")
    opened_mb = _rss_of_opening(source)
    print(f"opening the embedded index takes {opened_mb:.1f} MB of RAM "
          f"({opened_mb * 1e6 / tokens:.0f} B/token vector: graph and row map; the float16 "
          "vectors are memory-mapped)")
    recalls = [r10 for _, r10, _, _ in rows]
    assert recalls[-1] == 1.0  # prefetching every document is exact search
    assert recalls == sorted(recalls)  # a wider first stage never loses a document
    assert 0.0 < recalls[0] < 1.0


def _scifact_embeddings(model, data):
    """The documents' token vectors, cached under COLBRIDGE_CACHE_DIR: encoding takes minutes."""
    import hashlib
    import os

    key = hashlib.sha1("\n".join([model.name, *data.doc_ids]).encode()).hexdigest()[:16]
    cache = Path(os.environ["COLBRIDGE_CACHE_DIR"]) / f"scifact-embeddings-{key}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as stored:
            lengths, packed, seconds = stored["lengths"], stored["packed"], float(stored["seconds"])
        return np.split(packed, np.cumsum(lengths)[:-1]), seconds
    started = time.perf_counter()
    embeddings = model.encode_documents(data.doc_texts, show_progress=False)
    seconds = time.perf_counter() - started
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, lengths=np.array([len(e) for e in embeddings]),
             packed=np.concatenate(embeddings), seconds=np.array(seconds))
    return embeddings, seconds


def _rss_of_opening(path) -> float:
    """Resident memory (MB) that opening an embedded index adds, measured in a fresh process."""
    import subprocess

    code = (
        "import sys, pathlib, colbridge\n"
        "from colbridge import ColBERTModel, EmbeddedIndex\n"
        "from colbridge.index.manifest import Manifest\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "path = pathlib.Path(sys.argv[1])\n"
        "model = ColBERTModel(Manifest.read(path).model.name)\n"
        "before = rss(); index = EmbeddedIndex(path, model=model, create=False)\n"
        "index._snap.counts.sum(); print((rss() - before) / 1e6)\n"
    )
    if not Path("/proc/self/statm").exists():
        return float("nan")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.split()[-1])


class _Shaped(Encoder):
    """An encoder known by name and shape only: it creates collections, it never encodes."""

    def __init__(self, name: str, dimension: int) -> None:
        super().__init__(name=name)
        self._dimension = dimension

    dimension = property(lambda self: self._dimension)
    query_length = property(lambda self: 32)
    document_length = property(lambda self: 300)

    def _encode(self, texts, *, is_query, pool_factor=1, show_progress=False):
        raise AssertionError("not expected to encode")


def test_migration_copies_passages_as_passages(tmp_path, tiny_model):
    text = " ".join(f"river{i % 11} stone{i % 5}" for i in range(150)) + " violet beacon"
    with EmbeddedIndex(tmp_path / "source", model=tiny_model, codec="float16") as embedded:
        embedded.add([text, "a short one"], ids=["long", "short"])
        layout = embedded._passages(["long"])["long"]
        before = [(h.id, h.passage, h.score) for h in embedded.search("violet beacon", k=2)]
    assert len(layout) > 1
    result = migrate_index(tmp_path / "source", f"qdrant+local://{tmp_path}/qdrant/docs")
    assert result.copied == 2
    with QdrantIndex(tmp_path / "qdrant", "docs", model=tiny_model) as target:
        assert target.long_documents == "split" and target.count() == 2
        assert target._passages(["long"])["long"] == layout
        after = [(h.id, h.passage, h.score) for h in target.search("violet beacon", k=2)]
    assert [(i, p) for i, p, _ in after] == [(i, p) for i, p, _ in before]
    assert [s for *_, s in after] == pytest.approx([s for *_, s in before], abs=1e-3)


def test_a_format_1_collection_opens_as_truncating(client, tiny_model):
    index = QdrantIndex(client, "docs", model=tiny_model, long_documents="truncate")
    index.close()
    meta = client.get_collection("docs").config.metadata["colbridge"]
    client.update_collection("docs", metadata={"colbridge": {
        **{k: v for k, v in meta.items() if k != "long_documents"}, "format_version": 1}})
    with QdrantIndex(client, "docs", model=tiny_model) as old:
        assert old.long_documents == "truncate"
    with pytest.raises(IndexMismatchError, match="long_documents='truncate'"):
        QdrantIndex(client, "docs", model=tiny_model, long_documents="split")
