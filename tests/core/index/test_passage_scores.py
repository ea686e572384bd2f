"""The embedded index's exact stage over passages (``passage_scores``, the snapshot's passage
table, ``best_passages``) against a reference that scores every passage on its own, on a mix
of split and whole documents after upserts and deletes, before and after reopening."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from colbridge import EmbeddedIndex
from colbridge.index.embedded import _SnapshotSearch, passage_scores
from colbridge.passages import Passage
from colbridge.scoring import maxsim_ranges


def _layout(rng: np.random.Generator, rows: int, pieces: int) -> tuple[Passage, ...] | None:
    """``pieces`` passages over ``rows`` rows of a ``10 * rows``-character text (None: whole)."""
    if pieces == 1:
        return None
    cuts = np.sort(rng.choice(np.arange(1, rows), pieces - 1, replace=False))
    bounds = [0, *cuts.tolist(), rows]
    return tuple(Passage(10 * a, 10 * b, b - a) for a, b in itertools.pairwise(bounds))


def _add(index, rng, ids, pieces):
    rows = [int(rng.integers(max(p, 2) * 2, 40)) for p in pieces]
    vectors = [rng.normal(size=(n, index.dimension)).astype(np.float32) for n in rows]
    layouts = [_layout(rng, n, p) for n, p in zip(rows, pieces, strict=True)]
    index.add_encoded(vectors, ["x" * (10 * n) for n in rows], ids=ids, passages=layouts)


def _reference(query, snap, doc_nos):
    """Every passage scored alone from the snapshot's layouts: (best score, its passage) each."""
    scores, best = [], []
    for n in doc_nos.tolist():
        start, count = int(snap.starts[n]), int(snap.counts[n])
        layout = snap.passages.get(n, (Passage(0, 1, count),))
        offsets = np.cumsum([0] + [p.rows for p in layout])[:-1]
        each = [float(maxsim_ranges(query, snap.vectors, np.array([start + o]),
                                    np.array([p.rows]))[0])
                for o, p in zip(offsets, layout, strict=True)]
        scores.append(max(each))
        best.append(int(np.argmax(each)))
    return np.array(scores, np.float32), np.array(best)


@pytest.fixture
def mixed(tmp_path, tiny_model):
    """An index of split and whole documents that upserts and deletes have been through."""
    rng = np.random.default_rng(11)
    index = EmbeddedIndex(tmp_path / "index", model=tiny_model)
    _add(index, rng, [f"a{i}" for i in range(12)], [1, 3, 2, 1, 4, 2, 1, 1, 3, 2, 1, 2])
    _add(index, rng, ["a1", "a3", "a5"], [1, 3, 2])  # split -> whole, whole -> split, new layout
    index.delete(["a2", "a7"])  # a split one and a whole one
    _add(index, rng, [f"b{i}" for i in range(5)], [2, 1, 3, 1, 2])
    yield index, rng
    index.close()


def _check(index, rng):
    snap = index._fresh_snapshot()
    doc_nos = rng.permutation(snap.live)
    for _ in range(3):
        query = rng.normal(size=(5, index.dimension)).astype(np.float32)
        query /= np.linalg.norm(query, axis=1, keepdims=True)
        scores, best = passage_scores(query, snap, doc_nos)
        expected, expected_best = _reference(query, snap, doc_nos)
        np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(best, expected_best)


def test_vectorised_passage_scores_equal_scoring_each_passage_alone(mixed):
    index, rng = mixed
    snap = index._fresh_snapshot()
    assert len(snap.passages) >= 8 and len(snap.live) == 15  # mixed, as meant
    _check(index, rng)


def test_the_passage_table_built_on_opening_scores_the_same(mixed, tiny_model):
    index, rng = mixed
    path = index.path
    index.close()
    with EmbeddedIndex(path, model=tiny_model) as reopened:
        _check(reopened, rng)
        reopened.compact()  # rows move; the table is built again
        _check(reopened, rng)


def test_whole_documents_only_have_no_passage_table(tmp_path, tiny_model):
    rng = np.random.default_rng(3)
    with EmbeddedIndex(tmp_path / "index", model=tiny_model) as index:
        _add(index, rng, ["a", "b", "c"], [1, 1, 1])
        snap = index._fresh_snapshot()
        assert snap.passage_rows is None
        query = rng.normal(size=(4, index.dimension)).astype(np.float32)
        scores, best = passage_scores(query, snap, snap.live)
        np.testing.assert_allclose(scores, _reference(query, snap, snap.live)[0], rtol=1e-5)
        assert not best.any()
        _add(index, rng, ["b"], [3])  # the first split document
        assert index._fresh_snapshot().passage_rows is not None
        index.delete(["b"])  # the last one gone
        _check(index, rng)


