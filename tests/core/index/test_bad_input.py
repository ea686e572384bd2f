"""Bad input gets a typed error and leaves the index exactly as it was."""

from __future__ import annotations

import json

import pytest

from colbridge import (
    ColbridgeError,
    DocumentNotFoundError,
    EmbeddedIndex,
    IndexCorruptError,
    IndexLockedError,
    InvalidInputError,
)


def _fingerprint(index):
    return index.count(), [(h.id, round(h.score, 4)) for h in index.search("alpha river", k=5)]


WRITES = [
    ("empty text", lambda ix: ix.add(["fine", ""])),
    ("whitespace text", lambda ix: ix.add(["   \n\t"])),
    ("non-string text", lambda ix: ix.add(["fine", 42])),
    ("bytes text", lambda ix: ix.add([b"bytes"])),
    ("lone string", lambda ix: ix.add("not a list")),
    ("duplicate ids", lambda ix: ix.add(["a", "b"], ids=["x", "x"])),
    ("empty id", lambda ix: ix.add(["a"], ids=[""])),
    ("non-string id", lambda ix: ix.add(["a"], ids=[7])),
    ("too many ids", lambda ix: ix.add(["a"], ids=["x", "y"])),
    ("metadata not a dict", lambda ix: ix.add(["a"], metadatas=["meta"])),
    ("metadata not JSON", lambda ix: ix.add(["a"], metadatas=[{"when": object()}])),
    ("metadata NaN", lambda ix: ix.add(["a"], metadatas=[{"x": float("nan")}])),
    ("metadata too deep", lambda ix: ix.add(["a"], metadatas=[_deep(40)])),
    ("delete unknown id", lambda ix: ix.delete(["d1", "ghost"])),
    ("delete duplicate ids", lambda ix: ix.delete(["d1", "d1"])),
    ("get unknown id", lambda ix: ix.get(["ghost"])),
]

SEARCHES = [
    ("k zero", dict(k=0)),
    ("k negative", dict(k=-3)),
    ("k bool", dict(k=True)),
    ("k float", dict(k=2.5)),
    ("k absurd", dict(k=10**9)),
    ("unknown operator", dict(filter={"n": {"$where": "1"}})),
    ("filter not a dict", dict(filter="group = 'g1'")),
    ("unknown option", dict(beam=3)),
    ("bad option value", dict(token_k=0)),
]


def _deep(depth):
    value: dict = {}
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.mark.parametrize("name, write", WRITES, ids=[w[0] for w in WRITES])
def test_bad_writes_raise_typed_errors_and_change_nothing(small_index, name, write):
    before = _fingerprint(small_index)
    with pytest.raises(ColbridgeError) as info:
        write(small_index)
    assert isinstance(info.value, (InvalidInputError, DocumentNotFoundError))
    assert _fingerprint(small_index) == before


@pytest.mark.parametrize("name, kwargs", SEARCHES, ids=[s[0] for s in SEARCHES])
def test_bad_searches_raise_invalid_input(small_index, name, kwargs):
    with pytest.raises(InvalidInputError):
        small_index.search("alpha", **kwargs)


@pytest.mark.parametrize("query", ["", "  ", None, 5])
def test_bad_queries(small_index, query):
    with pytest.raises(InvalidInputError):
        small_index.search(query)


def test_sql_looking_ids_and_filters_are_just_data(small_index):
    evil = "x'); DROP TABLE documents; --"
    small_index.add(["robert tables"], ids=[evil], metadatas=[{evil: evil}])
    assert small_index.get([evil])[0].metadata == {evil: evil}
    assert [h.id for h in small_index.search("robert", k=3, filter={evil: evil})] == [evil]
    assert small_index.count() == 41


def test_second_writer_gets_a_lock_error(small_index):
    from filelock import FileLock

    other = EmbeddedIndex(small_index.path, model=small_index.model, lock_timeout=0.2)
    with FileLock(small_index.path / "write.lock"):
        with pytest.raises(IndexLockedError, match="locked"):
            other.add(["blocked"], ids=["blocked"])
        assert len(other.search("alpha", k=3)) == 3  # reading needs no lock
    other.add(["now fine"], ids=["later"])
    assert small_index.refresh() is True
    assert small_index.get(["later"])[0].text == "now fine"
    other.close()


# -- damaged and foreign folders -----------------------------------------------------------------
def test_foreign_folder_is_refused_and_left_alone(tmp_path, tiny_model):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(IndexCorruptError, match="not a colbridge index"):
        EmbeddedIndex(tmp_path, model=tiny_model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_path_that_is_a_file(tmp_path, tiny_model):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(IndexCorruptError, match="is a file"):
        EmbeddedIndex(target, model=tiny_model)


def test_missing_index_without_create(tmp_path, tiny_model):
    with pytest.raises(IndexCorruptError, match="no colbridge index"):
        EmbeddedIndex(tmp_path / "absent", model=tiny_model, create=False)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "manifest.json").write_text("{not json"), "not valid JSON"),
        (lambda p: (p / "manifest.json").write_text('{"format": "other"}'), "not a colbridge manifest"),
        (lambda p: _bump_version(p), "newer colbridge"),
        (lambda p: (p / "documents.sqlite").unlink(), "document store is missing"),
        (lambda p: (p / "documents.sqlite").write_bytes(b"garbage" * 100), "SQLite"),
        (lambda p: _truncate_vectors(p), "truncated"),
        (lambda p: (p / "vectors-0.u8").unlink(), "missing"),
        (lambda p: (p / "vectors-0.json").unlink(), "vectors-0.json is missing"),
        (lambda p: _garble_graph(p), "does not match the checksum"),
    ],
    ids=["garbage manifest", "foreign manifest", "future version", "no sqlite", "corrupt sqlite",
         "truncated vectors", "missing vectors", "missing codec parameters", "corrupt graph"],
)
def test_damaged_folders_raise_corrupt_errors(small_index, damage, message):
    small_index.close()
    for extra in small_index.path.glob("documents.sqlite-*"):
        extra.unlink()
    damage(small_index.path)
    with pytest.raises(IndexCorruptError, match=message):
        EmbeddedIndex(small_index.path, model=small_index.model)


def _bump_version(path):
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))


def _truncate_vectors(path):
    data = (path / "vectors-0.u8").read_bytes()
    (path / "vectors-0.u8").write_bytes(data[: len(data) // 2])


def _garble_graph(path):
    (graph,) = path.glob("graph-*.voy")
    graph.write_bytes(b"\0" * 64)
