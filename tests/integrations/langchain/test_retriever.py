"""ColBERTRetriever: k and filters per call, returned documents, callbacks, real async."""

from __future__ import annotations

import asyncio
import copy
from typing import Any
from uuid import UUID

import pytest
from colbridge import IndexCorruptError, InvalidInputError
from langchain_colbridge import ColBERTRetriever
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document


def test_documents_carry_id_metadata_and_normalised_score(sample_index, sample_corpus):
    by_id = {d["id"]: d for d in sample_corpus}
    docs = ColBERTRetriever(index=sample_index, k=5).invoke("neutron stars and radio pulses")
    hits = sample_index.search("neutron stars and radio pulses", k=5)
    assert [d.id for d in docs] == [h.id for h in hits]
    for doc, hit in zip(docs, hits, strict=True):
        assert doc.page_content == by_id[doc.id]["text"]
        score = doc.metadata.pop("relevance_score")
        assert score == pytest.approx(hit.normalized_score)
        assert 0.0 <= score <= 1.0
        assert doc.metadata == by_id[doc.id]["metadata"]
    scores = [h.normalized_score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_k_in_constructor_and_per_call(sample_index):
    retriever = ColBERTRetriever(index=sample_index, k=2)
    assert len(retriever.invoke("history of music")) == 2
    assert len(retriever.invoke("history of music", k=7)) == 7
    assert retriever.k == 2  # a per-call k does not stick
    assert len(retriever.invoke("history of music")) == 2


def test_default_k_is_four(sample_index):
    assert len(ColBERTRetriever(index=sample_index).invoke("planets")) == 4


def test_demo_queries_find_their_answer_with_their_filter(sample_index, demo_queries):
    retriever = ColBERTRetriever(index=sample_index, k=1)
    for q in demo_queries:
        kwargs: dict[str, Any] = {} if q["filter"] is None else {"filter": q["filter"]}
        assert retriever.invoke(q["query"], **kwargs)[0].id == q["expected_id"], q["query"]


def test_filter_per_call_restricts_results(sample_index):
    retriever = ColBERTRetriever(index=sample_index, k=10)
    cooking = retriever.invoke("how old is this tradition?", filter={"topic": "cooking"})
    assert cooking and all(d.metadata["topic"] == "cooking" for d in cooking)
    recent = retriever.invoke("discoveries", filter={"year": {"$gte": 1950, "$lt": 2000}})
    assert recent and all(1950 <= d.metadata["year"] < 2000 for d in recent)
    either = retriever.invoke("food", filter={"topic": {"$in": ["cooking", "gardening"]}})
    assert {d.metadata["topic"] for d in either} <= {"cooking", "gardening"}


def test_constructor_filter_is_the_default_and_a_call_replaces_it(sample_index):
    retriever = ColBERTRetriever(index=sample_index, k=10, filter={"topic": "astronomy"})
    assert {d.metadata["topic"] for d in retriever.invoke("stars")} == {"astronomy"}
    physics = retriever.invoke("stars", filter={"topic": "physics"})
    assert {d.metadata["topic"] for d in physics} == {"physics"}
    everything = retriever.invoke("stars", filter={}, k=40)
    assert len({d.metadata["topic"] for d in everything}) > 1
    unset = retriever.invoke("stars", filter=None, k=None, mode=None, hybrid_weight=None)
    assert [d.id for d in unset] == [d.id for d in retriever.invoke("stars")]  # None: the field


def test_bad_filter_and_unknown_option_are_reported(sample_index):
    retriever = ColBERTRetriever(index=sample_index)
    with pytest.raises(InvalidInputError):
        retriever.invoke("stars", filter={"year": {"$regex": "19"}})
    with pytest.raises(InvalidInputError, match="token_kk"):
        retriever.invoke("stars", token_kk=5)


def test_search_options_pass_through(sample_index):
    # exact_threshold=0 forces the graph stage; tiny candidate budgets still give k results.
    retriever = ColBERTRetriever(index=sample_index, k=3, search_options={"exact_threshold": 0})
    narrow = retriever.invoke("Why does the Moon show one face?", token_k=2, ef=8, max_candidates=3)
    assert len(narrow) == 3
    exact = ColBERTRetriever(index=sample_index, k=3).invoke("Why does the Moon show one face?")
    assert narrow[0].id == exact[0].id


def test_invoke_does_not_mutate_retriever_state(sample_index):
    filter_ = {"topic": {"$in": ["history", "music"]}}
    options = {"token_k": 32}
    retriever = ColBERTRetriever(index=sample_index, k=3, filter=filter_, search_options=options)
    before = (copy.deepcopy(filter_), copy.deepcopy(options))
    first = retriever.invoke("an ancient inscription")
    first[0].metadata["topic"] = "changed by the caller"
    retriever.invoke("an ancient inscription", k=5, token_k=8, filter={"topic": "music"})
    assert (filter_, options) == before
    assert (retriever.filter, retriever.search_options, retriever.k) == (*before, 3)
    again = retriever.invoke("an ancient inscription")
    assert again[0].metadata["topic"] != "changed by the caller"


def test_from_path_opens_an_existing_index(sample_index_path, offline_model):
    retriever = ColBERTRetriever.from_path(sample_index_path, model=offline_model, k=1)
    assert retriever.invoke("Which creature survives outer space?")[0].id == "bio-001"
    retriever.index.close()


def test_from_path_refuses_a_missing_index(tmp_path, tiny_model):
    with pytest.raises(IndexCorruptError):
        ColBERTRetriever.from_path(tmp_path / "nothing-here", model=tiny_model)


class _Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_retriever_start(self, serialized: Any, query: str, *, run_id: UUID, **kw: Any) -> None:
        self.events.append(("start", query))

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kw: Any) -> None:
        self.events.append(("end", [d.id for d in documents]))

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        self.events.append(("error", type(error).__name__))