def test_hits_carry_the_passage_the_exact_stage_found_best(mixed):
    index, rng = mixed
    for _ in range(5):
        query = rng.normal(size=(5, index.dimension)).astype(np.float32)
        query /= np.linalg.norm(query, axis=1, keepdims=True)
        hits = index.search_encoded(query, k=15)
        snap = index._fresh_snapshot()
        numbers = index._store.doc_nos_for_ids([h.id for h in hits])
        fresh = _SnapshotSearch(index, snap, index.options)  # no exact stage ran: scores anew
        spans = fresh.best_passages(query, np.array([numbers[h.id] for h in hits], np.int64))
        for hit in hits:
            n = numbers[hit.id]
            if n not in snap.passages:
                assert hit.passage is None
                continue
            _, (best,) = _reference(query, snap, np.array([n]))
            passage = snap.passages[n][best]
            assert hit.passage == spans[n] == (passage.start, passage.end)


def _hit_reference(query, snap, doc_nos, rows):
    """Each document's MaxSim over the passages holding one of ``rows`` (all of them when it
    is whole or none does), scored one passage at a time; and whether some were left out."""
    scores, partial = [], False
    for n in doc_nos.tolist():
        start, count = int(snap.starts[n]), int(snap.counts[n])
        layout = snap.passages.get(n, (Passage(0, 1, count),))
        offsets = np.cumsum([0] + [p.rows for p in layout])[:-1]
        spans = [(start + o, start + o + p.rows) for o, p in zip(offsets, layout, strict=True)]
        hit = [any(a <= r < b for r in rows) for a, b in spans]
        if len(layout) == 1 or not any(hit):
            hit = [True] * len(layout)
        partial |= not all(hit)
        scores.append(max(
            float(maxsim_ranges(query, snap.vectors, np.array([a]), np.array([b - a]))[0])
            for (a, b), h in zip(spans, hit, strict=True) if h))
    return np.array(scores, np.float32), partial


def test_first_stage_candidates_are_scored_over_the_passages_it_hit(mixed):
    index, rng = mixed
    snap = index._fresh_snapshot()
    graph, seen = index._graph, {}
    query_graph = graph.query

    def capture(*args, **kwargs):
        ids, sims = query_graph(*args, **kwargs)
        seen["ids"] = ids
        return ids, sims

    partial = False
    for _ in range(6):
        query = rng.normal(size=(3, index.dimension)).astype(np.float32)
        query /= np.linalg.norm(query, axis=1, keepdims=True)
        view = _SnapshotSearch(index, snap, index._search_options(
            {"token_k": 2, "exact_threshold": 0}, index.count()))
        graph.query = capture
        try:
            candidates = view.first_stage(query, view.pool([]), 3)
        finally:
            del graph.query
        assert candidates is not None
        rows = seen["ids"].ravel().tolist()
        expected, left_out = _hit_reference(query, snap, candidates.keys, rows)
        partial |= left_out
        np.testing.assert_allclose(view.exact_maxsim(query, candidates.keys), expected,
                                   rtol=1e-5, atol=1e-5)
        # a key the first stage did not give (as BM25 adds in hybrid mode): all its passages
        others = np.setdiff1d(snap.live, candidates.keys)
        np.testing.assert_allclose(view.exact_maxsim(query, others),
                                   _reference(query, snap, others)[0], rtol=1e-5, atol=1e-5)
    assert partial  # some split candidate had passages the first stage missed


def test_the_coarse_pass_rescores_the_best_documents_passages_exactly(mixed):
    """``rescore``: every passage is scored coarsely, then the passages of the documents with
    the best coarse scores again, exactly; the rest keep their coarse scores."""
    from colbridge.index.embedded import _passage_units

    index, rng = mixed
    snap = index._fresh_snapshot()
    doc_nos = rng.permutation(snap.live)
    owner, bounds, starts, counts, _ = _passage_units(snap, doc_nos)
    for _ in range(3):
        query = rng.normal(size=(5, index.dimension)).astype(np.float32)
        query /= np.linalg.norm(query, axis=1, keepdims=True)
        coarse = maxsim_ranges(query, snap.vectors, starts, counts, coarse=True)
        coarse_best = np.maximum.reduceat(coarse, bounds)
        chosen = np.argsort(-coarse_best, kind="stable")[:4]
        scores, best = passage_scores(query, snap, doc_nos, rescore=4)
        expected, expected_best = _reference(query, snap, doc_nos)
        np.testing.assert_allclose(scores[chosen], expected[chosen], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(best[chosen], expected_best[chosen])
        others = np.setdiff1d(np.arange(len(doc_nos)), chosen)
        np.testing.assert_allclose(scores[others], coarse_best[others], rtol=1e-6, atol=1e-6)
        assert not np.allclose(coarse_best, expected, rtol=0, atol=1e-6)  # scored coarsely
