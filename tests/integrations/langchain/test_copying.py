"""The retriever, the vector store and the reranker survive ``copy.deepcopy`` and ``pickle``
(LangChain deep-copies runnables in configurable chains; process pools pickle them)."""

from __future__ import annotations

import copy
import gc
import pickle
import subprocess
import sys

import pytest
from langchain_colbridge import ColBERTRerank, ColBERTRetriever, ColBERTVectorStore
from langchain_core.documents import Document
from langchain_core.runnables import ConfigurableField

QUERY = "Why do we only ever see one side of the Moon?"


def roundtrip(obj):
    return pickle.loads(pickle.dumps(obj))


def test_retriever_deep_copy_shares_the_index(sample_index):
    retriever = ColBERTRetriever(index=sample_index, k=3, filter={"topic": "astronomy"})
    copied = copy.deepcopy(retriever)
    assert copied is not retriever and copied.index is sample_index
    assert copied.invoke(QUERY) == retriever.invoke(QUERY)


def test_retriever_in_a_configurable_chain(sample_index):
    retriever = ColBERTRetriever(index=sample_index, k=3).configurable_fields(
        k=ConfigurableField(id="k"))
    assert len(retriever.with_config(configurable={"k": 2}).invoke(QUERY)) == 2
    assert len(copy.deepcopy(retriever).invoke(QUERY)) == 3


def test_retriever_pickle_reopens_the_folder(sample_index):
    retriever = ColBERTRetriever(index=sample_index, k=4, mode="hybrid", hybrid_weight=0.3)
    clone = roundtrip(retriever)
    try:
        assert clone.index is not sample_index and clone.index.path == sample_index.path
        assert (clone.k, clone.mode, clone.hybrid_weight) == (4, "hybrid", 0.3)
        assert clone.invoke(QUERY) == retriever.invoke(QUERY)
    finally:
        clone.index.close()


def test_retriever_runs_in_another_process(sample_index, tmp_path):
    retriever = ColBERTRetriever(index=sample_index, k=3)
    sample_index.flush()
    (tmp_path / "retriever.pickle").write_bytes(pickle.dumps(retriever))
    child = ("import pickle, sys\n"
             "r = pickle.loads(open(sys.argv[1], 'rb').read())\n"
             "print(','.join(d.id for d in r.invoke(sys.argv[2])))\n")
    run = subprocess.run([sys.executable, "-c", child, str(tmp_path / "retriever.pickle"), QUERY],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-1] == ",".join(d.id for d in retriever.invoke(QUERY))


def test_vector_store_copies(sample_index):
    store = ColBERTVectorStore(sample_index)
    expected = store.similarity_search(QUERY, k=3)
    copied = copy.deepcopy(store)
    assert copied.index is sample_index and copied.similarity_search(QUERY, k=3) == expected
    as_retriever = copy.deepcopy(store.as_retriever(search_kwargs={"k": 3}))
    assert as_retriever.invoke(QUERY) == expected
    clone = roundtrip(store)
    try:
        assert clone.similarity_search(QUERY, k=3) == expected
    finally:
        clone.index.close()


def test_a_temporary_store_deep_copies_but_refuses_to_pickle(tiny_model):
    store = ColBERTVectorStore.from_texts(["one passage", "another passage"], tiny_model,
                                          ids=["a", "b"])
    copied = copy.deepcopy(store)
    assert copy.copy(store).index is store.index
    folder = store.index.path
    del store
    gc.collect()
    assert folder.exists()  # the copy still uses it
    assert copied.get_by_ids(["a"]) == [Document(id="a", page_content="one passage")]
    with pytest.raises(TypeError, match=r"temporary folder.*path="):
        pickle.dumps(copied)
    with pytest.raises(TypeError, match="temporary folder"):
        pickle.dumps(copied.as_retriever())
    del copied
    gc.collect()
    assert not folder.exists()


@pytest.mark.parametrize("clone", [copy.deepcopy, roundtrip], ids=["deepcopy", "pickle"])
def test_rerank_copies(tiny_model, tiny_model_path, clone):
    docs = [Document(id=str(i), page_content=f"passage {i} about tides") for i in range(5)]
    for rerank in (ColBERTRerank(model=tiny_model, top_n=3),
                   ColBERTRerank(model=tiny_model_path, top_n=2, batch_size=4)):
        copied = clone(rerank)
        assert copied.top_n == rerank.top_n
        assert copied.compress_documents(docs, "tides") == rerank.compress_documents(docs, "tides")
