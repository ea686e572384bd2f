"""Highlights past the first window: long documents whose answer sits at a known span, found
and marked through their best passage (offline-minilm, real weights)."""

from __future__ import annotations

import random

import pytest
from colbridge import ColBERTModel, EmbeddedIndex, Reranker

FILLER = [
    "Morning light spread slowly across the quiet valley floor.",
    "Several travellers rested beside the old stone wall for a while.",
    "The committee discussed routine matters and adjourned early.",
    "Rainfall this season was close to the long-term average.",
    "A small bakery on the corner sold bread until noon.",
    "Children played football in the park after school.",
    "The museum extended its opening hours during the summer.",
    "Traffic on the main road was lighter than usual.",
    "Volunteers repainted the benches along the river path.",
    "The library received a donation of old maps and atlases.",
    "Farmers reported a good harvest of apples and pears.",
    "An orchestra rehearsed in the hall every Thursday evening.",
    "The ferry schedule changed slightly in the autumn.",
    "Local shops prepared decorations for the winter festival.",
    "A gentle breeze carried the smell of pine through town.",
    "Workers finished repairing the bridge ahead of schedule.",
]

FACTS = [  # (question, answer sentence)
    ("What is the capital of Zorbania?", "The capital of Zorbania is Quillon."),
    ("Who invented the vexamatic loom?", "The vexamatic loom was invented by Ottilie Brandvold."),
    ("How tall is Mount Karrowin?", "Mount Karrowin is 4,812 metres tall."),
    ("Which river feeds Lake Umbreth?", "Lake Umbreth is fed by the Sarnath river."),
    ("What colour is the glimmerfin fish?", "The glimmerfin fish is bright turquoise."),
    ("When was the Treaty of Velmora signed?", "The Treaty of Velmora was signed in 1642."),
    ("What do pellicorn beetles eat?", "Pellicorn beetles eat fallen juniper needles."),
    ("Who founded the Harrowgate observatory?", "Astronomer Ida Kestrel founded the Harrowgate "
                                                "observatory."),
    ("What language is spoken in Drovenmark?", "The people of Drovenmark speak Vellish."),
    ("How long is the Corvath tunnel?", "The Corvath tunnel is nineteen kilometres long."),
    ("What is the national dish of Teskavia?", "The national dish of Teskavia is smoked "
                                               "barley stew."),
    ("Which composer wrote the Lantern Symphony?", "The Lantern Symphony was written by "
                                                   "Matthias Orlev."),
]


def corpus(seed: int = 7) -> list[tuple[str, tuple[int, int]]]:
    """Each fact inside its own long document of filler, and its character span there: the
    first one in the first window, the others further and further in."""
    rng = random.Random(seed)
    documents = []
    for number, (_, answer) in enumerate(FACTS):
        sentences = rng.sample(FILLER, len(FILLER)) + rng.sample(FILLER, len(FILLER))
        at = 1 + 2 * number  # sentences of filler before the answer
        before = " ".join(sentences[:at])
        text = f"{before} {answer} {' '.join(sentences[at:])}"
        start = len(before) + 1
        documents.append((text, (start, start + len(answer))))
    return documents


@pytest.fixture(scope="module")
def short_window_model():
    model = ColBERTModel("offline-minilm", device="cpu", document_length=96)
    model.load()
    return model


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_the_answer_span_is_highlighted_through_the_best_passage(tmp_path, short_window_model):
    documents = corpus()
    with EmbeddedIndex(tmp_path / "index", model=short_window_model) as index:
        index.add([text for text, _ in documents], ids=[f"d{i}" for i in range(len(documents))])
        layouts = index._passages([f"d{i}" for i in range(len(documents))])
        past_first_window = 0
        found = 0
        for number, ((question, _), (_, answer)) in enumerate(zip(FACTS, documents, strict=True)):
            first = layouts[f"d{number}"][0]
            past_first_window += answer[0] >= first.end
            (hit,) = index.search(question, k=1, explain=True)
            assert sum(m.score for m in hit.matches) == pytest.approx(hit.score, abs=1e-4)
            if hit.id == f"d{number}" and any(overlaps(h, answer) for h in hit.highlights):
                assert hit.passage is not None and overlaps(hit.passage, answer)
                found += 1
    assert past_first_window >= len(FACTS) // 2  # most answers lie beyond the first window
    assert found / len(FACTS) >= 0.9


def test_the_reranker_highlights_the_answer_past_the_first_window(short_window_model):
    documents = corpus(seed=11)
    reranker = Reranker(short_window_model)
    found = 0
    for number, (question, _) in enumerate(FACTS):
        (best,) = reranker.rerank(question, [text for text, _ in documents], top_n=1,
                                  explain=True)
        assert sum(m.score for m in best.matches) == pytest.approx(best.score, abs=1e-4)
        answer = documents[number][1]
        found += best.index == number and any(overlaps(h, answer) for h in best.highlights)
    assert found / len(FACTS) >= 0.9
