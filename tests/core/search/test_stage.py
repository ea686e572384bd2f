"""The search stage against a fake backend: which primitives it asks for, and what it makes of
the answers (pre-rank budget, exact scoring, fusion, assembly)."""

from __future__ import annotations

import numpy as np
import pytest
from colbridge.scoring import maxsim
from colbridge.search import Candidates, Pool, fusion_named, run_search
from colbridge.search.fusion import DEFAULT_HYBRID_WEIGHT, register_fusion


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


class FakeBackend:
    """Documents with random unit token vectors and made-up BM25 scores; records each call.

    ``first`` decides the first stage: None (no first stage), ``"exact"`` (candidates with their
    exact scores and documents, as Qdrant gives them) or ``"estimate"`` (every allowed document,
    with an estimate, as the embedded graph gives them)."""

    def __init__(self, n: int = 30, seed: int = 0, first: str | None = None,
                 lexical: dict[int, float] | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.vectors = {key: unit(rng.normal(size=(int(rng.integers(2, 6)), 8)))
                        for key in range(n)}
        self.metadata = {key: {"even": key % 2 == 0} for key in range(n)}
        self.bm25 = lexical if lexical is not None else {key: float(key % 7) for key in range(n)
                                                         if key % 7}
        self.first = first
        self.deleted: set[int] = set()
        self.calls: list[tuple[str, object]] = []

    def pool(self, conditions):
        self.calls.append(("pool", conditions))
        keys = np.array([k for k in self.vectors
                         if all(self.metadata[k].get(c.field) == c.value for c in conditions)],
                        np.int64)
        return Pool(size=len(keys), keys=keys, filtered=bool(conditions))

    def first_stage(self, query, pool, depth):
        self.calls.append(("first_stage", depth))
        if self.first is None:
            return None
        keys = pool.keys
        exact = self.exact(query, keys)
        if self.first == "exact":
            best = np.sort(np.argsort(-exact, kind="stable")[:depth])
            return Candidates(keys[best], exact=exact[best],
                              documents={int(k): self.document(int(k)) for k in keys[best]})
        return Candidates(keys, estimate=lambda: 0.5 * exact)  # any order-keeping guess

    def exact(self, query, keys):
        return np.array([maxsim(query, self.vectors[int(k)]) for k in keys], np.float32)

    def exact_maxsim(self, query, keys):
        self.calls.append(("exact_maxsim", np.asarray(keys).tolist()))
        return self.exact(query, keys)

    def lexical_candidates(self, text, pool, depth):
        self.calls.append(("lexical_candidates", depth))
        found = [k for k in pool.keys.tolist() if k in self.bm25]
        found.sort(key=lambda k: -self.bm25[k])
        found = found[:depth]
        return np.array(found, np.int64), np.array([self.bm25[k] for k in found], np.float32)

    def lexical_scores(self, text, keys):
        self.calls.append(("lexical_scores", np.asarray(keys).tolist()))
        return np.array([self.bm25.get(int(k), 0.0) for k in keys], np.float32)

    def document(self, key):
        return (f"d{key}", f"text {key}", self.metadata[key])

    def documents(self, keys):
        self.calls.append(("documents", list(keys)))
        return {k: self.document(k) for k in keys if k not in self.deleted}

    def best_passages(self, query, keys):
        self.calls.append(("best_passages", np.asarray(keys).tolist()))
        return {}  # every document here is one passage

    def asked(self, name):
        return [args for called, args in self.calls if called == name]


@pytest.fixture
def query():
    return unit(np.random.default_rng(7).normal(size=(4, 8)))


def brute_force(backend, query, keys=None):
    keys = list(backend.vectors) if keys is None else keys
    scores = {f"d{k}": maxsim(query, backend.vectors[k]) for k in keys}
    return sorted(scores, key=lambda i: -scores[i])


def test_a_pool_under_the_threshold_is_scored_exactly_whole(query):
    backend = FakeBackend(first="estimate")
    found = run_search(backend, query, 5, [], exact_threshold=30)
    assert backend.asked("first_stage") == []
    assert backend.asked("exact_maxsim") == [list(range(30))]
    assert [i for i, *_ in found] == brute_force(backend, query)[:5]
    assert found[0][1] == pytest.approx(maxsim(query, backend.vectors[int(found[0][0][1:])]))
    assert found[0][2:] == (f"text {found[0][0][1:]}", backend.metadata[int(found[0][0][1:])],
                            None)  # no passage: the document is stored whole


def test_without_a_first_stage_the_whole_pool_is_scored(query):
    backend = FakeBackend(first=None)
    found = run_search(backend, query, 3, [], exact_threshold=0)
    assert backend.asked("first_stage") == [3]
    assert backend.asked("exact_maxsim") == [list(range(30))]
    assert [i for i, *_ in found] == brute_force(backend, query)[:3]


def test_the_budget_keeps_the_best_estimates_for_exact_scoring(query):
    backend = FakeBackend(first="estimate")
    found = run_search(backend, query, 3, [], budget=8, exact_threshold=0)
    (scored,) = backend.asked("exact_maxsim")
    assert len(scored) == 8 and scored == sorted(scored)
    assert [f"d{k}" for k in scored] == sorted(brute_force(backend, query)[:8],
                                               key=lambda i: int(i[1:]))
    assert [i for i, *_ in found] == brute_force(backend, query)[:3]


def test_the_budget_is_at_least_the_depth(query):
    backend = FakeBackend(first="estimate")
    run_search(backend, query, 12, [], budget=4, exact_threshold=0)
    assert len(backend.asked("exact_maxsim")[0]) == 12


def test_exact_candidates_are_not_scored_again_and_their_documents_reused(query):
    backend = FakeBackend(first="exact")
    found = run_search(backend, query, 4, [])
    assert backend.asked("exact_maxsim") == [] and backend.asked("documents") == []
    assert [i for i, *_ in found] == brute_force(backend, query)[:4]


def test_an_empty_pool_asks_for_nothing_more(query):
    from colbridge.filters import parse_filter

    backend = FakeBackend(first="estimate")
    assert run_search(backend, query, 4, parse_filter({"even": "nowhere"}), mode="hybrid",
                      text="q") == []
    assert [name for name, _ in backend.calls] == ["pool"]


def test_the_filtered_pool_bounds_every_step(query):
    from colbridge.filters import parse_filter

    backend = FakeBackend(first="estimate")
    found = run_search(backend, query, 30, parse_filter({"even": True}), mode="hybrid", text="q")
    assert {int(i[1:]) % 2 for i, *_ in found} == {0}
    assert len(found) == 15  # the pool's size, though k is 30


def test_bm25_mode_asks_only_for_lexical_candidates():
    backend = FakeBackend(first="estimate")
    found = run_search(backend, None, 4, [], mode="bm25", text="q")
    assert [name for name, _ in backend.calls] == ["pool", "lexical_candidates", "documents"]
    assert [s for _, s, *_ in found] == [6.0, 6.0, 6.0, 6.0]
    assert [i for i, *_ in found] == ["d6", "d13", "d20", "d27"]  # ties keep BM25's order


def test_hybrid_scores_every_candidate_both_ways(query):
    lexical = {3: 5.0, 11: 2.0}  # two documents share a term; ColBERT's depth is the pool
    backend = FakeBackend(first="exact", lexical=lexical)
    found = run_search(backend, query, 30, [], mode="hybrid", text="q")
    colbert = {f"d{k}": maxsim(query, v) for k, v in backend.vectors.items()}
    values = np.array([colbert[f"d{k}"] for k in range(30)])
    bm25 = np.array([lexical.get(k, 0.0) for k in range(30)])
    expected = fusion_named("minmax").fuse(values, bm25, DEFAULT_HYBRID_WEIGHT)
    by_id = {i: s for i, s, *_ in found}
    for k in range(30):
        assert by_id[f"d{k}"] == pytest.approx(expected[k], abs=1e-6)
    assert backend.asked("lexical_scores") == [list(range(30))]


def test_hybrid_scores_lexical_only_candidates_exactly(query):
    backend = FakeBackend(first="exact", lexical={29: 9.0})
    run_search(backend, query, 2, [], mode="hybrid", text="q")
    # ColBERT's depth is max(k, 100) clamped to the pool: all 30, so nothing is left over.
    assert backend.asked("exact_maxsim") == []
    backend = FakeBackend(n=130, first="exact", lexical={129: 9.0})
    colbert_best = set(int(i[1:]) for i in brute_force(backend, query)[:100])
    run_search(backend, query, 2, [], mode="hybrid", text="q")
    assert backend.asked("exact_maxsim") == ([] if 129 in colbert_best else [[129]])


def test_the_hybrid_weight_extremes_give_each_ranking(query):
    backend = FakeBackend(first="exact")
    colbert = [i for i, *_ in run_search(backend, query, 5, [])]
    assert [i for i, *_ in run_search(backend, query, 5, [], mode="hybrid", text="q",
                                      hybrid_weight=1.0)] == colbert
    bm25 = run_search(backend, query, 5, [], mode="hybrid", text="q", hybrid_weight=0.0)
    assert [backend.bm25.get(int(i[1:]), 0.0) for i, *_ in bm25] == [6.0] * 4 + [5.0]
    # equal fused scores are ordered by MaxSim
    tied = [maxsim(query, backend.vectors[int(i[1:])]) for i, *_ in bm25[:4]]
    assert tied == sorted(tied, reverse=True)


def test_a_registered_fusion_rule_is_used_by_name(query):
    class LexicalFirst:
        name = "test-lexical-first"

        def fuse(self, colbert, lexical, weight):
            return np.asarray(lexical, np.float64)

    register_fusion(LexicalFirst())
    backend = FakeBackend(first="exact")
    found = run_search(backend, query, 3, [], mode="hybrid", text="q",
                       fusion="test-lexical-first")
    assert [s for _, s, *_ in found] == [6.0, 6.0, 6.0]


def test_documents_deleted_during_the_search_are_left_out(query):
    backend = FakeBackend(first="estimate")
    best = brute_force(backend, query)
    backend.deleted = {int(best[0][1:])}
    found = run_search(backend, query, 3, [], exact_threshold=100)
    assert [i for i, *_ in found] == best[1:3]


def test_a_pool_without_keys_needs_a_first_stage(query):
    class Keyless(FakeBackend):
        def pool(self, conditions):
            return Pool(size=None)

    with pytest.raises(TypeError, match="first stage"):
        run_search(Keyless(first=None), query, 3, [])


def test_hits_carry_the_best_passage_the_backend_names(query):
    class Passages(FakeBackend):
        def best_passages(self, query, keys):
            super().best_passages(query, keys)
            return {int(k): (0, int(k) + 1) for k in keys if int(k) % 2 == 0}

    backend = Passages(first="estimate")
    found = run_search(backend, query, 5, [], exact_threshold=30)
    assert backend.asked("best_passages") == [[int(i[1:]) for i, *_ in found]]  # the hits only
    for doc_id, *_, passage in found:
        key = int(doc_id[1:])
        assert passage == ((0, key + 1) if key % 2 == 0 else None)
    lexical = run_search(Passages(), None, 5, [], mode="bm25", text="q")
    assert all(passage is None for *_, passage in lexical)  # BM25 scores no passage
