"""On real text (SciFact), the graph path finds what exhaustive exact MaxSim finds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from colbridge import EmbeddedIndex

from ...conftest import SHARED_DATA

pytestmark = pytest.mark.shared_data

DOCUMENTS = 300
QUERIES = 60


def _load(path, limit):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(limit), f)]


def test_graph_top10_agrees_with_exact_maxsim_on_scifact(tmp_path, offline_model):
    corpus = _load(SHARED_DATA / "scifact" / "corpus.jsonl", DOCUMENTS)
    queries = [q["text"] for q in _load(SHARED_DATA / "scifact" / "queries.jsonl", QUERIES)]
    with EmbeddedIndex(tmp_path / "scifact", model=offline_model) as index:
        index.add([f"{d['title']}\n{d['text']}" for d in corpus], ids=[d["_id"] for d in corpus])
        agreement = []
        for query in queries:
            embedding = offline_model.encode_query(query)
            exact = {h.id for h in index.search_encoded(embedding, k=10, exact_threshold=10**6)}
            graph = {h.id for h in index.search_encoded(embedding, k=10, exact_threshold=0)}
            agreement.append(len(exact & graph) / 10)
    print(f"\nSciFact {DOCUMENTS} docs, {QUERIES} queries: top-10 agreement {np.mean(agreement):.3f}")
    assert np.mean(agreement) >= 0.95
