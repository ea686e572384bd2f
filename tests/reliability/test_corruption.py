"""Damaged and foreign folders: a typed error naming the problem, `colbridge check` lists it,
and `colbridge check --repair` rebuilds whatever is only a cache (the graph).

tests/core/index/test_bad_input.py already opens a few damaged folders (garbage, foreign and
future manifests, no or garbage SQLite, truncated or missing vectors, a zeroed graph header);
this file adds the other damages, and runs the check and repair over all of them.
"""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest
from colbridge import EmbeddedIndex, IndexCorruptError, InvalidInputError
from colbridge.check import check_index
from colbridge.index.manifest import FORMAT_VERSION
from colbridge.cli import app
from typer.testing import CliRunner

from .conftest import SAMPLE_IDS, HashEncoder, build_sample_index, doc_text

IDS = SAMPLE_IDS


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A float16 folder (the cases below edit its ``.f16`` file); int8 ones follow them."""
    return build_sample_index(tmp_path_factory.mktemp("pristine") / "index", codec="float16")


@pytest.fixture
def damaged(pristine, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(pristine, path)
    return path


@pytest.fixture(scope="module")
def pristine_int8(tmp_path_factory):
    return build_sample_index(tmp_path_factory.mktemp("pristine-int8") / "index")


@pytest.fixture
def damaged_int8(pristine_int8, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(pristine_int8, path)
    return path


def _graph(path):
    (graph,) = path.glob("graph-*.voy")
    return graph


def _manifest(path, **changes):
    body = json.loads((path / "manifest.json").read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            body[section][field] = value
        elif value is None:
            del body[section]
        else:
            body[section] = value
    (path / "manifest.json").write_text(json.dumps(body))


def _means(path):
    (means,) = path.glob("means-*.npz")
    return means


def _narrow_means(path):
    np.savez(_means(path), doc_nos=np.arange(3, dtype=np.int64), means=np.zeros((3, 8), np.float16))


def _sql(path, statement):
    conn = sqlite3.connect(path / "documents.sqlite")
    conn.execute(statement)
    conn.commit()
    conn.close()


def _damage_page(path):
    data = bytearray((path / "documents.sqlite").read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle:middle + 4096] = b"\xff" * 4096
    (path / "documents.sqlite").write_bytes(bytes(data))


def _wrong_width_graph(path):
    import voyager

    other = voyager.Index(voyager.Space.InnerProduct, num_dimensions=8)
    other.add_items(np.eye(8, dtype=np.float32))
    target = _graph(path)
    target.unlink()
    other.save(str(target))


def _flip_bits(path, bits, seed):
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for position in rng.choice(len(data) * 8, size=bits, replace=False).tolist():
        data[position // 8] ^= 1 << (position % 8)
    path.write_bytes(bytes(data))


def _flip_a_vector_bit(path):
    """The least significant bit of one value of a live row: still a finite unit vector."""
    with open(path / "vectors-1.f16", "r+b") as f:
        f.seek(64 * 5000)
        low = f.read(1)[0]
        f.seek(64 * 5000)
        f.write(bytes([low ^ 1]))


def _zero_vectors(path):
    with open(path / "vectors-1.f16", "r+b") as f:
        f.seek(64 * 5000)  # rows of live documents (the first rows belong to deleted ones)
        f.write(b"\0" * 64 * 10)


# (name, damage, message on open or None when it still opens, problem reported by check,
#  whether --repair fixes it)
CASES = [
    ("graph truncated", lambda p: _graph(p).write_bytes(_graph(p).read_bytes()[:5000]),
     "checksum", "checksum", True),
    ("graph zeroed", lambda p: _graph(p).write_bytes(b"\0" * _graph(p).stat().st_size),
     "checksum", "checksum", True),
    ("graph empty", lambda p: _graph(p).write_bytes(b""), "checksum", "checksum", True),
    ("graph of another width", _wrong_width_graph, "checksum", "checksum", True),
    ("graph with three flipped bits", lambda p: _flip_bits(_graph(p), 3, seed=0),
     "checksum", "checksum", True),
    ("graph covering uncommitted rows",
     lambda p: shutil.copy(_graph(p), p / "graph-1-99999999.voy"), None, "covers 99999999", True),
    ("manifest empty", lambda p: (p / "manifest.json").write_text(""), "not valid JSON",
     "not valid JSON", False),
    ("manifest a list", lambda p: (p / "manifest.json").write_text("[1, 2]"),
     "not a colbridge manifest", "not a colbridge manifest", False),
    ("manifest without model", lambda p: _manifest(p, model=None), "incomplete or malformed",
     "incomplete or malformed", False),
    ("manifest negative dimension", lambda p: _manifest(p, model__dimension=-4),
     "incomplete or malformed", "incomplete or malformed", False),
    ("manifest unknown storage", lambda p: _manifest(p, graph__storage="int3"),
     "incomplete or malformed", "incomplete or malformed", False),
    ("manifest version as text", lambda p: _manifest(p, format_version="1"),
     "invalid format_version", "invalid format_version", False),
    ("manifest unknown pooling", lambda p: _manifest(p, graph__pooling="adjacent"),
     "incomplete or malformed", "incomplete or malformed", False),
    ("manifest from the future", lambda p: _manifest(p, format_version=FORMAT_VERSION + 1), "newer colbridge",
     "newer colbridge", False),
    ("manifest missing", lambda p: (p / "manifest.json").unlink(), "not a colbridge index",
     "not a colbridge index", False),
    ("sqlite page damaged", _damage_page, "damaged", "integrity check", False),
    ("sqlite empty", lambda p: (p / "documents.sqlite").write_bytes(b""), "SQLite",
     "lacks the documents or state table", False),
    ("sqlite garbage", lambda p: (p / "documents.sqlite").write_bytes(b"\x13" * 5000), "SQLite",
     "documents.sqlite", False),
    ("sqlite missing", lambda p: (p / "documents.sqlite").unlink(), "store is missing",
     "documents are gone", False),
    ("sqlite schema from the future",
     lambda p: _sql(p, "UPDATE state SET value = 2 WHERE key = 'schema_version'"),
     "schema version", "schema version", False),
    ("sqlite state row missing", lambda p: _sql(p, "DELETE FROM state WHERE key = 'generation'"),
     "lacks the state entry", "lacks the state entries", False),
    ("document past the vectors", lambda p: _sql(p, "UPDATE documents SET vec_start = 10000000 "
                                                 "WHERE id = 'doc-50'"),
     "past the end", "past the", False),
    ("overlapping documents", lambda p: _sql(p, "UPDATE documents SET vec_start = vec_start + 2 "
                                                "WHERE id = 'doc-50'"),
     None, "overlap", False),
    ("metadata not JSON", lambda p: _sql(p, "UPDATE documents SET metadata = '{oops' "
                                           "WHERE id = 'doc-50'"),
     None, "not a JSON object", False),
    ("manifest dimension a float", lambda p: _manifest(p, model__dimension=32.0),
     "incomplete or malformed", "incomplete or malformed", False),
    ("manifest nested deeply",
     lambda p: (p / "manifest.json").write_text(f'{{"format": {"[" * 100_000}{"]" * 100_000}}}'),
     "not valid JSON", "not valid JSON", False),
    ("sqlite schema version as text",
     lambda p: _sql(p, "UPDATE state SET value = 'one' WHERE key = 'schema_version'"),
     "schema version", "schema version", False),
    ("sqlite generation as text",
     lambda p: _sql(p, "UPDATE state SET value = 'x' WHERE key = 'generation'"),
     "impossible state", "impossible state", False),
    ("sqlite negative vector rows",
     lambda p: _sql(p, "UPDATE state SET value = -5 WHERE key = 'vector_rows'"),
     "impossible state", "impossible state", False),
    ("vector start as text",
     lambda p: _sql(p, "UPDATE documents SET vec_start = 'x' WHERE id = 'doc-50'"),
     "not integers", "not integers", False),
    ("text a blob", lambda p: _sql(p, "UPDATE documents SET text = X'00ff' WHERE id = 'doc-50'"),
     None, "not UTF-8 text", False),
    ("text not UTF-8",
     lambda p: _sql(p, "UPDATE documents SET text = CAST(X'fffe41' AS TEXT) WHERE id = 'doc-50'"),
     None, "not UTF-8 text", False),
    ("sqlite with a trigger",
     lambda p: _sql(p, "CREATE TRIGGER t AFTER INSERT ON documents "
                       "BEGIN UPDATE documents SET text = 'overwritten'; END"),
     "did not create", "did not create", False),
    ("sqlite with a view", lambda p: _sql(p, "CREATE VIEW v AS SELECT id FROM documents"),
     "did not create", "did not create", False),
    ("sqlite with a foreign index",
     lambda p: _sql(p, "CREATE INDEX by_text ON documents(text)"),
     "did not create", "did not create", False),
    ("vectors zeroed", _zero_vectors, None, "not finite unit vectors", False),
    ("a vector's lowest bit flipped", _flip_a_vector_bit, None, "do not match the checksum",
     False),
    ("vectors truncated", lambda p: (p / "vectors-1.f16").write_bytes(b"\0" * 640),
     "truncated", "truncated", False),
    ("vectors missing", lambda p: (p / "vectors-1.f16").unlink(), "missing", "missing", False),
]


@pytest.mark.parametrize("name, damage, on_open, problem, repairable", CASES,
                         ids=[c[0] for c in CASES])
def test_damage_is_named_checked_and_repaired_where_possible(
    damaged, pristine, name, damage, on_open, problem, repairable
):
    damage(damaged)
    if on_open is None:
        with EmbeddedIndex(damaged, model=HashEncoder(), create=False) as ix:
            assert ix.count() > 0  # opens; only the check can see this damage
    else:
        with pytest.raises(IndexCorruptError, match=on_open):
            EmbeddedIndex(damaged, model=HashEncoder(), create=False)
    report = check_index(damaged)
    assert not report.ok and any(problem in p for p in report.problems), report.problems
    assert report.repairable is repairable
    cli = CliRunner().invoke(app, ["check", "--index", str(damaged)])
    assert cli.exit_code == 1 and problem in " ".join(cli.output.split())
    repaired = check_index(damaged, repair=True)
    if not repairable:
        assert not repaired.ok and not repaired.repaired  # nothing touched
        return
    assert repaired.ok, repaired.problems
    assert any("rebuilt the graph" in line for line in repaired.repaired)
    with EmbeddedIndex(damaged, model=HashEncoder(), create=False) as ix:
        assert ix.count() == 280
        for doc_id in IDS[20::40]:  # found again through the rebuilt graph
            assert ix.search(doc_text(doc_id, 0), k=1, exact_threshold=0)[0].id == doc_id


def _edit_params(path):
    body = json.loads((path / "vectors-1.json").read_text())
    body["offset"][3] += 0.01
    (path / "vectors-1.json").write_text(json.dumps(body))


def _flip_a_code(path):
    with open(path / "vectors-1.u8", "r+b") as f:
        f.seek(32 * 5000 + 3)
        code = f.read(1)[0]
        f.seek(32 * 5000 + 3)
        f.write(bytes([code ^ 1]))


INT8_CASES = [
    ("codec parameters edited", _edit_params, "checksum", "checksum", False),
    ("codec parameters missing", lambda p: (p / "vectors-1.json").unlink(), "missing",
     "missing", False),
    ("codec parameters garbage", lambda p: (p / "vectors-1.json").write_bytes(b"\xff{"),
     "cannot be read", "cannot be read", False),
    ("a code's lowest bit flipped", _flip_a_code, None, "do not match the checksum", False),
    ("codes truncated", lambda p: (p / "vectors-1.u8").write_bytes(b"\0" * 320),
     "truncated", "truncated", False),
    ("codes missing", lambda p: (p / "vectors-1.u8").unlink(), "missing", "missing", False),
]


@pytest.mark.parametrize("name, damage, on_open, problem, repairable", INT8_CASES,
                         ids=[c[0] for c in INT8_CASES])
def test_int8_damage_is_named_and_checked(damaged_int8, name, damage, on_open, problem,
                                          repairable):
    test_damage_is_named_checked_and_repaired_where_possible(
        damaged=damaged_int8, pristine=None, name=name, damage=damage, on_open=on_open,
        problem=problem, repairable=repairable)


def test_the_pristine_folder_checks_clean(pristine):
    report = check_index(pristine)
    assert report.ok and report.documents == 280 and report.notes == []
    assert CliRunner().invoke(app, ["check", "--index", str(pristine)]).exit_code == 0


def test_the_pristine_int8_folder_checks_clean(pristine_int8):
    report = check_index(pristine_int8)
    assert report.ok and report.documents == 280
    # the only note an int8 folder may carry: values clipped to its codec's range
    assert all("outside the codec's trained range" in n for n in report.notes), report.notes
    assert CliRunner().invoke(app, ["check", "--index", str(pristine_int8)]).exit_code == 0


def test_a_missing_graph_is_rebuilt_on_open(damaged):
    _graph(damaged).unlink()
    assert check_index(damaged).ok  # the graph is a cache: its absence is no problem
    with EmbeddedIndex(damaged, model=HashEncoder(), create=False) as ix:
        assert ix.search(doc_text("doc-99", 0), k=1, exact_threshold=0)[0].id == "doc-99"
    assert any(damaged.glob("graph-*.voy"))  # and saved again on close


def _truncate_means(path):
    _means(path).write_bytes(_means(path).read_bytes()[:100])


def _flip_a_means_bit(path):
    _flip_bits(_means(path), 1, seed=0)


@pytest.mark.parametrize("damage", [_truncate_means, _narrow_means, _flip_a_means_bit])
def test_damaged_document_means_are_reported_and_repaired(damaged, damage):
    damage(damaged)
    report = check_index(damaged)
    assert not report.ok and report.repairable
    assert any("the document means" in p and "checksum" in p for p in report.problems), \
        report.problems
    repaired = check_index(damaged, repair=True)
    assert repaired.ok, repaired.problems
    assert check_index(damaged).ok


def test_damaged_document_means_are_recomputed_on_open(damaged, caplog):
    before = np.load(_means(damaged))
    expected = dict(zip(before["doc_nos"].tolist(), before["means"]))
    _truncate_means(damaged)
    with EmbeddedIndex(damaged, model=HashEncoder(), create=False) as ix:
        assert ix.search(doc_text("doc-99", 0), k=1, exact_threshold=0)[0].id == "doc-99"
    assert "recomputing the document means" in caplog.text
    after = np.load(_means(damaged))  # saved again, each document's mean as before
    assert set(after["doc_nos"].tolist()) <= set(expected)
    for doc_no, mean in zip(after["doc_nos"].tolist(), after["means"]):
        np.testing.assert_allclose(mean, expected[doc_no], atol=2e-3)
    assert check_index(damaged).ok


def test_leftovers_are_notes_and_repair_removes_them(damaged):
    (damaged / "vectors-0.f16").write_bytes(b"\0" * 128)  # an old generation
    (damaged / ".graph-1-5.voy.tmp-123").write_bytes(b"half")
    with open(damaged / "vectors-1.f16", "ab") as f:
        f.write(b"\1" * 100)  # rows of an interrupted append
    report = check_index(damaged)
    assert report.ok and len(report.notes) == 3
    repaired = check_index(damaged, repair=True)
    assert repaired.ok and not (damaged / "vectors-0.f16").exists()
    assert not (damaged / ".graph-1-5.voy.tmp-123").exists()


@pytest.mark.parametrize("what", ["nothing", "file", "foreign folder", "empty folder"])
def test_folders_that_are_not_indexes(tmp_path, what):
    target = tmp_path / "target"
    if what == "file":
        target.write_text("hello")
    elif what == "foreign folder":
        target.mkdir()
        (target / "thesis.tex").write_text("precious")
    elif what == "empty folder":
        target.mkdir()
    report = check_index(target, repair=True)
    assert not report.ok and not report.repaired
    if what == "foreign folder":
        assert sorted(p.name for p in target.iterdir()) == ["thesis.tex"]


@pytest.mark.parametrize("damage", [
    "UPDATE documents SET metadata = '{oops' WHERE id = 'doc-50'",
    "UPDATE documents SET text = X'00ff' WHERE id = 'doc-50'",
    "UPDATE documents SET text = CAST(X'fffe41' AS TEXT) WHERE id = 'doc-50'",
], ids=["metadata not JSON", "text a blob", "text not UTF-8"])
def test_a_damaged_document_is_a_typed_error_when_read(damaged, damage):
    _sql(damaged, damage)
    with EmbeddedIndex(damaged, model=HashEncoder(), create=False) as ix:
        with pytest.raises(IndexCorruptError, match=r"doc-50|damaged"):
            ix.get(["doc-50"])
        with pytest.raises(IndexCorruptError):
            ix.search(doc_text("doc-50", 0), k=1)
        assert ix.get(["doc-51"])[0].id == "doc-51"  # the other documents still read


def test_info_on_a_regular_file_is_a_clear_error(tmp_path):
    target = tmp_path / "file"
    target.write_text("hello")
    result = CliRunner().invoke(app, ["info", "--index", str(target)])
    assert result.exit_code == 1 and "not a colbridge index" in " ".join(result.output.split())
    assert not isinstance(result.exception, NotADirectoryError)
    assert target.read_text() == "hello"


def _lexical_folder(path):
    (folder,) = path.glob("lexical-*")
    return folder


@pytest.mark.parametrize("name", ["vectors-1.f16", "write.lock", "documents.sqlite",
                                  "documents.sqlite-wal", "graph", "lexical", "lexical file"])
def test_a_symbolic_link_in_the_folder_is_refused_and_its_target_untouched(damaged, tmp_path,
                                                                          name):
    outside = tmp_path / "outside"
    outside.mkdir()
    if name == "graph":
        inside = _graph(damaged)
    elif name == "lexical":
        inside = _lexical_folder(damaged)
    elif name == "lexical file":
        inside = _lexical_folder(damaged) / "doc_nos.npy"
    else:
        inside = damaged / name
    target = outside / inside.name
    if inside.is_dir():
        shutil.copytree(inside, target)
        shutil.rmtree(inside)
    elif inside.exists():
        shutil.copy(inside, target)
        inside.unlink()
    else:
        target.write_bytes(b"precious")
    inside.symlink_to(target, target_is_directory=target.is_dir())
    before = {p.relative_to(outside): p.read_bytes() for p in outside.rglob("*") if p.is_file()}

    with pytest.raises(IndexCorruptError, match="symbolic link"):
        EmbeddedIndex(damaged, model=HashEncoder(), create=False)
    report = check_index(damaged, repair=True)
    assert not report.ok and not report.repaired
    assert any("symbolic link" in p for p in report.problems), report.problems
    cli = CliRunner().invoke(app, ["check", "--index", str(damaged)])
    assert cli.exit_code == 1 and "symbolic link" in " ".join(cli.output.split())
    after = {p.relative_to(outside): p.read_bytes() for p in outside.rglob("*") if p.is_file()}
    assert after == before and inside.is_symlink()


def test_a_symbolic_link_planted_after_open_is_never_written_through(damaged, tmp_path):
    outside = tmp_path / "precious.f16"
    ix = EmbeddedIndex(damaged, model=HashEncoder(), create=False)
    shutil.copy(damaged / "vectors-1.f16", outside)
    (damaged / "vectors-1.f16").unlink()
    (damaged / "vectors-1.f16").symlink_to(outside)
    before = outside.read_bytes()
    with pytest.raises(IndexCorruptError, match="symbolic link"):
        ix.add([doc_text("new", 0)], ids=["new"])
    assert ix.count() == 280
    with pytest.raises(IndexCorruptError, match="symbolic link"):
        ix.close()  # closes, and says why the caches were not saved
    with pytest.raises(InvalidInputError, match="closed"):
        ix.count()
    assert outside.read_bytes() == before


_SEARCH_IN_A_CHILD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("w", sys.argv[2])
w = importlib.util.module_from_spec(spec); spec.loader.exec_module(w)
from colbridge import EmbeddedIndex, IndexCorruptError
try:
    ix = EmbeddedIndex(sys.argv[1], model=w.HashEncoder(), create=False)
except IndexCorruptError as e:
    print("refused:", e); sys.exit(3)
for i in range(20, 300, 7):
    ix.search(w.doc_text(f"doc-{i}", 0), k=5, exact_threshold=0)
print("searched")
"""


