"""BM25 and hybrid search on the embedded index: the lexical segments, modes, filters, recovery."""

from __future__ import annotations

import logging
import shutil

import bm25s
import numpy as np
import pytest

from colbridge import EmbeddedIndex, InvalidInputError
from colbridge.check import check_index
from colbridge.index import lexical
from colbridge.index.lexical import saved_segments, tokenize

from .conftest import BACKENDS, open_index, synthetic_docs

RARE = "part number XJ-4471 fits the left hinge"


@pytest.fixture
def index(tmp_path, tiny_model):
    """40 synthetic documents plus one holding a rare identifier, flushed (base segment saved)."""
    index = EmbeddedIndex(tmp_path / "ix", model=tiny_model)
    texts, ids, metadatas = synthetic_docs(40)
    index.add(texts + [RARE], ids=ids + ["rare"],
              metadatas=metadatas + [{"group": "g1", "n": 99, "even": False}])
    index.flush()
    yield index
    index.close()


@pytest.fixture(params=BACKENDS)
def any_index(request, tmp_path, tiny_model):
    """The same 41 documents on every backend: the modes are one stage over all of them."""
    index = open_index(request.param, tmp_path, tiny_model)
    texts, ids, metadatas = synthetic_docs(40)
    index.add(texts + [RARE], ids=ids + ["rare"],
              metadatas=metadatas + [{"group": "g1", "n": 99, "even": False}])
    yield index
    index.close()


def reference_bm25(texts: list[str], query: str) -> np.ndarray:
    """bm25s used directly, with colbridge's tokenizer: the scores a one-segment index gives."""
    retriever = bm25s.BM25()
    retriever.index(tokenize(texts), show_progress=False)
    terms = [t for t in tokenize([query])[0] if t in retriever.vocab_dict]
    return retriever.get_scores(terms) if terms else np.zeros(len(texts))


def test_bm25_finds_the_rare_identifier(any_index):
    hits = any_index.search("XJ-4471 hinge", k=3, mode="bm25")
    assert hits[0].id == "rare" and hits[0].normalized_score == 1.0
    assert all(h.score > 0 for h in hits)


async def test_async_modes_match_sync(any_index):
    for mode in ("bm25", "hybrid"):
        sync = [(h.id, round(h.score, 5))
                for h in any_index.search("XJ-4471 hinge", k=5, mode=mode)]
        asyn = [(h.id, round(h.score, 5))
                for h in await any_index.asearch("XJ-4471 hinge", k=5, mode=mode)]
        assert sync == asyn and sync[0][0] == "rare"


def test_bm25_scores_equal_bm25s_on_one_segment(any_index):
    texts, ids, _ = synthetic_docs(40)
    query = "alpha gamma item"
    expected = reference_bm25(texts + [RARE], query)
    hits = any_index.search(query, k=41, mode="bm25")
    by_id = dict(zip(ids + ["rare"], expected))
    assert len(hits) == int((expected > 0).sum()) > 3
    for hit in hits:
        assert hit.score == pytest.approx(by_id[hit.id], rel=1e-5)


def test_documents_added_after_the_base_are_scored_with_the_whole_collections_idf(index, tmp_path,
                                                                                  tiny_model):
    extra = ["hinge hinge lubrication guide", "the XJ-4471 recall notice"]
    index.add(extra, ids=["tail-1", "tail-2"])  # not flushed: they live in the in-memory tail
    assert saved_segments(index.path)[0][0] < 42
    query = "XJ-4471 hinge recall"
    segmented = {h.id: h.score for h in index.search(query, k=4, mode="bm25")}
    texts, ids, _ = synthetic_docs(40)
    one_segment = reference_bm25(texts + [RARE] + extra, query)
    # The same IDF everywhere, and the tail normalised by the base's average length; what is
    # left is the base's average not counting the two new texts (a few per cent here).
    assert segmented["rare"] == pytest.approx(one_segment[40], rel=0.05)
    assert segmented["tail-1"] == pytest.approx(one_segment[41], rel=0.05)
    assert segmented["tail-2"] == pytest.approx(one_segment[42], rel=0.05)


