"""Damaged passage layouts of split documents: `colbridge check` names each one, an open that
would score the wrong rows refuses with IndexCorruptError, and `check --repair` fixes what it
can without losing a document (test_corruption.py does the same for the rest of the folder)."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from colbridge import EmbeddedIndex, GraphParams, IndexCorruptError
from colbridge.check import check_index
from colbridge.cli import app
from typer.testing import CliRunner

from .conftest import HashEncoder, doc_metadata, doc_text

IDS = [f"doc-{i}" for i in range(120)]
SHORT = 13  # document length: 10 words a passage, so most hash-encoder texts are split


def _encoder() -> HashEncoder:
    return HashEncoder(document_length=SHORT)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "index"
    with EmbeddedIndex(path, model=_encoder(), graph=GraphParams(M=8, ef_construction=32),
                       codec="float16") as ix:
        ix.add([doc_text(i, 0) for i in IDS], ids=IDS, metadatas=[doc_metadata(i, 0) for i in IDS])
        ix.delete(IDS[:5])  # a deleted split document's layout goes with it
    return path


@pytest.fixture
def damaged(pristine, tmp_path):
    path = tmp_path / "index"
    shutil.copytree(pristine, path)
    return path


def _sql(path, statement, *args):
    conn = sqlite3.connect(path / "documents.sqlite")
    with conn:
        result = conn.execute(statement, args).fetchall()
    conn.close()
    return result


def _split_doc(path) -> tuple[int, str, list[list[int]]]:
    """A split document's number, id and layout."""
    doc_no, doc_id, layout = _sql(
        path, "SELECT p.doc_no, d.id, p.layout FROM passages p JOIN documents d USING (doc_no) "
              "ORDER BY p.doc_no LIMIT 1 OFFSET 7")[0]
    return doc_no, doc_id, json.loads(layout)


def _set_layout(path, change) -> str:
    doc_no, doc_id, layout = _split_doc(path)
    _sql(path, "UPDATE passages SET layout = ? WHERE doc_no = ?", change(layout), doc_no)
    return doc_id


def _json(edit):
    def change(layout):
        edit(layout)
        return json.dumps(layout)
    return change


def _one_more_row(layout):
    layout[0][2] += 1


def _span_past_the_text(layout):
    layout[-1][1] = 10**6


def _swapped(layout):
    layout[0][:2], layout[1][:2] = layout[1][:2], layout[0][:2]


def _orphan_layout(path) -> None:
    _sql(path, "INSERT INTO passages(doc_no, layout) VALUES (99999, '[[0, 3, 1]]')")


# (name, damage, message on open or None when it still opens, problem reported by check)
CASES = [
    ("rows that do not add up", lambda p: _set_layout(p, _json(_one_more_row)),
     "does not fit", "do not add up"),
    ("a span past the text", lambda p: _set_layout(p, _json(_span_past_the_text)),
     None, "outside its"),
    ("spans out of order", lambda p: _set_layout(p, _json(_swapped)),
     "not in text order", "not in text order"),
    ("layout not JSON", lambda p: _set_layout(p, lambda _: "[[0, 5"), "cannot be read",
     "cannot be read"),
    ("layout of pairs", lambda p: _set_layout(p, lambda lay: json.dumps([x[:2] for x in lay])),
     "cannot be read", "cannot be read"),
    ("rows as text", lambda p: _set_layout(p, lambda lay: json.dumps([[s, e, str(r)]
                                                                      for s, e, r in lay])),
     "cannot be read", "cannot be read"),
    ("a layout of no document", _orphan_layout, None, "belong to no stored document"),
]


def test_the_pristine_split_folder_checks_clean(pristine):
    report = check_index(pristine)
    assert report.ok and report.documents == 115 and report.notes == [], report
    with EmbeddedIndex(pristine, model=_encoder(), create=False) as ix:
        split = ix.stats()["split_documents"]
    assert 60 < split < 115  # most texts are longer than one 10-word passage
    (orphans,) = _sql(pristine, "SELECT count(*) FROM passages WHERE doc_no NOT IN "
                                "(SELECT doc_no FROM documents)")[0]
    assert orphans == 0


