"""Long documents split into passages: windows, per-document semantics, MaxP scores, the
``long_documents`` setting (``colbridge.passages``)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from colbridge import (
    DocumentTooLongError,
    EmbeddedIndex,
    IndexMismatchError,
    IndexNotFoundError,
    InvalidInputError,
    LongDocuments,
    Passage,
    Reranker,
)
from colbridge.passages import STRIDE, encode_documents, windows
from colbridge.scoring import maxsim


def long_text(words: int, tail: str = "", seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    vocabulary = ["river", "stone", "market", "cloud", "engine", "garden", "letter", "winter",
                  "copper", "harbour", "signal", "forest", "ladder", "mirror", "candle"]
    body = " ".join(f"{rng.choice(vocabulary)}{'.' if i % 9 == 8 else ''}" for i in range(words))
    return f"{body} {tail}".strip()


def passage_maxsims(model, query: str, text: str, spans: list[tuple[int, int]]) -> list[float]:
    """MaxSim of each passage, encoded on its own: what MaxP takes the best of."""
    q = model.encode_query(query)
    return [maxsim(q, v) for v in model.encode_documents([text[s:e] for s, e in spans])]


# -- windows -----------------------------------------------------------------------------------
@pytest.mark.parametrize("stride", [0.5, STRIDE])
def test_windows_cover_every_token_overlap_as_asked_and_never_cut_a_word(tiny_model, stride):
    text = long_text(300, "unbreakablesupercalifragilisticword end") + " pre-war co-op 3.14"
    (offsets,) = tiny_model.document_token_offsets([text])
    size = tiny_model.passage_tokens
    spans = windows(text, offsets, size, stride)
    assert len(spans) > 2
    starts = [s for s, _ in offsets]
    covered = set()
    for begin, end in spans:
        inside = [i for i, (s, e) in enumerate(offsets) if s >= begin and e <= end]
        assert 0 < len(inside) <= size
        covered.update(inside)
        # A passage starts and ends on token boundaries, and between words.
        assert begin in starts and end in {e for _, e in offsets}
        assert not (begin > 0 and text[begin - 1].isalnum() and text[begin].isalnum())
        assert not (end < len(text) and text[end - 1].isalnum() and text[end].isalnum())
        # Its text tokenizes into exactly its tokens again.
        (again,) = tiny_model.document_token_offsets([text[begin:end]])
        assert len(again) == len(inside)
    assert covered == set(range(len(offsets)))
    # Consecutive windows share tokens when the stride is shorter than a window, else abut.
    if stride < 1:
        assert all(b_start < a_end for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    else:
        assert all(b_start >= a_end for (_, a_end), (b_start, _) in itertools.pairwise(spans))


def test_a_text_that_fits_is_one_window(tiny_model):
    text = "A short text, well within one window."
    (offsets,) = tiny_model.document_token_offsets([text])
    assert windows(text, offsets, tiny_model.passage_tokens) == [(0, len(text))]
    encoded = encode_documents(tiny_model, [text], long_documents="split")
    assert encoded.passages == [None]


def test_split_encoding_keeps_every_token_and_records_rows(tiny_model):
    text = long_text(200)
    encoded = encode_documents(tiny_model, [text], long_documents="split")
    (layout,) = encoded.passages
    assert layout is not None and len(layout) > 1
    assert sum(p.rows for p in layout) == len(encoded.embeddings[0])
    assert layout[0].start == 0 and layout[-1].end == len(text)
    pieces = tiny_model.encode_documents([text[p.start:p.end] for p in layout])
    np.testing.assert_allclose(encoded.embeddings[0], np.concatenate(pieces), atol=1e-6)


def test_truncate_keeps_the_old_behaviour(tiny_model):
    text = long_text(200)
    with pytest.warns(UserWarning, match="truncated"):
        encoded = encode_documents(tiny_model, [text], long_documents="truncate")
    assert encoded.passages == [None]
    assert len(encoded.embeddings[0]) <= tiny_model.document_length


def test_unknown_setting_is_refused(tiny_model):
    with pytest.raises(InvalidInputError, match="long_documents"):
        encode_documents(tiny_model, ["text"], long_documents="chunk")
    with pytest.raises(InvalidInputError, match="long_documents"):
        Reranker(tiny_model, long_documents="chunk")


# -- the embedded index ------------------------------------------------------------------------
ANSWER = "the lighthouse keeper painted the beacon violet"


@pytest.fixture
def split_index(tmp_path, tiny_model):
    index = EmbeddedIndex(tmp_path / "index", model=tiny_model, codec="float16")
    texts = [long_text(250, ANSWER, seed=1), long_text(30, seed=2), "violet beacon, short one"]
    index.add(texts, ids=["long", "medium", "short"], metadatas=[{"n": 1}, {"n": 2}, {"n": 3}])
    yield index, texts
    index.close()


def test_a_new_index_splits_and_stays_per_document(split_index):
    index, texts = split_index
    assert index.long_documents == LongDocuments.SPLIT
    assert index.count() == 3 and index.ids() == ["long", "medium", "short"]
    assert [d.text for d in index.get(["long", "short"])] == [texts[0], texts[2]]
    assert index.ids(filter={"n": 1}) == ["long"]
    stats = index.stats()
    assert stats["documents"] == 3 and stats["split_documents"] == 1
    (stored,) = index.get(["long"], with_vectors=True)
    layout = index._passages(["long"])["long"]
    assert sum(p.rows for p in layout) == len(stored.vectors)


def test_score_is_the_best_passage_and_the_hit_names_it(split_index, tiny_model):
    index, texts = split_index
    query = "lighthouse keeper beacon violet"
    hits = index.search(query, k=3, exact_threshold=10)
    assert sorted(h.id for h in hits) == ["long", "medium", "short"]  # k distinct documents
    long_hit = next(h for h in hits if h.id == "long")
    layout = index._passages(["long"])["long"]
    spans = [(p.start, p.end) for p in layout]
    scores = passage_maxsims(tiny_model, query, texts[0], spans)
    assert long_hit.score == pytest.approx(max(scores), abs=2e-3)  # float16 storage
    assert long_hit.passage == spans[int(np.argmax(scores))]
    assert next(h for h in hits if h.id == "short").passage is None


def test_k_counts_documents_when_one_documents_passages_rank_high(tmp_path, tiny_model):
    many = " ".join(["violet beacon lighthouse keeper"] * 120)  # every passage matches
    with EmbeddedIndex(tmp_path / "index", model=tiny_model) as index:
        index.add([many, "violet beacon", "lighthouse keeper", "unrelated text here"],
                  ids=["many", "a", "b", "c"])
        assert len(index._passages(["many"])["many"]) > 3
        for threshold in (0, 100):  # through the graph, and scored whole
            hits = index.search("violet beacon lighthouse keeper", k=3, exact_threshold=threshold)
            assert len(hits) == 3 and len({h.id for h in hits}) == 3


def test_delete_and_upsert_replace_every_passage(split_index):
    index, _ = split_index
    index.add(["now a short text about a violet beacon"], ids=["long"])
    assert index.count() == 3 and index._passages(["long"]) == {}
    (hit,) = [h for h in index.search("violet beacon", k=3) if h.id == "long"]
    assert hit.passage is None and hit.text.startswith("now a short")
    index.delete(["long"])
    assert index.count() == 2 and "long" not in {h.id for h in index.search("violet", k=3)}


def test_split_documents_survive_reopening_and_compaction(split_index, tmp_path, tiny_model):
    index, _ = split_index
    before = [(h.id, h.passage) for h in index.search("lighthouse keeper", k=3)]
    index.delete(["medium"])
    index.compact()
    index.close()
    with EmbeddedIndex(tmp_path / "index", model=tiny_model) as again:
        assert again.long_documents == LongDocuments.SPLIT
        after = [(h.id, h.passage) for h in again.search("lighthouse keeper", k=3)]
    assert after == [hit for hit in before if hit[0] != "medium"]


def test_error_setting_names_the_document_and_writes_nothing(tmp_path, tiny_model):
    index = EmbeddedIndex(tmp_path / "index", model=tiny_model, long_documents="error")
    with pytest.raises(DocumentTooLongError, match=r"'big' has \d+ tokens") as caught:
        index.add(["short", long_text(200)], ids=["small", "big"])
    assert isinstance(caught.value, InvalidInputError)
    with pytest.raises(IndexNotFoundError):  # nothing was written, not even the folder
        index.count()
    index.add(["short"], ids=["small"])
    with pytest.raises(DocumentTooLongError):
        index.add([long_text(200)], ids=["big"])
    assert index.ids() == ["small"]
    index.close()


def test_truncate_setting_stores_documents_whole(tmp_path, tiny_model):
    with EmbeddedIndex(tmp_path / "index", model=tiny_model, long_documents="truncate") as index:
        with pytest.warns(UserWarning, match="truncated"):
            index.add([long_text(250, ANSWER)], ids=["long"])
        assert index._passages(["long"]) == {}
        assert index.search("violet", k=1)[0].passage is None


def test_a_folder_from_before_passages_truncates(tmp_path, tiny_model):
    path = tmp_path / "index"
    with EmbeddedIndex(path, model=tiny_model, long_documents="truncate") as index:
        index.add(["a short text"], ids=["a"])
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["long_documents"]
    manifest["format_version"] = 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    with EmbeddedIndex(path, model=tiny_model) as old:
        assert old.long_documents == LongDocuments.TRUNCATE
        with pytest.warns(UserWarning, match="truncated"):
            old.add([long_text(250)], ids=["long"])
        assert old._passages(["long"]) == {}
    with pytest.raises(IndexMismatchError, match="long_documents='truncate'"):
        EmbeddedIndex(path, model=tiny_model, long_documents="split")


def test_add_encoded_takes_passages_and_checks_them(tmp_path, tiny_model):
    text = long_text(200, ANSWER)
    encoded = encode_documents(tiny_model, [text], long_documents="split")
    with EmbeddedIndex(tmp_path / "index", model=tiny_model) as index:
        bad = [(Passage(0, 5, 1),)]
        with pytest.raises(InvalidInputError, match="add up"):
            index.add_encoded(encoded.embeddings, [text], ids=["x"], passages=bad)
        index.add_encoded(encoded.embeddings, [text], ids=["x"], passages=encoded.passages)
        assert index._passages(["x"])["x"] == encoded.passages[0]


def test_explained_passage_hit_adds_up_and_points_into_the_whole_text(split_index):
    index, _ = split_index
    (hit,) = [h for h in index.search("lighthouse keeper painted violet", k=3, explain=True)
              if h.id == "long"]
    assert hit.passage is not None and hit.passage[0] > 0
    assert sum(m.score for m in hit.matches) == pytest.approx(hit.score, abs=1e-4)
    start, end = hit.passage
    for match in hit.matches:
        if match.span is not None:
            assert start <= match.span[0] < match.span[1] <= end
    assert hit.highlights and all(start <= a < b <= end for a, b in hit.highlights)


# -- the reranker ------------------------------------------------------------------------------
def test_reranker_scores_long_texts_by_their_best_passage(tiny_model):
    text = long_text(250, ANSWER, seed=3)
    query = "lighthouse keeper beacon violet"
    (result,) = Reranker(tiny_model).rerank(query, [text], explain=True)
    layout = encode_documents(tiny_model, [text], long_documents="split").passages[0]
    spans = [(p.start, p.end) for p in layout]
    scores = passage_maxsims(tiny_model, query, text, spans)
    assert result.score == pytest.approx(max(scores), rel=1e-5)
    assert result.passage == spans[int(np.argmax(scores))]
    assert sum(m.score for m in result.matches) == pytest.approx(result.score, abs=1e-4)
    (whole,) = Reranker(tiny_model, long_documents="truncate").rerank(query, [text])
    assert whole.passage is None
    with pytest.raises(DocumentTooLongError):
        Reranker(tiny_model, long_documents="error").rerank(query, [text])
