"""``explain=True``: each query token's match, its span in the text, and ``Hit.highlights``."""

from __future__ import annotations

import random
import re

import pytest
from colbridge import ColBERTModel, EmbeddedIndex, InvalidInputError
from colbridge.scoring import normalize_score

from .conftest import BACKENDS, open_index, synthetic_docs

TEXTS = [
    "  Hello, world! The Eiffel-Tower (Paris) is 330 m tall.",
    "a",
    "Ünïcode ÇAFÉ, naïve résumé; done...",
    "tab\tseparated\nlines: one; two, three!",
]


@pytest.fixture(params=["torch", "onnx"])
def encoder(request, tiny_model_path):
    if request.param == "onnx":
        pytest.importorskip("onnxruntime")
    model = ColBERTModel(tiny_model_path, name="tiny-test-model", device="cpu",
                         backend=request.param)
    model.load()
    return model


def test_one_span_per_stored_vector_and_punctuation_dropped(encoder):
    vectors = encoder.encode_documents(TEXTS)
    spans = encoder.document_token_spans(TEXTS)
    for text, vecs, doc_spans in zip(TEXTS, vectors, spans, strict=True):
        assert len(doc_spans) == len(vecs)
        # [CLS] and the document marker first, [SEP] last: no text of their own.
        assert doc_spans[:2] == [None, None] and doc_spans[-1] is None
        words = [text[a:b] for a, b in doc_spans[2:-1]]
        assert all(re.fullmatch(r"\w+", w) for w in words), words  # no punctuation token kept
        # The kept tokens cover every word of the text, in order.
        assert "".join(words) == "".join(re.findall(r"\w+", text))


def test_spans_of_a_truncated_document_stop_where_its_vectors_do(encoder):
    text = " ".join(f"word{i}" for i in range(200))
    with pytest.warns(UserWarning, match="truncated"):
        (vectors,) = encoder.encode_documents([text])
    (spans,) = encoder.document_token_spans([text])
    assert len(spans) == len(vectors) == encoder.document_length
    assert spans[-2][1] < len(text) and text[: spans[2][1]] == "word"


def test_torch_and_onnx_agree_on_spans(tiny_model_path):
    pytest.importorskip("onnxruntime")
    models = [ColBERTModel(tiny_model_path, name="tiny", device="cpu", backend=b)
              for b in ("torch", "onnx")]
    assert models[0].document_token_spans(TEXTS) == models[1].document_token_spans(TEXTS)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_contributions_add_up_to_the_raw_score(backend, tmp_path, tiny_model):
    index = open_index(backend, tmp_path, tiny_model)
    texts, ids, metadatas = synthetic_docs(40)
    index.add(texts, ids=ids, metadatas=metadatas)
    query = "gamma river delta item"
    embedding = tiny_model.encode_query(query)
    runs = [
        index.search(query, k=5, explain=True),
        await index.asearch(query, k=5, explain=True),
        index.search_encoded(embedding, k=5, explain=True),
        await index.asearch_encoded(embedding, k=5, explain=True),
    ]
    for hits in runs:
        assert len(hits) == 5
        for hit in hits:
            assert len(hit.matches) == len(embedding)
            total = sum(m.score for m in hit.matches)
            assert abs(total - hit.score) < 1e-4
            # as close as the sum above: the int8 codes' kernel rounds the query to 16 bits
            assert hit.normalized_score == pytest.approx(
                normalize_score(total, len(embedding)), abs=1e-4 / len(embedding))
            assert hit.highlights
            for start, end in hit.highlights:
                assert 0 <= start < end <= len(hit.text)
            for match in hit.matches:
                if match.span is not None:
                    assert hit.text[slice(*match.span)].strip()
    index.close()


def test_explain_off_changes_nothing(small_index):
    plain = small_index.search("alpha omega forest", k=8)
    explained = small_index.search("alpha omega forest", k=8, explain=True)
    assert [(h.id, h.score, h.text) for h in plain] == [(h.id, h.score, h.text) for h in explained]
    assert all(h.matches is None and h.highlights == [] for h in plain)
    assert all(h.matches is not None for h in explained)


def test_hybrid_matches_explain_the_maxsim_part(small_index):
    query = "alpha omega forest"
    colbert = {h.id: h.score for h in small_index.search(query, k=40)}
    for hit in small_index.search(query, k=5, mode="hybrid", explain=True):
        assert abs(sum(m.score for m in hit.matches) - colbert[hit.id]) < 1e-4


def test_bm25_hits_have_no_token_matches(small_index):
    hits = small_index.search("alpha", k=3, mode="bm25", explain=True)
    assert hits and all(h.matches is None and h.highlights == [] for h in hits)


def test_pooled_vectors_are_explained_without_spans(empty_index):
    text = " ".join(synthetic_docs(1)[0]) * 3
    empty_index.add([text], ids=["pooled"], pool_factor=2)
    (hit,) = empty_index.search("alpha beta", k=1, explain=True)
    assert all(m.span is None for m in hit.matches) and hit.highlights == []
    assert abs(sum(m.score for m in hit.matches) - hit.score) < 1e-4


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_explain_must_be_a_bool(small_index, bad):
    with pytest.raises(InvalidInputError, match="explain must be True or False"):
        small_index.search("alpha", k=1, explain=bad)


