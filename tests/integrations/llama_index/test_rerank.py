"""ColBERTRerank: ordering, top_n, scores, retrieval scores, events, non-mutation, async."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from colbridge import ColBERTModel, Reranker
from llama_index.core.callbacks import CallbackManager, CBEventType
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.colbridge_rerank import ColBERTRerank

QUERY = "Why do we only ever see one side of the Moon from Earth?"
ANSWER = "astro-007"
DISTRACTORS = ["cook-003", "comp-004", "sport-009", "astro-010", "geo-006", "music-001"]


@pytest.fixture(scope="module")
def rerank(offline_model) -> ColBERTRerank:
    return ColBERTRerank(top_n=3, model=offline_model)


@pytest.fixture
def candidates(sample_corpus: list[dict]) -> list[NodeWithScore]:
    """The answer last, with the best first-stage score going to a wrong passage."""
    by_id = {d["id"]: d for d in sample_corpus}
    ids = [*DISTRACTORS, ANSWER]
    return [
        NodeWithScore(
            node=TextNode(id_=i, text=by_id[i]["text"], metadata=dict(by_id[i]["metadata"])),
            score=float(len(ids) - position),
        )
        for position, i in enumerate(ids)
    ]


def snapshot(nodes: list[NodeWithScore]) -> list[tuple[Any, ...]]:
    return [(n.score, n.node.model_dump(mode="json")) for n in nodes]


def test_exports() -> None:
    import llama_index.postprocessor.colbridge_rerank as package

    assert package.__all__ == ["ColBERTRerank"]
    assert issubclass(ColBERTRerank, BaseNodePostprocessor)
    assert ColBERTRerank.class_name() == "ColBERTRerank"


def test_puts_the_answer_first(rerank: ColBERTRerank, candidates: list[NodeWithScore]) -> None:
    out = rerank.postprocess_nodes(candidates, query_str=QUERY)
    assert out[0].node.node_id == ANSWER
    assert candidates[0].node.node_id != ANSWER  # the first stage had it wrong


def test_scores_are_exact_maxsim_joined_by_node(
    offline_model, candidates: list[NodeWithScore]
) -> None:
    rerank = ColBERTRerank(top_n=len(candidates), model=offline_model)
    out = rerank.postprocess_nodes(candidates, query_bundle=QueryBundle(QUERY))
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in candidates]
    reference = {
        candidates[r.index].node.node_id: r.score
        for r in Reranker(offline_model).rerank(QUERY, texts)
    }
    assert {n.node.node_id for n in out} == set(reference)
    for node in out:
        assert node.score == pytest.approx(reference[node.node_id], abs=1e-4)
    scores = [n.score for n in out]
    assert scores == sorted(scores, reverse=True)

    normalized = ColBERTRerank(top_n=len(candidates), model=offline_model, normalize_scores=True)
    again = normalized.postprocess_nodes(candidates, query_str=QUERY)
    for raw, norm in zip(out, again, strict=True):
        assert norm.node.node_id == raw.node.node_id
        assert norm.score == pytest.approx(raw.score / offline_model.query_length, abs=1e-5)


@pytest.mark.parametrize("top_n", [1, 3, 100])
def test_top_n(offline_model, candidates: list[NodeWithScore], top_n: int) -> None:
    out = ColBERTRerank(top_n=top_n, model=offline_model).postprocess_nodes(
        candidates, query_str=QUERY
    )
    assert len(out) == min(top_n, len(candidates))
    assert len({n.node.node_id for n in out}) == len(out)


def test_keep_retrieval_score(offline_model, candidates: list[NodeWithScore]) -> None:
    before = snapshot(candidates)
    first_stage = {n.node.node_id: n.score for n in candidates}
    rerank = ColBERTRerank(top_n=4, model=offline_model, keep_retrieval_score=True)
    out = rerank.postprocess_nodes(candidates, query_str=QUERY)
    for node in out:
        assert node.node.metadata["retrieval_score"] == first_stage[node.node_id]
        assert node.score != first_stage[node.node_id]
        # kept out of prompts and of what gets encoded
        assert "retrieval_score" not in node.node.get_content(metadata_mode=MetadataMode.LLM)
        assert "retrieval_score" not in node.node.get_content(metadata_mode=MetadataMode.EMBED)
    assert snapshot(candidates) == before

    plain = ColBERTRerank(top_n=4, model=offline_model).postprocess_nodes(
        candidates, query_str=QUERY
    )
    assert all("retrieval_score" not in n.node.metadata for n in plain)


def test_inputs_are_not_mutated(rerank: ColBERTRerank, candidates: list[NodeWithScore]) -> None:
    before = snapshot(candidates)
    order = [n.node.node_id for n in candidates]
    out = rerank.postprocess_nodes(candidates, query_str=QUERY)
    assert snapshot(candidates) == before
    assert [n.node.node_id for n in candidates] == order
    assert not any(o is c for o in out for c in candidates)  # new NodeWithScore objects


def test_edge_cases(rerank: ColBERTRerank, candidates: list[NodeWithScore]) -> None:
    with pytest.raises(ValueError, match="Missing query bundle"):
        rerank.postprocess_nodes(candidates)
    assert rerank.postprocess_nodes([], query_str=QUERY) == []
    textless = [*candidates, NodeWithScore(node=TextNode(id_="blank", text=""), score=1.0)]
    with pytest.raises(ValueError, match="blank"):
        rerank.postprocess_nodes(textless, query_str=QUERY)


def test_options_are_validated(offline_model) -> None:
    with pytest.raises(ValueError, match="set them on the ColBERTModel"):
        ColBERTRerank(model=offline_model, batch_size=8)
    with pytest.raises(ValueError):
        ColBERTRerank(model=offline_model, top_n=0)
    with pytest.raises(ValueError, match="batch_size"):
        ColBERTRerank(model="offline-minilm", batch_size=0)
    by_name = ColBERTRerank(model="offline-minilm", batch_size=7, device="cpu")
    assert (by_name.model, by_name.batch_size, by_name.device) == ("offline-minilm", 7, "cpu")


class CountingModel(ColBERTModel):
    """Records every document-encoding call."""

    calls: list[int]

    def encode_documents(self, documents, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append(len(documents))
        return super().encode_documents(documents, **kwargs)


def test_encodes_all_nodes_in_one_batched_call(
    tiny_model_path: Path, candidates: list[NodeWithScore]
) -> None:
    model = CountingModel(tiny_model_path, name="tiny-test-model", device="cpu", batch_size=4)
    model.calls = []
    ColBERTRerank(top_n=2, model=model).postprocess_nodes(candidates, query_str=QUERY)
    # one call, batched by the model (4 at a time); a node longer than the tiny model's
    # document length goes in as its passages, so the call holds at least one text per node
    assert len(model.calls) == 1 and model.calls[0] >= len(candidates)


class EventRecorder(BaseCallbackHandler):
    def __init__(self) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self.seen: list[tuple[str, CBEventType]] = []

    def on_event_start(self, event_type, payload=None, event_id="", parent_id="", **kw):  # type: ignore[no-untyped-def]
        self.seen.append(("start", event_type))
        return event_id

    def on_event_end(self, event_type, payload=None, event_id="", **kw):  # type: ignore[no-untyped-def]
        self.seen.append(("end", event_type))

    def start_trace(self, trace_id=None) -> None:  # type: ignore[no-untyped-def]
        pass

    def end_trace(self, trace_id=None, trace_map=None) -> None:  # type: ignore[no-untyped-def]
        pass


async def test_rerank_events(
    offline_model, candidates: list[NodeWithScore], instrumentation, span_names
) -> None:
    events, spans = instrumentation
    recorder = EventRecorder()
    rerank = ColBERTRerank(
        top_n=2, model=offline_model, callback_manager=CallbackManager([recorder])
    )
    sync_out = rerank.postprocess_nodes(candidates, query_str=QUERY)
    async_out = await rerank.apostprocess_nodes(candidates, query_str=QUERY)

    starts, ends = events.of_type("ReRankStartEvent"), events.of_type("ReRankEndEvent")
    assert len(starts) == len(ends) == 2
    for start in starts:
        assert start.query.query_str == QUERY
        assert start.top_n == 2 and start.model_name == "offline-minilm"
        assert [n.node.node_id for n in start.nodes] == [n.node.node_id for n in candidates]
    assert [[n.node.node_id for n in e.nodes] for e in ends] == [
        [n.node.node_id for n in sync_out], [n.node.node_id for n in async_out]
    ]
    names = span_names(spans)
    assert "ColBERTRerank._postprocess_nodes" in names
    assert "ColBERTRerank._apostprocess_nodes" in names
    assert recorder.seen == [("start", CBEventType.RERANKING), ("end", CBEventType.RERANKING)] * 2


class SlowModel(ColBERTModel):
    """The tiny model with 0.3 s of blocking work per document-encoding call."""

    def encode_documents(self, documents, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        return super().encode_documents(documents, **kwargs)


async def test_async_twin(
    rerank: ColBERTRerank, candidates: list[NodeWithScore], tiny_model_path: Path
) -> None:
    before = snapshot(candidates)
    sync_out = rerank.postprocess_nodes(candidates, query_str=QUERY)
    async_out = await rerank.apostprocess_nodes(candidates, query_bundle=QueryBundle(QUERY))
    assert [n.node.node_id for n in async_out] == [n.node.node_id for n in sync_out]
    assert [n.score for n in async_out] == pytest.approx([n.score for n in sync_out], abs=1e-4)
    assert snapshot(candidates) == before
    with pytest.raises(ValueError, match="Missing query bundle"):
        await rerank.apostprocess_nodes(candidates)
    assert await rerank.apostprocess_nodes([], query_str=QUERY) == []

    slow = ColBERTRerank(top_n=2, model=SlowModel(tiny_model_path, name="tiny", device="cpu"))
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(heartbeat())
    try:
        out = await slow.apostprocess_nodes(candidates, query_str=QUERY)
    finally:
        beat.cancel()
    assert len(out) == 2
    assert ticks >= 10  # the loop kept running through 0.3 s of encoding


def test_round_trips_through_to_dict() -> None:
    rerank = ColBERTRerank(top_n=4, model="offline-minilm", batch_size=8, keep_retrieval_score=True)
    again = ColBERTRerank.from_dict(rerank.to_dict())
    assert again.to_dict() == rerank.to_dict()
    assert (again.top_n, again.batch_size, again.keep_retrieval_score) == (4, 8, True)