def test_deleted_and_replaced_documents_leave_every_mode(any_index):
    any_index.delete(["rare"])
    for mode in ("bm25", "hybrid"):
        assert "rare" not in [h.id for h in any_index.search("XJ-4471 hinge", k=10, mode=mode)]
    any_index.add(["a quiet lighthouse keeper"], ids=["d3"])  # upsert d3 with new words
    assert any_index.search("lighthouse keeper", k=1, mode="bm25")[0].id == "d3"
    old_words = synthetic_docs(40)[0][3]
    assert "d3" not in [h.id for h in any_index.search(old_words, k=40, mode="bm25")
                        if h.text != "a quiet lighthouse keeper"]


@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
def test_filters_apply_in_every_mode(any_index, mode):
    hits = any_index.search("XJ-4471 hinge item", k=5, mode=mode, filter={"even": True})
    assert hits and all(h.metadata["even"] is True for h in hits)
    assert "rare" not in [h.id for h in hits]


def test_hybrid_weight_extremes_reproduce_each_ranking(any_index):
    query = "alpha item hinge"
    colbert = [h.id for h in any_index.search(query, k=5)]
    bm25 = [h.id for h in any_index.search(query, k=5, mode="bm25")]
    assert [h.id for h in any_index.search(query, k=5, mode="hybrid", hybrid_weight=1.0)] == colbert
    assert [h.id for h in any_index.search(query, k=5, mode="hybrid", hybrid_weight=0.0)] == bm25
    mixed = any_index.search(query, k=5, mode="hybrid")
    assert all(0.0 <= h.score <= 1.0 and h.score == h.normalized_score for h in mixed)
    assert [h.score for h in mixed] == sorted((h.score for h in mixed), reverse=True)


def test_hybrid_scores_candidates_from_both_rankings(any_index):
    """A document only BM25 finds (a rare term) still gets its exact MaxSim in the fusion."""
    hits = any_index.search("XJ-4471", k=41, mode="hybrid")
    assert hits[0].id == "rare"
    colbert_only = any_index.search("XJ-4471", k=41)
    assert {h.id for h in hits} <= {h.id for h in colbert_only}


