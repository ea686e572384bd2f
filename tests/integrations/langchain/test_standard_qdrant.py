"""LangChain's standard suites once more, with the Qdrant backend under the adapter (issue 7).

The adapter only speaks ``colbridge.BaseIndex``; these runs show it works unchanged on
``QdrantIndex`` (qdrant-client's in-memory local mode, offline).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from colbridge import ColBERTModel
from langchain_colbridge import ColBERTRetriever, ColBERTVectorStore
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)

pytest.importorskip("qdrant_client")
from colbridge import QdrantIndex  # noqa: E402

_names = itertools.count()


@pytest.fixture(scope="module")
def qdrant_standard_index(tiny_model: ColBERTModel, sample_corpus: list[dict]) -> Iterator[Any]:
    corpus = sample_corpus[:10]
    with QdrantIndex(":memory:", "standard", model=tiny_model) as index:
        index.add([d["text"] for d in corpus], ids=[d["id"] for d in corpus],
                  metadatas=[d["metadata"] for d in corpus])
        yield index


class TestColBERTRetrieverOnQdrant(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _use_index(self, qdrant_standard_index: Any) -> Iterator[None]:
        self._index = qdrant_standard_index
        yield
        del self._index

    @property
    def retriever_constructor(self) -> type[ColBERTRetriever]:
        return ColBERTRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"index": self._index, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "How do pulsars keep such regular time?"


class TestColBERTVectorStoreOnQdrant(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tiny_model: ColBERTModel) -> Iterator[VectorStore]:
        index = QdrantIndex(":memory:", f"store-{next(_names)}", model=tiny_model)
        try:
            yield ColBERTVectorStore(index)
        finally:
            index.close()
