"""Online backups that open like the original, and salvage of an index SQLite cannot fully read."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess

import numpy as np
import pytest
from colbridge import EmbeddedIndex, IndexNotFoundError, InvalidInputError
from colbridge.backup import recover_index
from colbridge.check import check_index
from colbridge.cli import app
from typer.testing import CliRunner

from .conftest import (
    SAMPLE_IDS,
    HashEncoder,
    build_sample_index,
    check_clean,
    doc_metadata,
    doc_text,
    parse_output,
    stored_state,
    word_vectors,
    writer_command,
)

IDS = SAMPLE_IDS


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    return build_sample_index(tmp_path_factory.mktemp("original") / "index")


@pytest.fixture
def copy_of(original, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(original, path)
    return path


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _hits(path, queries):
    with EmbeddedIndex(path, model=HashEncoder(), create=False) as ix:
        return [[(h.id, round(h.score, 5)) for h in ix.search_encoded(q, k=5, **options)]
                for q in queries for options in ({}, {"exact_threshold": 0})]


def test_a_backup_opens_like_the_original(copy_of, tmp_path):
    with EmbeddedIndex(copy_of, model=HashEncoder(), create=False) as ix:
        # Rows added since the last checkpoint: the copy must include them in its graph.
        ix.add([doc_text("late", 0)], ids=["late"], metadatas=[doc_metadata("late", 0)])
        dest = ix.backup(tmp_path / "copies" / "monday")
        assert ix.count() == 281  # the source stays usable
    assert dest == tmp_path / "copies" / "monday"
    assert not [p.name for p in dest.iterdir() if p.name.startswith((".", "write.lock"))]
    assert not list(tmp_path.joinpath("copies").glob(".*"))  # no scratch folder left behind
    assert check_clean(dest) == []
    assert stored_state(dest) == stored_state(copy_of)
    queries = [np.asarray(word_vectors(doc_text(i, 0))[:16]) for i in ("doc-25", "late")]
    assert _hits(dest, queries) == _hits(copy_of, queries)


def test_a_backup_during_another_process_writes_is_one_committed_state(copy_of, tmp_path):
    proc = subprocess.Popen(
        writer_command(copy_of, 3, "--adds-only", "--ops", "40", "--batch", "5", "--prefix", "w"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(6)]  # READY and a few operations
    with EmbeddedIndex(copy_of, model=HashEncoder(), create=False) as ix:
        dest = ix.backup(tmp_path / "during")
    out, err = proc.communicate(timeout=120)
    run = parse_output(lines + out.splitlines(), proc.returncode, err)
    assert proc.returncode == 0, err[-2000:]
    assert check_clean(dest) == []
    saved = set(stored_state(dest))
    before = set(IDS[20:])
    ops = [set(op["docs"]) for op in run.committed_ops]
    prefixes = [before.union(*ops[:n]) for n in range(len(ops) + 1)]
    assert saved in prefixes  # the writes before some commit, all of them, and nothing after


async def test_async_backup(copy_of, tmp_path):
    with EmbeddedIndex(copy_of, model=HashEncoder(), create=False) as ix:
        dest = await ix.abackup(tmp_path / "async-copy")
    assert check_clean(dest) == []


def test_a_backup_refuses_to_overwrite_or_nest(copy_of, tmp_path, original):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep")
    with EmbeddedIndex(copy_of, model=HashEncoder(), create=False) as ix:
        with pytest.raises(InvalidInputError, match="already exists"):
            ix.backup(tmp_path / "taken")
        with pytest.raises(InvalidInputError, match="already exists"):
            ix.backup(original)
        with pytest.raises(InvalidInputError, match="inside the index"):
            ix.backup(copy_of / "nested")
        (tmp_path / "empty").mkdir()
        assert ix.backup(tmp_path / "empty") == tmp_path / "empty"  # an empty folder is fine
    assert (tmp_path / "taken" / "notes.txt").read_text() == "keep"
    with pytest.raises(IndexNotFoundError):
        EmbeddedIndex(tmp_path / "absent", model=HashEncoder()).backup(tmp_path / "x")
    assert not (tmp_path / "absent").exists() and not (tmp_path / "x").exists()


def test_the_backup_command(copy_of, tmp_path):
    result = CliRunner().invoke(app, ["backup", str(tmp_path / "cli-copy"), "--index", str(copy_of)])
    assert result.exit_code == 0, result.output
    assert "Backed up 280 documents" in result.output
    assert check_clean(tmp_path / "cli-copy") == []
    again = CliRunner().invoke(app, ["backup", str(tmp_path / "cli-copy"), "--index", str(copy_of)])
    assert again.exit_code == 1 and "already exists" in again.output


# -- recovery ----------------------------------------------------------------------------------
def _sql(path, statement):
    conn = sqlite3.connect(path / "documents.sqlite")
    conn.execute(statement)
    conn.commit()
    conn.close()


def _damage_pages(path, table, count=2):
    """Overwrite ``count`` leaf pages of ``table`` (SQLite's ``dbstat`` lists them)."""
    conn = sqlite3.connect(path / "documents.sqlite")
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = [n for (n,) in conn.execute(
        "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (table,))]
    conn.close()
    assert len(pages) >= count
    data = bytearray((path / "documents.sqlite").read_bytes())
    for number in pages[len(pages) // 2:][:count]:
        data[(number - 1) * size:number * size] = b"\xff" * size
    (path / "documents.sqlite").write_bytes(bytes(data))


def _damage_leaf_pages(path):
    _damage_pages(path, "documents")


def test_damage_check_cannot_repair_is_explained(copy_of):
    _damage_leaf_pages(copy_of)
    report = check_index(copy_of, repair=True)
    assert not report.ok
    assert any("colbridge recover" in note and "colbridge backup" in note for note in report.notes)
    cli = CliRunner().invoke(app, ["check", "--index", str(copy_of)])
    assert cli.exit_code == 1 and "colbridge recover --from" in " ".join(cli.output.split())


def test_recovery_saves_every_readable_document_whole(copy_of, tmp_path):
    _damage_leaf_pages(copy_of)
    before = _digest(copy_of)
    result = recover_index(copy_of, tmp_path / "saved")
    assert _digest(copy_of) == before  # the damaged folder is only read
    assert result.path == tmp_path / "saved"
    assert check_clean(result.path) == []
    state = stored_state(result.path)  # each recovered document is whole: text, metadata, vectors
    assert len(state) == result.recovered
    assert set(state) <= set(IDS[20:])
    assert 0 < result.recovered < 280, result  # the damage lost some rows, not all
    # SQLite's index of ids survived: the lost documents are named.
    assert set(result.lost_ids) | set(state) == set(IDS[20:])
    assert not set(result.lost_ids) & set(state)
    assert result.lost == [f"{len(result.lost_ids)} document(s) whose rows SQLite cannot read"]


def test_recovery_without_the_index_of_ids_counts_document_numbers(copy_of, tmp_path):
    _damage_leaf_pages(copy_of)
    _damage_pages(copy_of, "sqlite_autoindex_documents_1", count=1)
    result = recover_index(copy_of, tmp_path / "saved")
    assert check_clean(result.path) == [] and 0 < result.recovered < 280
    assert result.lost_ids == []
    (line,) = result.lost
    assert "document number(s) SQLite cannot read" in line
    # At least one number per lost document; numbers of documents deleted earlier may add to it.
    assert int(line.split()[0]) >= 280 - result.recovered
    assert set(stored_state(result.path)) <= set(IDS[20:])


def test_recovery_drops_exactly_the_documents_whose_data_is_bad(copy_of, tmp_path):
    with EmbeddedIndex(copy_of, model=HashEncoder(), create=False) as ix:
        (row,) = [r for r in ix._store.iter_documents() if r[0] == "doc-70"]
    _sql(copy_of, "UPDATE documents SET metadata = '{oops' WHERE id = 'doc-50'")
    _sql(copy_of, "UPDATE documents SET vec_start = 10000000 WHERE id = 'doc-60'")
    with open(copy_of / "vectors-1.u8", "r+b") as f:  # int8 codes: 32 bytes per row
        f.seek(row[3] * 32)
        f.write(b"\0" * 32 * row[4])
    result = recover_index(copy_of, tmp_path / "saved")
    assert result.recovered == 277
    assert sorted(result.lost) == sorted([
        "1 row(s) whose metadata is not a JSON object",
        "1 row(s) whose token vectors lie outside the vector file",
        "1 row(s) whose token vectors are damaged",
    ])
    assert set(stored_state(result.path)) == set(IDS[20:]) - {"doc-50", "doc-60", "doc-70"}


def test_the_recover_command(copy_of, tmp_path):
    _damage_leaf_pages(copy_of)
    result = CliRunner().invoke(app, ["recover", "--from", str(copy_of), "--to",
                                      str(tmp_path / "saved")])
    assert result.exit_code == 0, result.output
    assert "Recovered" in result.output and "lost:" in result.output
    assert "doc-" in result.output  # the lost ids are named
    again = CliRunner().invoke(app, ["recover", "--from", str(copy_of), "--to",
                                     str(tmp_path / "saved")])
    assert again.exit_code == 1 and "already exists" in again.output