def test_bad_mode_arguments_are_refused(any_index):
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        any_index.search("x", mode="sparse")
    for weight in (-0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(InvalidInputError, match="hybrid_weight"):
            any_index.search("x", mode="hybrid", hybrid_weight=weight)
    embedding = any_index.model.encode_query("hinge")
    with pytest.raises(InvalidInputError, match="query_text"):
        any_index.search_encoded(embedding, mode="bm25")
    hits = any_index.search_encoded(embedding, k=1, mode="bm25", query_text="XJ-4471")
    assert hits[0].id == "rare"


def test_a_lone_hybrid_candidate_keeps_a_full_score(any_index):
    hits = any_index.search("XJ-4471 hinge", k=3, mode="hybrid", filter={"n": 99})
    assert [h.id for h in hits] == ["rare"] and hits[0].score == 1.0


def test_a_query_with_no_known_term_finds_nothing_in_bm25(any_index):
    assert any_index.search("zzzqqq", k=5, mode="bm25") == []
    assert len(any_index.search("zzzqqq", k=5, mode="hybrid")) == 5  # ColBERT still ranks


def test_the_base_is_saved_and_reloaded_not_rebuilt(index, tiny_model, monkeypatch):
    path = index.path
    index.close()
    (upto, folder), = saved_segments(path)
    assert (folder / "doc_nos.npy").exists() and (folder / "colbridge.json").exists()
    monkeypatch.setattr(lexical.Segment, "build", lambda *a, **k: pytest.fail("rebuilt"))
    with EmbeddedIndex(path, model=tiny_model) as reopened:
        assert reopened.search("XJ-4471", k=1, mode="bm25")[0].id == "rare"


def test_a_reader_closes_without_loading_a_saved_base_that_covers_everything(index, tiny_model,
                                                                           monkeypatch):
    """A vector search's close leaves a current saved base alone (loading it imports bm25s and
    SciPy, most of a cold start's close); behind the live documents, it is checkpointed as
    before."""
    path = index.path
    index.close()
    loads = []
    original = lexical.Segment.load
    monkeypatch.setattr(lexical.Segment, "load",
                        classmethod(lambda cls, p: loads.append(p) or original(p)))
    with EmbeddedIndex(path, model=tiny_model) as reader:
        assert reader.search("alpha river", k=3)
    assert loads == []
    with EmbeddedIndex(path, model=tiny_model) as writer:
        writer.add(["one more text about the river"], ids=["late"])
    assert loads  # the writer's close loaded the base to check it against the new document
    with EmbeddedIndex(path, model=tiny_model) as reopened:
        assert reopened.search("one more text", k=1, mode="bm25")[0].id == "late"


def test_a_damaged_segment_is_rebuilt_from_the_texts(index, tiny_model, caplog):
    path = index.path
    index.close()
    (_, folder), = saved_segments(path)
    (folder / "doc_nos.npy").write_bytes(b"not numpy")
    (path / ".lexical-7.tmp-1-2").mkdir()  # leftover of an interrupted save
    report = check_index(path)
    assert not report.ok and report.repairable and "lexical segment" in report.problems[0]
    with caplog.at_level(logging.WARNING), EmbeddedIndex(path, model=tiny_model) as reopened:
        assert reopened.search("XJ-4471", k=1, mode="bm25")[0].id == "rare"
    assert "damaged lexical segment" in caplog.text
    repaired = check_index(path, repair=True)
    assert repaired.ok and not (path / ".lexical-7.tmp-1-2").exists()
    assert len(saved_segments(path)) == 1


@pytest.mark.parametrize("damage", ["drop a field", "not json", "a list"])
def test_a_segment_with_a_damaged_description_is_rebuilt(index, tiny_model, damage):
    path = index.path
    index.close()
    (_, folder), = saved_segments(path)
    meta = folder / "colbridge.json"
    if damage == "drop a field":
        meta.write_text(meta.read_text().replace('"average_length"', '"old_field"'))
    else:
        meta.write_text("{oops" if damage == "not json" else "[1, 2]")
    with EmbeddedIndex(path, model=tiny_model) as reopened:
        assert reopened.search("XJ-4471", k=1, mode="bm25")[0].id == "rare"
    assert check_index(path).ok  # the close saved a sound segment in its place


def test_the_base_is_rebuilt_when_the_tail_outgrows_it(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setattr(lexical, "tail_limit", lambda base: 5)
    texts, ids, _ = synthetic_docs(30)
    with EmbeddedIndex(tmp_path / "ix", model=tiny_model) as index:
        index.add(texts[:10], ids=ids[:10])
        index.flush()
        first = saved_segments(index.path)[0][0]
        index.add(texts[10:13], ids=ids[10:13])
        index.flush()  # tail of 3: kept in memory
        assert saved_segments(index.path)[0][0] == first
        index.add(texts[13:], ids=ids[13:])
        index.flush()  # tail of 20 > 5: one new base over all 30
        (upto, folder), = saved_segments(index.path)
        assert upto > first and len(np.load(folder / "doc_nos.npy")) == 30


def test_compaction_drops_deleted_documents_from_the_base(index):
    index.delete([f"d{i}" for i in range(20)])
    index.compact()
    (_, folder), = saved_segments(index.path)
    assert len(np.load(folder / "doc_nos.npy")) == 21


def test_qdrant_sees_its_own_writes_in_the_lexical_modes(tiny_model):
    """The Qdrant backend's BM25 segment is rebuilt after this handle writes or deletes."""
    from qdrant_client import QdrantClient

    from colbridge import QdrantIndex

    client = QdrantClient(":memory:")
    with QdrantIndex(client, "docs", model=tiny_model) as index:
        index.add(["hello world", "a quiet harbour"], ids=["a", "b"])
        assert [h.id for h in index.search("hello", mode="bm25")] == ["a"]
        index.add(["hello again, hello"], ids=["b"])  # replaced: the point count stays 2
        assert {h.id for h in index.search("hello", mode="bm25")} == {"a", "b"}
        index.delete(["a"])
        assert [h.id for h in index.search("hello", mode="hybrid")] == ["b"]
    client.close()


@pytest.mark.parametrize("text", ["no", "I", "?", "🙂 👍"])
def test_a_corpus_without_any_bm25_term_is_a_valid_lexical_state(tmp_path, tiny_model, text):
    index = EmbeddedIndex(tmp_path / "ix", model=tiny_model)
    index.add([text], ids=["only"])
    assert index.search("x", k=3, mode="bm25") == []
    assert [h.id for h in index.search("x", k=3, mode="hybrid")] == ["only"]
    index.close()  # saves the empty base and closes
    with pytest.raises(InvalidInputError, match="closed"):
        index.count()
    assert check_index(tmp_path / "ix").ok
    with EmbeddedIndex(tmp_path / "ix", model=tiny_model) as reopened:
        assert reopened.search("x", k=3, mode="bm25") == []
        reopened.add(["part number XJ-4471"], ids=["rare"])
        assert reopened.search("XJ-4471", k=1, mode="bm25")[0].id == "rare"


def test_deleting_the_last_document_with_a_term_after_the_base_exists(tmp_path, tiny_model):
    with EmbeddedIndex(tmp_path / "ix", model=tiny_model) as index:
        index.add(["part number XJ-4471", "no"], ids=["rare", "stop"])
        index.flush()  # the lexical base exists
        assert index.delete(["rare"]) == 1  # compacts: the base is rebuilt over "no" alone
        assert index.count() == 1
        assert index.search("XJ-4471", k=1, mode="bm25") == []
    assert check_index(tmp_path / "ix").ok


def _flip_a_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) - 3] ^= 0x10  # inside the array, past the .npy header
    path.write_bytes(bytes(data))


