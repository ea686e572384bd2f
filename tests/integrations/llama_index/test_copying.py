"""The retriever and the reranker survive ``copy.deepcopy`` and ``pickle`` (query pipelines and
process pools copy and serialise their components)."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
from colbridge import EmbeddedIndex
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.colbridge_rerank import ColBERTRerank
from llama_index.retrievers.colbridge import ColBERTRetriever

QUERY = "tides and the Moon"


def roundtrip(obj):
    return pickle.loads(pickle.dumps(obj))


def found(retriever: ColBERTRetriever) -> list[tuple[str, float]]:
    return [(n.node.node_id, round(n.score, 4)) for n in retriever.retrieve(QUERY)]


@pytest.fixture
def folder(tmp_path: Path, tiny_model) -> Path:
    nodes = [TextNode(id_=f"n{i}", text=f"passage {i} about {w}", metadata={"i": i})
             for i, w in enumerate(["tides", "the Moon", "bread", "comets", "violins"])]
    with ColBERTRetriever(tmp_path / "index", model=tiny_model, create=True) as retriever:
        retriever.insert_nodes(nodes)
    return tmp_path / "index"


def test_deep_copy_shares_the_index(folder: Path, tiny_model) -> None:
    with EmbeddedIndex(folder, model=tiny_model) as index:
        retriever = ColBERTRetriever(index, similarity_top_k=3, normalize_scores=True)
        copied = copy.deepcopy(retriever)
        assert copied is not retriever and copied.index is index
        assert found(copied) == found(retriever)


@pytest.mark.parametrize("opened_here", [True, False])
def test_pickle_reopens_the_folder(folder: Path, tiny_model, opened_here: bool) -> None:
    index = EmbeddedIndex(folder, model=tiny_model)
    retriever = (ColBERTRetriever(folder, model=tiny_model, similarity_top_k=2, mode="hybrid")
                 if opened_here else ColBERTRetriever(index, similarity_top_k=2, mode="hybrid"))
    clone = roundtrip(retriever)
    try:
        assert clone.index is not retriever.index and clone.index.path == folder
        assert (clone.similarity_top_k, clone.mode) == (2, "hybrid")
        assert found(clone) == found(retriever)
    finally:
        clone.close()
        clone.index.close()
        retriever.close()
        index.close()


@pytest.mark.parametrize("clone", [copy.deepcopy, roundtrip], ids=["deepcopy", "pickle"])
def test_rerank_copies(tiny_model, tiny_model_path: Path, clone) -> None:
    nodes = [NodeWithScore(node=TextNode(id_=str(i), text=f"passage {i} on tides"), score=0.1)
             for i in range(5)]
    for rerank in (ColBERTRerank(top_n=3, model=tiny_model),
                   ColBERTRerank(top_n=2, model=str(tiny_model_path), batch_size=4)):
        copied = clone(rerank)
        assert (copied.top_n, copied.batch_size) == (rerank.top_n, rerank.batch_size)
        bundle = QueryBundle(QUERY)
        assert [(n.node.node_id, round(n.score, 4))
                for n in copied.postprocess_nodes(nodes, bundle)] == [
            (n.node.node_id, round(n.score, 4)) for n in rerank.postprocess_nodes(nodes, bundle)]


def test_rerank_around_an_in_memory_model_says_why_it_cannot_pickle(tiny_model_path) -> None:
    from colbridge import ColBERTModel

    in_memory = ColBERTModel(tiny_model_path, backend="torch").load()  # a pylate.models.ColBERT
    rerank = ColBERTRerank(top_n=2, model=ColBERTModel(in_memory, name="in-memory"))
    with pytest.raises(TypeError, match="in-memory PyLate model"):
        pickle.dumps(rerank)