# -- highlights point at the answer, with a real model -------------------------------------------
FILLER = [
    "The committee met on a rainy afternoon and discussed the annual budget at length.",
    "Several volunteers repainted the fences along the northern road last spring.",
    "Local newspapers reported heavy traffic during the holiday weekend.",
    "A new bakery opened next to the train station, selling bread and pastries.",
    "Students gathered in the library to prepare for their final examinations.",
    "The weather forecast predicted strong winds along the coast for the week.",
    "Engineers inspected the old bridge and recommended minor repairs to its railings.",
    "The museum extended its opening hours for the summer exhibition of ceramics.",
]
FACTS = [
    ("The lighthouse at Kestrel Point was automated in 1974.",
     "When was the Kestrel Point lighthouse automated?"),
    ("Marguerite Okafor discovered the comet Helios-7 using a backyard telescope.",
     "Who discovered the comet Helios-7?"),
    ("The Zarnow glacier has retreated four kilometres since measurements began.",
     "How far has the Zarnow glacier retreated?"),
    ("Copper cables in the Vellmar tunnel were replaced with optical fibre.",
     "What replaced the copper cables in the Vellmar tunnel?"),
    ("The orchid Dendrobium lunaris flowers only once every seven years.",
     "How often does the Dendrobium lunaris orchid flower?"),
    ("Chess grandmaster Ilya Brandt won the Tallinn open without losing a game.",
     "Which tournament did Ilya Brandt win?"),
    ("The Osprey-3 satellite measures sea surface temperature with microwave sensors.",
     "What does the Osprey-3 satellite measure?"),
    ("Honey from the Qarabel valley is prized for its dark colour and bitter taste.",
     "Why is honey from the Qarabel valley prized?"),
    ("The violinist Sofia Lindqvist performed the Sibelius concerto in Helsinki.",
     "Which concerto did Sofia Lindqvist perform?"),
    ("Construction of the Ferrow dam required two million cubic metres of concrete.",
     "How much concrete did the Ferrow dam need?"),
    ("The Nubra pika survives winter by storing dried grass in rock crevices.",
     "How does the Nubra pika survive winter?"),
    ("Baker Tomas Rieger won a prize for his rye sourdough in Munich.",
     "What bread won Tomas Rieger a prize?"),
]


def fact_corpus(seed: int = 0) -> list[tuple[str, tuple[int, int], str]]:
    """``(text, span of the fact, query)``: each fact at a random place among filler."""
    rng = random.Random(seed)
    corpus = []
    for fact, query in FACTS:
        sentences = rng.sample(FILLER, 3)
        sentences.insert(rng.randint(0, 3), fact)
        text = " ".join(sentences)
        start = text.index(fact)
        corpus.append((text, (start, start + len(fact)), query))
    return corpus


def test_the_best_highlight_lies_in_the_sentence_that_answers(tmp_path, offline_model):
    corpus = fact_corpus()
    with EmbeddedIndex(tmp_path / "facts", model=offline_model) as index:
        index.add([t for t, _, _ in corpus], ids=[str(i) for i in range(len(corpus))])
        inside = 0
        for i, (_, (start, end), query) in enumerate(corpus):
            hits = index.search(query, k=len(corpus), explain=True)
            (hit,) = [h for h in hits if h.id == str(i)]
            best_start, best_end = hit.highlights[0]
            inside += start <= best_start and best_end <= end
    assert inside >= 0.9 * len(corpus), f"{inside} of {len(corpus)}"


def test_highlights_merge_words_matched_in_a_row_and_come_best_first():
    from colbridge.explain import highlights
    from colbridge.types import TokenMatch

    text = "Alpha beta, gamma delta. Epsilon"
    #       0     6     12    18     25
    matches = [TokenMatch(0, 2, (0, 3), 0.5),     # "Alp" widens to "Alpha"
               TokenMatch(1, 3, (6, 10), 0.25),   # "beta", then ", " only: merges
               TokenMatch(2, 4, (12, 17), 0.5),   # "gamma"
               TokenMatch(3, 7, (25, 32), 0.9),   # "Epsilon": "delta" lies between, unmatched
               TokenMatch(4, 0, None, 1.0),       # [CLS]: no text
               TokenMatch(5, 3, (6, 10), -0.2)]   # negative contributions weigh nothing
    assert highlights(text, matches) == [(0, 17), (25, 32)]
    assert highlights(text, matches, limit=1) == [(0, 17)]


def test_a_hit_replaced_after_scoring_is_not_explained_with_its_new_vectors(small_index):
    query = "alpha omega forest"
    embedding = small_index.model.encode_query(query)
    hits = small_index.search_encoded(embedding, k=2)
    small_index.add(["entirely different words now"], ids=[hits[0].id])
    explained = small_index._explain(hits, embedding)
    assert explained[0].matches is None and explained[0].highlights == []
    assert abs(sum(m.score for m in explained[1].matches) - hits[1].score) < 1e-4


def test_an_encoder_that_cannot_tell_spans_still_explains_the_scores(tmp_path, tiny_model):
    from colbridge import Encoder

    class NoSpans(Encoder):
        dimension = tiny_model.dimension
        query_length = tiny_model.query_length
        document_length = tiny_model.document_length

        def _encode(self, texts, **kwargs):
            return tiny_model._encode(texts, **kwargs)

    texts, ids, _ = synthetic_docs(10)
    with EmbeddedIndex(tmp_path / "plain", model=NoSpans(name="no-spans")) as index:
        index.add(texts, ids=ids)
        hits = index.search("alpha beta", k=3, explain=True)
    assert all(m.span is None for h in hits for m in h.matches)
    assert all(h.highlights == [] for h in hits)
    assert all(abs(sum(m.score for m in h.matches) - h.score) < 1e-4 for h in hits)
