"""LangChain's standard conformance suites, run against the adapter with the tiny test model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from colbridge import ColBERTModel, EmbeddedIndex
from langchain_colbridge import ColBERTRetriever, ColBERTVectorStore
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)


@pytest.fixture(scope="module")
def standard_index(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: ColBERTModel, sample_corpus: list[dict]
) -> Iterator[EmbeddedIndex]:
    corpus = sample_corpus[:10]
    path = tmp_path_factory.mktemp("standard") / "index"
    with EmbeddedIndex(path, model=tiny_model) as index:
        index.add([d["text"] for d in corpus], ids=[d["id"] for d in corpus],
                  metadatas=[d["metadata"] for d in corpus])
        yield index


class TestColBERTRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _use_index(self, standard_index: EmbeddedIndex) -> Iterator[None]:
        self._index = standard_index
        yield
        del self._index  # pytest keeps test instances alive; don't pin the index to them

    @property
    def retriever_constructor(self) -> type[ColBERTRetriever]:
        return ColBERTRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"index": self._index, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "How do pulsars keep such regular time?"


class TestColBERTVectorStoreStandard(VectorStoreIntegrationTests):
    """Sync and async tests both run (``has_sync`` and ``has_async`` keep their default True).

    The suite's ``get_embeddings()`` fake is not used: the store has no ``Embeddings`` object,
    the index's ColBERT model (the tiny test model) encodes everything.
    """

    @pytest.fixture
    def vectorstore(self, tmp_path: Path, tiny_model: ColBERTModel) -> Iterator[VectorStore]:
        store = ColBERTVectorStore.from_path(tmp_path / "index", model=tiny_model, create=True)
        try:
            yield store
        finally:
            store.index.close()
