"""How the Qdrant backend stores token vectors: the ``storage`` option, its record in the
collection metadata and the rules for opening a collection with it.

qdrant-client's local mode keeps the datatype in the collection's configuration but scores in
NumPy whatever it says, so these tests check the layout and the rules; what each datatype costs
and keeps is measured with Qdrant's engine by tests/benchmarks/bench_qdrant_storage.py.
"""

from __future__ import annotations

import pytest
from colbridge import (
    BackendError,
    EmbeddedIndex,
    IndexCorruptError,
    IndexMismatchError,
    InvalidInputError,
    QdrantIndex,
)
from colbridge.cli import app
from colbridge.migrate import migrate_index
from typer.testing import CliRunner

from .conftest import synthetic_docs

qdrant_client = pytest.importorskip("qdrant_client")
from qdrant_client import QdrantClient, models  # noqa: E402


def _recorded(client: QdrantClient, name: str = "docs") -> tuple[str | None, object]:
    config = client.get_collection(name).config
    return config.metadata["colbridge"].get("storage"), config.params.vectors["colbert"].datatype


@pytest.mark.parametrize("value", ["turbo4", "uint8", "FLOAT16", "", 8, True])
def test_an_unknown_storage_is_refused_before_anything_is_created(client, tiny_model, value):
    with pytest.raises(InvalidInputError, match="storage must be one of 'turbo8', 'float16'"):
        QdrantIndex(client, "docs", model=tiny_model, storage=value)
    assert not client.collection_exists("docs")


def test_a_new_collection_stores_turbo8_by_default(client, tiny_model):
    with QdrantIndex(client, "docs", model=tiny_model) as index:
        assert index.storage == "turbo8"
    assert _recorded(client) == ("turbo8", models.Datatype.TURBO8)


def test_float16_storage_is_recorded_and_laid_out(client, tiny_model):
    with QdrantIndex(client, "docs", model=tiny_model, storage="float16") as index:
        assert index.storage == "float16"
    assert _recorded(client) == ("float16", models.Datatype.FLOAT16)


@pytest.mark.parametrize(("built", "asked"), [("turbo8", "float16"), ("float16", "turbo8")])
def test_reopening_keeps_the_storage_and_refuses_another(client, tiny_model, built, asked):
    texts, ids, metadatas = synthetic_docs(10)
    with QdrantIndex(client, "docs", model=tiny_model, storage=built) as index:
        index.add(texts, ids=ids, metadatas=metadatas)
    with QdrantIndex(client, "docs") as reopened:
        assert reopened.storage == built and reopened.count() == 10
    with QdrantIndex(client, "docs", storage=built) as same:
        assert same.storage == built
    with pytest.raises(IndexMismatchError) as refused:
        QdrantIndex(client, "docs", model=tiny_model, storage=asked)
    message = str(refused.value)
    assert f"as {built}, not {asked}" in message and f"storage={built!r}" in message
    assert _recorded(client)[0] == built  # nothing was changed by the refused open
    with QdrantIndex(client, "docs") as after:
        assert after.count() == 10


def test_a_collection_without_a_recorded_storage_opens_as_float16(client, tiny_model):
    # Collections made before this option: float16 vectors and no "storage" in the metadata.
    with QdrantIndex(client, "docs", model=tiny_model, storage="float16") as index:
        index.add(["an older collection"], ids=["a"])
    meta = client.get_collection("docs").config.metadata["colbridge"]
    client.update_collection("docs", metadata={"colbridge": {
        k: v for k, v in meta.items() if k != "storage"}})
    assert _recorded(client)[0] is None
    with QdrantIndex(client, "docs", model=tiny_model) as old:
        assert old.storage == "float16" and old.get(["a"])[0].text == "an older collection"
    with QdrantIndex(client, "docs", model=tiny_model, storage="float16") as old:
        assert old.count() == 1
    with pytest.raises(IndexMismatchError, match="as float16, not turbo8"):
        QdrantIndex(client, "docs", model=tiny_model, storage="turbo8")


def test_an_unknown_recorded_storage_is_reported_as_corrupt(client, tiny_model):
    QdrantIndex(client, "docs", model=tiny_model).close()
    meta = client.get_collection("docs").config.metadata["colbridge"]
    client.update_collection("docs", metadata={"colbridge": {**meta, "storage": "float8"}})
    with pytest.raises(IndexCorruptError, match="unknown storage 'float8'"):
        QdrantIndex(client, "docs", model=tiny_model)


def test_a_server_refusing_turbo8_gets_the_float16_hint(client, tiny_model, monkeypatch):
    def refuse(**kwargs):
        raise RuntimeError("Unknown datatype turbo8")

    monkeypatch.setattr(client, "create_collection", refuse)
    with pytest.raises(BackendError, match=r"Unknown datatype turbo8.*storage='float16'") as hint:
        QdrantIndex(client, "docs", model=tiny_model)
    assert isinstance(hint.value.__cause__, RuntimeError)  # the client's own error
    with pytest.raises(BackendError) as plain:
        QdrantIndex(client, "docs", model=tiny_model, storage="float16")
    assert "TurboQuant" not in str(plain.value)


@pytest.mark.parametrize("storage", ["turbo8", "float16"])
def test_passages_work_on_either_storage(client, tiny_model, storage):
    text = " ".join(f"river{i % 11} stone{i % 5}" for i in range(150)) + " violet beacon"
    with QdrantIndex(client, "docs", model=tiny_model, storage=storage) as index:
        index.add([text, "a short one"], ids=["long", "short"])
        layout = index._passages(["long"])["long"]
        hits = index.search("violet beacon", k=2)
        assert len(layout) > 1 and index.count() == 2
        assert {h.id for h in hits} == {"long", "short"}
        (long_hit,) = [h for h in hits if h.id == "long"]
        assert long_hit.passage in {(p.start, p.end) for p in layout}
        index.delete(["long"])
        assert index.count() == 1
        assert client.count("docs").count == 1  # every passage point of "long" went


def test_migration_creates_the_storage_asked_for(tmp_path, tiny_model):
    with EmbeddedIndex(tmp_path / "source", model=tiny_model) as embedded:
        texts, ids, metadatas = synthetic_docs(5)
        embedded.add(texts, ids=ids, metadatas=metadatas)
    migrate_index(tmp_path / "source", f"qdrant+local://{tmp_path}/qdrant/docs",
                  storage="float16")
    with QdrantIndex(tmp_path / "qdrant", "docs") as target:
        assert target.storage == "float16" and target.count() == 5
    with pytest.raises(IndexMismatchError, match="as float16, not turbo8"):
        migrate_index(tmp_path / "source", f"qdrant+local://{tmp_path}/qdrant/docs",
                      storage="turbo8")


def test_cli_migrate_takes_the_storage(tmp_path, tiny_model):
    with EmbeddedIndex(tmp_path / "source", model=tiny_model) as embedded:
        embedded.add(["one text", "another text"], ids=["a", "b"])
    url = f"qdrant+local://{tmp_path}/qdrant/docs"
    runner = CliRunner()
    bad = runner.invoke(app, ["migrate", "--from", str(tmp_path / "source"), "--to", url,
                              "--storage", "float8"])
    assert bad.exit_code == 1 and "storage must be one of" in bad.output
    done = runner.invoke(app, ["migrate", "--from", str(tmp_path / "source"), "--to", url,
                               "--storage", "float16"])
    assert done.exit_code == 0, done.output
    with QdrantIndex(tmp_path / "qdrant", "docs") as target:
        assert target.storage == "float16" and target.count() == 2
