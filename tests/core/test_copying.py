"""Models, indexes and rerankers survive ``copy.deepcopy`` and ``pickle``.

Frameworks copy and serialise the objects they are given (deep copies in configurable chains,
pickles for process pools). A model or an index is a handle (on weights, on a folder): a deep
copy shares it, and a pickle carries what it takes to open it again.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest
from colbridge import ColBERTModel, EmbeddedIndex, InvalidInputError, Reranker
from colbridge.index.embedded import SearchOptions

TEXTS = ["Tides follow the Moon.", "Bread rises with yeast.", "Comets have icy cores.",
         "Violins have four strings.", "Glaciers carve valleys."]


@pytest.fixture
def index(tmp_path, tiny_model):
    options = SearchOptions(token_k=32, ef=64, max_candidates=16, exact_threshold=2)
    with EmbeddedIndex(tmp_path / "index", model=tiny_model, search_options=options,
                       lock_timeout=3.0) as ix:
        ix.add(TEXTS, ids=[f"t{i}" for i in range(len(TEXTS))],
               metadatas=[{"n": i} for i in range(len(TEXTS))])
        yield ix


def test_a_model_pickles_as_its_recipe_not_its_weights(tiny_model_path):
    model = ColBERTModel(tiny_model_path, name="tiny-test-model", device="cpu", batch_size=3,
                         query_length=12)
    expected = model.encode_query("tides and the Moon")
    data = pickle.dumps(model)
    assert len(data) < 10_000  # no weights in it
    clone = pickle.loads(data)
    assert type(clone) is ColBERTModel and not clone.loaded
    assert (clone.name, clone.batch_size, clone.query_length) == ("tiny-test-model", 3, 12)
    np.testing.assert_allclose(clone.encode_query("tides and the Moon"), expected, atol=1e-6)


def test_a_copy_of_a_model_is_the_model(tiny_model):
    assert copy.copy(tiny_model) is tiny_model
    assert copy.deepcopy(tiny_model) is tiny_model
    assert copy.deepcopy({"m": tiny_model})["m"] is tiny_model


def test_a_model_around_an_in_memory_pylate_model_refuses_to_pickle(tiny_model_path):
    pylate_model = ColBERTModel(tiny_model_path, backend="torch").load()
    wrapped = ColBERTModel(pylate_model, name="in-memory")
    with pytest.raises(TypeError, match=r"in-memory PyLate model.*save"):
        pickle.dumps(wrapped)


def test_an_index_pickles_as_its_folder_and_options(index):
    expected = index.search("moon tides", k=3)
    clone = pickle.loads(pickle.dumps(index))
    try:
        assert clone is not index and clone.path == index.path
        assert clone.options == index.options and clone.model.name == index.model.name
        assert clone._lock_timeout == index._lock_timeout
        assert [(h.id, h.score) for h in clone.search("moon tides", k=3)] == [
            (h.id, h.score) for h in expected]
    finally:
        clone.close()


def test_an_index_travels_to_another_process(index, tmp_path):
    (tmp_path / "index.pickle").write_bytes(pickle.dumps(index))
    index.flush()
    child = ("import pickle, sys\n"
             "ix = pickle.loads(open(sys.argv[1], 'rb').read())\n"
             "print(','.join(h.id for h in ix.search('moon tides', k=3)))\n"
             "ix.close()\n")
    run = subprocess.run([sys.executable, "-c", child, str(tmp_path / "index.pickle")],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-1] == ",".join(h.id for h in index.search("moon tides", k=3))


def test_a_copy_of_an_index_is_the_index(index):
    assert copy.copy(index) is index
    assert copy.deepcopy(index) is index


def test_a_closed_index_refuses_to_pickle(tmp_path, tiny_model):
    ix = EmbeddedIndex(tmp_path / "closed", model=tiny_model)
    ix.close()
    with pytest.raises(InvalidInputError, match="closed"):
        pickle.dumps(ix)


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda r: pickle.loads(pickle.dumps(r))],
                         ids=["deepcopy", "pickle"])
def test_a_reranker_copies(tiny_model, clone):
    reranker = Reranker(tiny_model, cache_size=8)
    expected = reranker.rerank("moon", TEXTS)
    copied = clone(reranker)
    assert copied.cache_size == 8
    assert [(r.index, round(r.score, 4)) for r in copied.rerank("moon", TEXTS)] == [
        (r.index, round(r.score, 4)) for r in expected]
