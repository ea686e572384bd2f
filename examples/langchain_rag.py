"""Retrieval-augmented generation with LangChain and colbridge, runnable offline.

Two LCEL chains over the sample corpus that ships with colbridge:

1. ``ColBERTRetriever`` -> prompt -> chat model -> output parser: ColBERT late interaction is
   the retriever.
2. BM25 (colbridge's own lexical mode) -> ``ColBERTRerank`` -> prompt -> chat model -> parser:
   ColBERT reranks a cheap keyword first stage. Any LangChain retriever can be that first stage;
   this one needs nothing beyond colbridge (langchain-community, home of LangChain's
   ``BM25Retriever``, is being sunset).

The index is built in a temporary folder with the offline stand-in encoder ("offline-minilm")
unless ``COLBRIDGE_MODEL`` names another model. The chat model is LangChain's
``FakeListChatModel``, which replies with canned answers, so nothing here needs the network;
swap in any chat model (``langchain.chat_models.init_chat_model("...")``) for real answers.

    uv run python examples/langchain_rag.py
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib.resources import files
from pathlib import Path

from colbridge import ColBERTModel, EmbeddedIndex
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_colbridge import ColBERTRerank, ColBERTRetriever
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableParallel, RunnablePassthrough

PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Answer the question using only the context. Cite passage ids in brackets."),
    ("human", "Context:\n{context}\n\nQuestion: {question}"),
])


def load_corpus() -> list[Document]:
    """The sample corpus as LangChain documents (id, text, topic/year metadata)."""
    lines = (files("colbridge") / "data" / "sample_corpus.jsonl").read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [Document(id=r["id"], page_content=r["text"], metadata=r["metadata"]) for r in records]


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(f"[{doc.id}] {doc.page_content}" for doc in docs)


def rag_chain(retriever: BaseRetriever, answers: list[str]) -> Runnable:
    """retriever -> prompt -> chat model -> parser, keeping the retrieved documents as sources."""
    llm = FakeListChatModel(responses=answers)
    generate = (
        RunnablePassthrough.assign(context=lambda x: format_docs(x["docs"]))
        | PROMPT
        | llm
        | StrOutputParser()
    )
    return RunnableParallel(docs=retriever, question=RunnablePassthrough()).assign(
        answer=generate
    )


def show(title: str, result: dict) -> None:
    print(f"\n== {title}")
    print(f"Question: {result['question']}")
    print("Retrieved context:")
    for rank, doc in enumerate(result["docs"], 1):
        score = doc.metadata.get("relevance_score", float("nan"))
        print(f"  {rank}. {doc.id} (relevance {score:.3f}) {doc.page_content[:70]}...")
    print(f"Answer: {result['answer']}")


def main() -> None:
    model_name = os.environ.get("COLBRIDGE_MODEL", "").strip() or "offline-minilm"
    corpus = load_corpus()
    with tempfile.TemporaryDirectory(prefix="colbridge-example-") as scratch:
        print(f"Indexing {len(corpus)} passages with {model_name} ...")
        with EmbeddedIndex(Path(scratch) / "index", model=ColBERTModel(model_name)) as index:
            index.add([d.page_content for d in corpus], ids=[d.id for d in corpus],
                      metadatas=[d.metadata for d in corpus])

            # 1. ColBERT as the retriever.
            colbert_chain = rag_chain(
                ColBERTRetriever(index=index, k=3),
                ["The Moon is tidally locked: its spin slowed until one rotation takes as long "
                 "as one orbit, so the same face always points at Earth [astro-007]."],
            )
            show("Chain 1: ColBERTRetriever -> prompt -> chat model",
                 colbert_chain.invoke("Why do we only ever see one side of the Moon from Earth?"))

            # 2. A BM25 first stage (colbridge's lexical mode here; any LangChain retriever
            # works), ColBERT reranking its 8 candidates down to 3 (it encodes only those).
            question = "Which tiny creature can survive being dried out, frozen, or sent to space?"
            bm25 = ColBERTRetriever(index=index, k=8, mode="bm25")
            print(f"\nBM25 candidates: {', '.join(d.id for d in bm25.invoke(question))}")
            reranking = ContextualCompressionRetriever(
                base_compressor=ColBERTRerank(model=index.model, top_n=3), base_retriever=bm25
            )
            rerank_chain = rag_chain(
                reranking,
                ["Tardigrades (water bears): dried out they enter a dormant tun state and survive "
                 "freezing, radiation and even the vacuum of space [bio-001]."],
            )
            show("Chain 2: BM25 -> ColBERTRerank -> prompt -> chat model",
                 rerank_chain.invoke(question))


if __name__ == "__main__":
    main()