async def test_callbacks_fire_start_and_end_sync_and_async(sample_index):
    retriever = ColBERTRetriever(index=sample_index, k=2)
    recorder = _Recorder()
    docs = retriever.invoke("bread without yeast", config={"callbacks": [recorder]})
    adocs = await retriever.ainvoke("bread without yeast", config={"callbacks": [recorder]})
    ids = [d.id for d in docs]
    assert [d.id for d in adocs] == ids
    assert recorder.events == [
        ("start", "bread without yeast"), ("end", ids),
        ("start", "bread without yeast"), ("end", ids),
    ]
    with pytest.raises(InvalidInputError):
        retriever.invoke("   ", config={"callbacks": [recorder]})
    assert recorder.events[-1] == ("error", "InvalidInputError")


async def test_async_matches_sync(sample_index, demo_queries):
    retriever = ColBERTRetriever(index=sample_index, k=3)
    for q in demo_queries[:4]:
        sync = retriever.invoke(q["query"], k=4, filter={"year": {"$gte": 0}})
        asynchronous = await retriever.ainvoke(q["query"], k=4, filter={"year": {"$gte": 0}})
        assert sync == asynchronous


async def test_ainvoke_does_not_block_the_event_loop(slow_index, measure_loop):
    retriever = ColBERTRetriever(index=slow_index, k=3)
    delay = slow_index.model.delay
    docs, stall, beats = await measure_loop(retriever.ainvoke("radio pulses from space"))
    assert len(docs) == 3
    assert stall < delay / 2
    assert beats >= 10  # the loop kept ticking through the >= delay-long call

    async def sync_on_the_loop() -> list[Document]:
        return retriever.invoke("radio pulses from space")

    # Control: the same work done synchronously on the loop freezes it for the whole delay,
    # so the measurement above would have caught a blocking implementation.
    same, blocked, _ = await measure_loop(sync_on_the_loop())
    assert same == docs
    assert blocked >= delay * 0.9


async def test_concurrent_ainvokes_share_encoder_batches(slow_index, demo_queries):
    retriever = ColBERTRetriever(index=slow_index, k=2)
    model = slow_index.model
    queries = [q["query"] for q in demo_queries[:6]]
    model.query_batches.clear()
    results = await asyncio.gather(*(retriever.ainvoke(q) for q in queries))
    assert sum(model.query_batches) == len(queries)
    assert len(model.query_batches) < len(queries)  # coalesced into fewer encoder calls
    alone = [retriever.invoke(q) for q in queries]
    assert [_without_score(docs) for docs in results] == [_without_score(docs) for docs in alone]
    # The same hits; their scores agree to float32 rounding. OpenVINO (the default on a
    # bfloat16 CPU) gives a query's vectors within 6e-8 of each other in a batch of one and
    # of six, which moved scores by up to 2e-6 when measured; onnx gives them bit-identical.
    scores = [[d.metadata["relevance_score"] for d in docs] for docs in results]
    assert scores == [[pytest.approx(d.metadata["relevance_score"], abs=1e-5) for d in docs]
                      for docs in alone]


def _without_score(docs: list[Document]) -> list[Document]:
    return [Document(id=d.id, page_content=d.page_content,
                     metadata={k: v for k, v in d.metadata.items() if k != "relevance_score"})
            for d in docs]