@pytest.mark.parametrize("seed", range(8))
def test_flipped_bits_in_the_graph_never_reach_voyager(damaged, seed):
    """Flipped bits in a graph file crashed the process inside Voyager; now the checksum
    recorded when the checkpoint was written refuses them before Voyager reads a byte."""
    import subprocess
    import sys

    from .conftest import WRITER

    _flip_bits(_graph(damaged), 3, seed=seed)
    child = subprocess.run([sys.executable, "-c", _SEARCH_IN_A_CHILD, str(damaged), str(WRITER)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 3 and "checksum" in child.stdout, (child.returncode, child.stdout,
                                                                  child.stderr[-2000:])
    assert any("checksum" in p for p in check_index(damaged).problems)
    assert check_index(damaged, repair=True).ok
    child = subprocess.run([sys.executable, "-c", _SEARCH_IN_A_CHILD, str(damaged), str(WRITER)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0 and "searched" in child.stdout, child.stderr[-2000:]


def _forget_checksums(path):
    """Make the folder look as an older colbridge left it: no checksum of any cache file."""
    conn = sqlite3.connect(path / "documents.sqlite")
    conn.execute("DROP TABLE checksums")
    conn.commit()
    conn.close()
    (segment,) = path.glob("lexical-*")
    meta = json.loads((segment / "colbridge.json").read_text())
    del meta["files"]
    (segment / "colbridge.json").write_text(json.dumps(meta))


def _rows_added_to_graphs(monkeypatch) -> list[int]:
    from colbridge.index.graph import TokenGraph

    added: list[int] = []
    original = TokenGraph.add_documents

    def counting(self, matrix, starts, counts, *args, **kwargs):
        added.append(int(np.asarray(counts).sum()))
        return original(self, matrix, starts, counts, *args, **kwargs)

    monkeypatch.setattr(TokenGraph, "add_documents", counting)
    return added


def test_a_folder_without_checksums_opens_and_records_them(damaged, monkeypatch):
    """Folders written before checksums were recorded: the graph (minutes to rebuild on a large
    index) is used once a child process has loaded and searched it, the means and lexical
    segment (seconds) are rebuilt, and every checksum is recorded at close."""
    _forget_checksums(damaged)
    report = check_index(damaged)
    assert report.ok and sum("no checksum recorded" in n for n in report.notes) == 3, report.notes
    added = _rows_added_to_graphs(monkeypatch)
    with EmbeddedIndex(damaged, model=HashEncoder(), create=False) as ix:
        assert ix.search(doc_text("doc-99", 0), k=1, exact_threshold=0)[0].id == "doc-99"
        assert ix.search(doc_text("doc-99", 0), k=1, mode="bm25")[0].id == "doc-99"
    assert added == [], "the old graph was rebuilt instead of probed and used"
    after = check_index(damaged)
    assert after.ok and after.notes == [], after.notes


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_an_unrecorded_graph_that_fails_its_probe_is_rebuilt(damaged, monkeypatch, damage):
    _forget_checksums(damaged)
    graph = _graph(damaged)
    if damage == "truncated":
        graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 3])
    else:
        graph.write_bytes(np.random.default_rng(0).bytes(graph.stat().st_size))
    added = _rows_added_to_graphs(monkeypatch)
    with EmbeddedIndex(damaged, model=HashEncoder(), create=False) as ix:
        assert sum(added) > 0, "a graph that failed its probe was loaded"
        assert ix.search(doc_text("doc-99", 0), k=1, exact_threshold=0)[0].id == "doc-99"
    after = check_index(damaged)
    assert after.ok and after.notes == [], after.notes


def test_vectors_written_before_checksums_are_recorded_by_repair(damaged):
    with EmbeddedIndex(damaged, model=HashEncoder(), create=False) as ix:
        ix.add([doc_text("late", 0)], ids=["late"])  # one more run of rows, recorded
    conn = sqlite3.connect(damaged / "documents.sqlite")
    conn.execute("DELETE FROM vector_sums WHERE first_row = 0")  # as an older colbridge left it
    conn.commit()
    conn.close()
    report = check_index(damaged)
    assert report.ok and any("no checksum recorded" in n for n in report.notes), report.notes
    repaired = check_index(damaged, repair=True)
    assert repaired.ok and repaired.notes == [], repaired.notes
    assert any("recorded the checksums" in line for line in repaired.repaired)
    _flip_a_vector_bit(damaged)  # now detectable in those rows too
    assert any("do not match the checksum" in p for p in check_index(damaged).problems)