@pytest.mark.parametrize("name, damage, on_open, problem", CASES, ids=[c[0] for c in CASES])
def test_passage_damage_is_named_and_repaired_without_losing_a_document(
        damaged, name, damage, on_open, problem):
    doc_id = damage(damaged)
    if on_open is None:
        with EmbeddedIndex(damaged, model=_encoder(), create=False) as ix:
            assert ix.count() == 115
    else:
        with pytest.raises(IndexCorruptError, match=on_open):
            EmbeddedIndex(damaged, model=_encoder(), create=False)
    report = check_index(damaged)
    assert not report.ok and any(problem in p for p in report.problems), report.problems
    if doc_id is not None:
        assert any(repr(doc_id) in p for p in report.problems)  # names the document
    assert report.repairable
    cli = CliRunner().invoke(app, ["check", "--index", str(damaged)])
    assert cli.exit_code == 1 and problem in " ".join(cli.output.split())

    repaired = check_index(damaged, repair=True)
    assert repaired.ok, repaired.problems
    assert any("passage layout" in line for line in repaired.repaired), repaired.repaired
    with EmbeddedIndex(damaged, model=_encoder(), create=False) as ix:
        assert ix.count() == 115  # every document is still there
        if doc_id is not None:  # kept whole, found, scored as one passage of all its rows
            (doc,) = ix.get([doc_id])
            assert doc.text == doc_text(doc_id, 0) and doc.metadata == doc_metadata(doc_id, 0)
            hit = ix.search(doc_text(doc_id, 0), k=1, exact_threshold=10**6)[0]
            assert hit.id == doc_id and hit.passage is None
            ix.add([doc_text(doc_id, 1)], ids=[doc_id], metadatas=[doc_metadata(doc_id, 1)])
            assert ix.search(doc_text(doc_id, 1), k=1)[0].passage is not None  # split anew
    assert check_index(damaged).ok


def test_damage_elsewhere_leaves_a_damaged_layout_alone(damaged):
    """Repair touches nothing when the store is damaged beyond the layouts too."""
    _set_layout(damaged, _json(_one_more_row))
    _sql(damaged, "UPDATE documents SET metadata = '{oops' WHERE id = 'doc-60'")
    before = _sql(damaged, "SELECT doc_no, layout FROM passages ORDER BY doc_no")
    report = check_index(damaged, repair=True)
    assert not report.ok and not report.repaired and not report.repairable
    assert _sql(damaged, "SELECT doc_no, layout FROM passages ORDER BY doc_no") == before


def _layouts(path) -> dict[str, list[list[int]]]:
    return {doc_id: json.loads(layout) for doc_id, layout in _sql(
        path, "SELECT d.id, p.layout FROM passages p JOIN documents d USING (doc_no)")}


def test_recovery_keeps_every_split_document_split(pristine, tmp_path):
    from colbridge.backup import recover_index

    result = recover_index(pristine, tmp_path / "saved")
    assert result.recovered == 115 and result.lost == []
    assert check_index(result.path).ok
    source = _layouts(pristine)
    assert len(source) > 60 and _layouts(result.path) == source
    queries = [doc_text(i, 0) for i in IDS[5::11]]
    with EmbeddedIndex(pristine, model=_encoder(), create=False) as before, \
            EmbeddedIndex(result.path, model=_encoder(), create=False) as after:
        for query in queries:
            hits = [before.search(query, k=3, exact_threshold=10**6),
                    after.search(query, k=3, exact_threshold=10**6)]
            assert [(h.id, h.passage) for h in hits[0]] == [(h.id, h.passage) for h in hits[1]]
            assert [h.score for h in hits[0]] == pytest.approx([h.score for h in hits[1]],
                                                               abs=1e-6)


def test_recovery_saves_a_document_with_an_unusable_layout_whole(damaged, tmp_path):
    from colbridge.backup import recover_index

    doc_id = _set_layout(damaged, _json(_one_more_row))
    result = recover_index(damaged, tmp_path / "saved")
    assert result.recovered == 115
    assert result.lost == ["1 split document(s) whose passage layout is unusable, saved whole"]
    saved = _layouts(result.path)
    assert doc_id not in saved and len(saved) == len(_layouts(damaged)) - 1
    assert check_index(result.path).ok
    with EmbeddedIndex(result.path, model=_encoder(), create=False) as ix:
        hit = ix.search(doc_text(doc_id, 0), k=1, exact_threshold=10**6)[0]
        assert hit.id == doc_id and hit.passage is None
