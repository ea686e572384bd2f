"""Fixtures for index tests: small indexes over the tiny model."""

from __future__ import annotations

import pytest

from colbridge import EmbeddedIndex

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
         "sigma tau upsilon phi chi psi omega river mountain forest desert ocean valley").split()


def synthetic_docs(n: int, seed: int = 0) -> tuple[list[str], list[str], list[dict]]:
    """``n`` short distinct texts with ids ``d0..`` and metadata {group, n, even}."""
    import random

    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + f" item {i}"
             for i in range(n)]
    ids = [f"d{i}" for i in range(n)]
    metadatas = [{"group": f"g{i % 20}", "n": i, "even": i % 2 == 0} for i in range(n)]
    return texts, ids, metadatas


@pytest.fixture
def empty_index(tmp_path, tiny_model):
    index = EmbeddedIndex(tmp_path / "index", model=tiny_model)
    yield index
    index.close()


@pytest.fixture
def small_index(tmp_path, tiny_model):
    """40 synthetic documents."""
    index = EmbeddedIndex(tmp_path / "index", model=tiny_model)
    texts, ids, metadatas = synthetic_docs(40)
    index.add(texts, ids=ids, metadatas=metadatas)
    yield index
    index.close()


@pytest.fixture(scope="module")
def large_index(tmp_path_factory, tiny_model):
    """900 synthetic documents: more than the exact-search threshold, so the graph is used."""
    index = EmbeddedIndex(tmp_path_factory.mktemp("large") / "index", model=tiny_model)
    texts, ids, metadatas = synthetic_docs(900, seed=1)
    index.add(texts, ids=ids, metadatas=metadatas)
    yield index
    index.close()