def _renumber(folder, shift):
    """Rows' document numbers changed (reversed, or shifted down by one), saved as a segment
    that passes its checksums."""
    segment = lexical.Segment.load(folder)
    doc_nos = segment.doc_nos.copy()
    numbered = doc_nos >= 0
    doc_nos[numbered] = doc_nos[numbered] - 1 if shift else doc_nos[numbered][::-1]
    lexical.Segment(segment.retriever, doc_nos, segment.upto, segment.average_length
                    ).save(folder.parent)


def _foreign(folder, tmp_path, tiny_model):
    """The segment of another index with as many documents, renamed to this one's name."""
    texts, ids, _ = synthetic_docs(41, seed=7)
    with EmbeddedIndex(tmp_path / "other", model=tiny_model) as other:
        other.add(texts, ids=ids)
    (_, theirs), = saved_segments(tmp_path / "other")
    shutil.rmtree(folder)
    shutil.copytree(theirs, folder)


LEXICAL_DAMAGES = {
    "an empty array file": lambda f, *_: (f / "indices.csc.index.npy").write_bytes(b""),
    "a flipped bit in the index array": lambda f, *_: _flip_a_bit(f / "indices.csc.index.npy"),
    "a flipped bit in the weights": lambda f, *_: _flip_a_bit(f / "data.csc.index.npy"),
    "an unknown file": lambda f, *_: (f / "extra.npy").write_bytes(b"x"),
    "rows reordered": lambda f, *_: _renumber(f, shift=False),
    "rows renumbered": lambda f, *_: _renumber(f, shift=True),
    "a segment of another index": _foreign,
}


@pytest.mark.parametrize("damage", list(LEXICAL_DAMAGES))
def test_any_lexical_damage_is_found_by_check_and_rebuilt(index, tiny_model, tmp_path, damage):
    from colbridge.cli import app
    from typer.testing import CliRunner

    path = index.path
    expected = [h.id for h in index.search("alpha XJ-4471 river", k=5, mode="bm25")]
    index.close()
    (_, folder), = saved_segments(path)
    LEXICAL_DAMAGES[damage](folder, tmp_path, tiny_model)
    report = check_index(path)
    assert not report.ok and report.repairable, report.problems
    assert any("lexical segment" in p for p in report.problems), report.problems
    cli = CliRunner().invoke(app, ["check", "--index", str(path)])
    assert cli.exit_code == 1 and "lexical segment" in cli.output, cli.output
    assert check_index(path, repair=True).ok
    with EmbeddedIndex(path, model=tiny_model) as reopened:
        assert [h.id for h in reopened.search("alpha XJ-4471 river", k=5, mode="bm25")] == expected


@pytest.mark.parametrize("damage", ["an empty array file", "a flipped bit in the index array",
                                    "a flipped bit in the weights", "rows reordered",
                                    "rows renumbered"])
def test_a_segment_failing_its_checks_is_rebuilt_on_open(index, tiny_model, tmp_path, damage,
                                                            caplog):
    path = index.path
    expected = [(h.id, h.score) for h in index.search("alpha XJ-4471 river", k=5, mode="bm25")]
    index.close()
    (_, folder), = saved_segments(path)
    LEXICAL_DAMAGES[damage](folder, tmp_path, tiny_model)
    with caplog.at_level(logging.WARNING), EmbeddedIndex(path, model=tiny_model) as reopened:
        got = [(h.id, h.score) for h in reopened.search("alpha XJ-4471 river", k=5, mode="bm25")]
    assert got == expected and "damaged lexical segment" in caplog.text
    assert check_index(path).ok  # the close saved a sound segment in its place
