"""A LlamaIndex query engine with ColBERT retrieval and ColBERT reranking, fully offline.

The sample corpus that ships with colbridge becomes LlamaIndex ``Document``s, a
``SentenceSplitter`` turns them into nodes, ``ColBERTRetriever`` indexes them in a temporary
folder, and a ``RetrieverQueryEngine`` answers with ``ColBERTRerank`` as its reranking stage.
``MockLLM`` stands in for the LLM (it answers with its own prompt), so nothing leaves the
machine; set ``Settings.llm`` to a real LLM to get real answers.

Run it with::

    uv run python examples/llamaindex_query_engine.py

The model is the offline stand-in ``offline-minilm`` unless ``COLBRIDGE_MODEL`` names another.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from importlib.resources import files
from pathlib import Path

from colbridge import ColBERTModel
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import Document
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters
from llama_index.postprocessor.colbridge_rerank import ColBERTRerank
from llama_index.retrievers.colbridge import ColBERTRetriever

QUESTIONS = [
    ("Why do we only ever see one side of the Moon from Earth?", None),
    (
        "How can bread rise if I don't have any commercial yeast?",
        MetadataFilters(filters=[MetadataFilter(key="topic", value="cooking")]),
    ),
    (
        "When was the particle that explains why things have mass finally detected?",
        MetadataFilters(
            filters=[MetadataFilter(key="year", value=1900, operator=FilterOperator.GTE)]
        ),
    ),
]


def load_documents() -> list[Document]:
    """The sample corpus, one ``Document`` per passage (its id becomes the ref doc id)."""
    corpus = files("colbridge").joinpath("data", "sample_corpus.jsonl")
    with corpus.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [Document(id_=r["id"], text=r["text"], metadata=r["metadata"]) for r in rows]


def show(question: str, response) -> None:  # type: ignore[no-untyped-def]
    print(f"\nQ: {question}")
    print(f"   MockLLM answered with its {len(str(response))}-character prompt; sources:")
    for rank, source in enumerate(response.source_nodes, 1):
        node = source.node
        first_stage = node.metadata["retrieval_score"]
        snippet = node.get_content()[:70].replace("\n", " ")
        print(
            f"   {rank}. {node.ref_doc_id:<11} rerank {source.score:6.2f}  "
            f"retrieval {first_stage:6.2f}  {snippet}..."
        )


def main() -> None:
    model = ColBERTModel(os.environ.get("COLBRIDGE_MODEL") or "offline-minilm")
    documents = load_documents()
    with tempfile.TemporaryDirectory() as folder:
        retriever = ColBERTRetriever.from_documents(
            documents,
            Path(folder) / "index",
            model=model,
            transformations=[SentenceSplitter(chunk_size=256, chunk_overlap=32)],
            similarity_top_k=10,
        )
        with retriever:
            print(
                f"Indexed {len(documents)} documents as {retriever.index.count()} nodes "
                f"with {model.name}."
            )
            rerank = ColBERTRerank(top_n=3, model=model, keep_retrieval_score=True)
            engine = RetrieverQueryEngine.from_args(
                retriever, llm=MockLLM(), node_postprocessors=[rerank]
            )
            for question, filters in QUESTIONS[:-1]:
                retriever.filters = filters
                show(question, engine.query(question))

            # The async path: aretrieve and apostprocess_nodes never block the event loop.
            question, retriever.filters = QUESTIONS[-1]
            show(question, asyncio.run(engine.aquery(question)))


if __name__ == "__main__":
    main()
