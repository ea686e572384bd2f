"""Fixtures for the LlamaIndex adapter tests.

LlamaIndex's global ``Settings`` point at mocks for the whole run, so nothing ever reaches
OpenAI. Index folders built here are session-scoped; copy them before writing to them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Settings
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import Document

TINY_MODEL_NAME = "tiny-test-model"  # the name tests/conftest.py gives the tiny model


@pytest.fixture(scope="session", autouse=True)
def nltk_data_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Give NLTK a private copy of the sentence-splitter data LlamaIndex bundles.

    ``SentenceSplitter`` loads NLTK's punkt and stopwords from llama-index-core's
    ``_static/nltk_cache``. Installed as hard links into uv's cache (uv's default, and what an
    environment synced before the workspace set ``link-mode = "copy"`` still has), NLTK 3.10's
    path checks refuse to read them (``PermissionError: ... refusing multiply-linked file``). A
    copied folder has single-link files; ``NLTK_DATA`` makes LlamaIndex use it instead, so that
    such an environment can still run these tests. ``test_fresh_install.py`` checks the real
    path, without this copy.
    """
    import llama_index.core

    if "NLTK_DATA" in os.environ:
        yield
        return
    bundled = Path(llama_index.core.__file__).parent / "_static" / "nltk_cache"
    target = tmp_path_factory.mktemp("nltk") / "nltk_cache"
    shutil.copytree(bundled, target)
    os.environ["NLTK_DATA"] = str(target)
    yield
    os.environ.pop("NLTK_DATA", None)


@pytest.fixture(scope="session", autouse=True)
def mock_settings() -> Iterator[None]:
    """Mock LLM and embedding model as LlamaIndex's defaults: no test may call OpenAI."""
    previous = (Settings._llm, Settings._embed_model)
    Settings.llm = MockLLM()
    Settings.embed_model = MockEmbedding(embed_dim=8)
    yield
    Settings._llm, Settings._embed_model = previous


@pytest.fixture(scope="session")
def sample_documents(sample_corpus: list[dict]) -> list[Document]:
    """The sample corpus as LlamaIndex documents; each document's id is the passage id."""
    return [Document(text=d["text"], metadata=d["metadata"], id_=d["id"]) for d in sample_corpus]


@pytest.fixture(scope="session")
def splitter() -> SentenceSplitter:
    """Chunks big enough that every sample passage is one node."""
    return SentenceSplitter(chunk_size=512, chunk_overlap=0)


@pytest.fixture(scope="session")
def sample_nodes(sample_documents: list[Document], splitter: SentenceSplitter) -> list:
    nodes = splitter(sample_documents)
    assert len(nodes) == len(sample_documents)
    return nodes


@pytest.fixture(scope="session")
def li_index_path(tmp_path_factory: pytest.TempPathFactory, offline_model, sample_nodes) -> Path:
    """An index of the sample nodes built through ColBERTRetriever with offline-minilm."""
    from llama_index.retrievers.colbridge import ColBERTRetriever

    path = tmp_path_factory.mktemp("li-sample") / "index"
    with ColBERTRetriever(path, model=offline_model, create=True) as retriever:
        retriever.insert_nodes(sample_nodes)
    return path


@pytest.fixture
def li_index_copy(li_index_path: Path, tmp_path: Path) -> Path:
    """A private, writable copy of :func:`li_index_path`."""
    target = tmp_path / "index"
    shutil.copytree(li_index_path, target)
    return target


class EventCollector(BaseEventHandler):
    """Keeps every instrumentation event it sees."""

    events: list[Any]  # set per instance: EventCollector(events=[])

    @classmethod
    def class_name(cls) -> str:
        return "EventCollector"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)

    def of_type(self, name: str) -> list[Any]:
        return [e for e in self.events if e.class_name() == name]


@pytest.fixture
def instrumentation() -> Iterator[tuple[EventCollector, SimpleSpanHandler]]:
    """An event collector and a span handler attached to LlamaIndex's root dispatcher."""
    root = get_dispatcher()
    events, spans = EventCollector(events=[]), SimpleSpanHandler()
    root.add_event_handler(events)
    root.add_span_handler(spans)
    yield events, spans
    root.event_handlers.remove(events)
    root.span_handlers.remove(spans)


def completed_span_names(spans: SimpleSpanHandler) -> list[str]:
    """``Class.method`` of every completed span."""
    return [span.id_.rsplit("-", 5)[0] for span in spans.completed_spans]


@pytest.fixture
def span_names():
    return completed_span_names
