"""colbridge.explain.passage_and_metadata: what an adapter returns for a hit with a passage."""

from __future__ import annotations

from colbridge import Hit, RerankResult, TokenMatch
from colbridge.explain import passage_and_metadata

HEADER = "topic: space\n\n"
TEXT = "Bread rises. Pulsars are neutron stars that send radio pulses. Tea is steamed."
PASSAGE = (13, 62)  # "Pulsars are neutron stars that send radio pulses." in TEXT


def _hit(text: str = TEXT, shift: int = 0, passage: tuple[int, int] | None = PASSAGE) -> Hit:
    """A hit on ``text`` whose offsets are TEXT's moved by ``shift`` (a header before it)."""
    def at(a: int, b: int) -> tuple[int, int]:
        return a + shift, b + shift

    matches = [TokenMatch(0, 1, at(0, 5), 0.5), TokenMatch(1, 4, at(25, 32), 0.9),
               TokenMatch(2, 7, (0, 5) if shift else None, 0.2)]
    return Hit(id="d", score=1.6, normalized_score=0.5, text=text, matches=matches,
               highlights=[at(25, 38), at(0, 5)],
               passage=None if passage is None else at(*passage))


def test_the_passage_key_and_the_whole_text():
    text, extra = passage_and_metadata(_hit(), TEXT)
    assert text == TEXT and extra == {"passage": [13, 62]}


def test_return_passage_cuts_and_moves_the_explanation():
    text, extra = passage_and_metadata(_hit(), TEXT, explain=True, return_passage=True)
    assert text == TEXT[13:62]
    assert extra["passage"] == [13, 62]
    assert extra["highlights"] == [[12, 25]] and text[12:25] == "neutron stars"
    assert [m["span"] for m in extra["token_matches"]] == [None, [12, 19], None]


def test_offsets_are_moved_out_of_a_scored_header():
    scored = HEADER + TEXT
    hit = _hit(scored, shift=len(HEADER))
    whole, extra = passage_and_metadata(hit, TEXT, scored_text=scored, explain=True)
    assert whole == TEXT and extra["passage"] == [13, 62]
    assert extra["highlights"] == [[25, 38], [0, 5]]
    assert [m["span"] for m in extra["token_matches"]] == [[0, 5], [25, 32], None]  # in header
    cut, extra = passage_and_metadata(hit, TEXT, scored_text=scored, explain=True,
                                      return_passage=True)
    assert cut == TEXT[13:62] and extra["highlights"] == [[12, 25]]


def test_a_passage_reaching_into_the_header_is_cut_to_the_text():
    scored = HEADER + TEXT
    hit = _hit(scored, shift=len(HEADER), passage=(-len(HEADER) + 3, 12))  # header .. "rises."
    text, extra = passage_and_metadata(hit, TEXT, scored_text=scored, return_passage=True)
    assert extra == {"passage": [0, 12]} and text == "Bread rises."
    inside = _hit(scored, shift=len(HEADER), passage=(-len(HEADER), -2))  # the header only
    text, extra = passage_and_metadata(inside, TEXT, scored_text=scored, return_passage=True)
    assert text == TEXT and extra == {}


def test_no_passage_no_result_or_text_not_found():
    assert passage_and_metadata(_hit(passage=None), TEXT, return_passage=True) == (TEXT, {})
    text, extra = passage_and_metadata(None, TEXT, explain=True, return_passage=True)
    assert text == TEXT and extra == {"highlights": [], "token_matches": []}
    text, extra = passage_and_metadata(_hit(), "Other words.", scored_text=TEXT, explain=True,
                                       return_passage=True)
    assert text == "Other words." and "passage" not in extra and extra["highlights"] == []


def test_a_rerank_result_works_the_same():
    result = RerankResult(index=0, score=1.0, normalized_score=0.3, text=TEXT,
                          highlights=[(25, 38)], passage=PASSAGE)
    text, extra = passage_and_metadata(result, TEXT, explain=True, return_passage=True)
    assert text == TEXT[13:62] and extra["highlights"] == [[12, 25]]
