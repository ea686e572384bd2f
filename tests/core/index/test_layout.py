"""The folder layout: one owner of file names, their parser, the stale rule and atomic writes."""

from __future__ import annotations

import pytest
from colbridge import EmbeddedIndex
from colbridge.check import check_index
from colbridge.index import layout

from .conftest import synthetic_docs


@pytest.mark.parametrize("name, parsed", [
    (layout.vector_file_name(3), layout.FileName("vectors", 3, extension="f16")),
    (layout.vector_file_name(0, "res"), layout.FileName("vectors", 0, extension="res")),
    (layout.graph_file_name(2, 8263), layout.FileName("graph", 2, rows=8263)),
    (layout.means_file_name(2, 8263), layout.FileName("means", 2, rows=8263)),
    (layout.lexical_folder_name(122), layout.FileName("lexical", None, rows=122)),
])
def test_every_name_the_layout_builds_parses_back(name, parsed):
    assert layout.parse(name) == parsed


@pytest.mark.parametrize("name", [
    "vectors-1.f16.bak", "graph-1.voy", "means-a-3.npz", "lexical-", "lexical-3.tmp",
    ".graph-1-5.voy.tmp-123", "manifest.json", "documents.sqlite-wal", "write.lock",
])
def test_other_names_are_not_index_files(name):
    assert layout.parse(name) is None


def test_names_match_the_documented_folder(sample_index_path):
    names = {p.name for p in sample_index_path.iterdir()}
    assert {layout.MANIFEST, layout.DOCUMENTS, layout.LOCK} <= names
    kinds = {layout.parse(n).kind for n in names if layout.parse(n) is not None}
    assert kinds == {"vectors", "graph", "means", "lexical"}


def test_files_of_lists_newest_first(tmp_path):
    for name in ["graph-0-10.voy", "graph-1-5.voy", "graph-1-20.voy", "means-1-5.npz"]:
        (tmp_path / name).write_bytes(b"")
    found = [path.name for _, path in layout.files_of(tmp_path, layout.GRAPH)]
    assert found == ["graph-1-20.voy", "graph-1-5.voy", "graph-0-10.voy"]


def _plant(folder, names):
    for name in names:
        (folder / name).write_bytes(b"x")


def test_stale_files_with_and_without_the_writers_files(tmp_path):
    current = ["vectors-2.f16", "graph-2-40.voy", "means-2-40.npz", "lexical-9"]
    old = ["vectors-1.f16", "graph-1-30.voy", "means-1-30.npz"]
    superseded = ["graph-2-20.voy", "means-2-20.npz"]
    temporary = [".graph-2-60.voy.tmp-77-1", ".manifest.json.tmp-5-6"]
    _plant(tmp_path, current + old + superseded + temporary + ["manifest.json", "write.lock"])

    with_keep = layout.stale_files(tmp_path, 2, keep=set(current[:3]))
    assert sorted(p.name for p in with_keep) == sorted(old + superseded + temporary)
    # Without the writer's files (check): the committed generation's checkpoints and means are
    # judged by loading them, so only other generations' vectors and graphs and temporaries.
    without = layout.stale_files(tmp_path, 2)
    assert sorted(p.name for p in without) == sorted(
        ["vectors-1.f16", "graph-1-30.voy", *temporary])


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with layout.atomic_file(target) as scratch:
        assert layout.is_temporary(scratch.name) and scratch.parent == tmp_path
        scratch.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # readers see the old file until the rename
    assert target.read_bytes() == b"new"

    with pytest.raises(RuntimeError), layout.atomic_file(target) as scratch:
        scratch.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_check_and_the_writer_agree_on_leftovers(tmp_path, tiny_model):
    path = tmp_path / "ix"
    texts, ids, _ = synthetic_docs(30)
    with EmbeddedIndex(path, model=tiny_model) as index:
        index.add(texts, ids=ids)
    planted = ["vectors-7.f16", "graph-7-10.voy", ".means-0-5.npz.tmp-1-2"]
    _plant(path, planted)

    report = check_index(path)
    assert report.ok
    noted = [name for name in planted if any(note.startswith(name) for note in report.notes)]
    assert noted == planted
    with EmbeddedIndex(path, model=tiny_model) as index:
        index.delete(ids[:2])
        index.compact()  # removes what the layout calls stale
    assert not [name for name in planted if (path / name).exists()]
    assert not check_index(path).notes
