"""Long documents: split into passages, or truncated, or refused.

A text longer than the encoder's document length does not fit one encoding. The setting
``long_documents`` (:class:`LongDocuments`) says what an index or a reranker does with it:

* ``"split"``: the text becomes consecutive windows of :attr:`Encoder.passage_tokens` tokens,
  each encoded as a document of its own (``[CLS]``, the marker, ``[SEP]``, the skiplist as
  usual); the document's score is its best passage's (MaxP, see ``docs/concepts.md``);
* ``"truncate"``: only its first tokens are encoded (a warning says how many documents lost
  their tail): what colbridge did before passages;
* ``"error"``: :class:`~colbridge.DocumentTooLongError`, naming the document and its length.

This module is the one place that decides; every backend and the reranker call
:func:`encode_documents`.
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from .errors import DocumentTooLongError, InvalidInputError

if TYPE_CHECKING:
    from .models.base import Encoder

Span = tuple[int, int]

STRIDE = 1.0
"""A window starts this share of a window after the previous one. 1.0: consecutive passages
do not overlap. Overlap was measured (see "Passages" in docs/concepts.md): it costs more
vectors, and search latency with them, than it gains in quality."""


class LongDocuments(str, Enum):
    """What happens to a document longer than the encoder's document length (see
    :mod:`colbridge.passages`)."""

    SPLIT = "split"
    TRUNCATE = "truncate"
    ERROR = "error"

    __str__ = str.__str__


DEFAULT_LONG_DOCUMENTS = LongDocuments.SPLIT
"""The setting of a new index or reranker. A folder or collection that records none was built
before passages existed and truncated: it keeps doing so."""


def long_documents_setting(value: object) -> LongDocuments:
    """``value`` as a :class:`LongDocuments`, or :class:`~colbridge.InvalidInputError`."""
    try:
        return LongDocuments(value)
    except ValueError:
        raise InvalidInputError(
            f"long_documents must be one of {[m.value for m in LongDocuments]}, got {value!r}"
        ) from None


@dataclass(frozen=True)
class Passage:
    """One passage of a split document: the ``(start, end)`` characters of the stored text it
    covers and how many stored vectors (rows) it has."""

    start: int
    end: int
    rows: int


@dataclass(frozen=True)
class EncodedDocuments:
    """Documents encoded under a ``long_documents`` setting.

    Attributes:
        embeddings: one ``(rows, dim)`` array per document; a split document's passages' rows
            follow one another, in text order.
        passages: per document, its passages (in the same order as their rows), or None when
            it was encoded as one piece (it fits, or it was truncated).
    """

    embeddings: list[np.ndarray]
    passages: list[tuple[Passage, ...] | None]


def windows(text: str, offsets: Sequence[Span], size: int, stride: float = STRIDE) -> list[Span]:
    """The character spans of ``text``'s passages: windows of at most ``size`` of its tokens
    (``offsets``), each starting ``stride`` of a window after the previous one.

    A window starts and ends between words where it can (never inside one when any boundary
    is in reach), so that a passage's text tokenizes into exactly its tokens again.
    """
    if size < 1:
        raise InvalidInputError(f"a passage must hold at least one token, got {size}")
    count = len(offsets)
    if count <= size:
        return [(0, len(text))]

    def clean(i: int) -> bool:  # a cut before token i splits no word
        if i <= 0 or i >= count:
            return True
        before, at = offsets[i - 1][1], offsets[i][0]
        return at > before or not (text[at - 1].isalnum() and text[at].isalnum())

    step = max(1, int(size * stride))
    spans: list[Span] = []
    begin = 0
    while True:
        end = min(begin + size, count)
        cut = end
        while cut > begin + 1 and not clean(cut):
            cut -= 1
        end = cut if clean(cut) else end
        spans.append((offsets[begin][0], offsets[end - 1][1]))
        if end >= count:
            return spans
        following = begin + step
        while following > begin + 1 and not clean(following):
            following -= 1
        begin = max(following, begin + 1)
        if begin >= end:  # a window of one unbroken word: go on after it
            begin = end


def plan_passages(model: Encoder, texts: Sequence[str], ids: Sequence[str] | None,
                  long_documents: LongDocuments) -> list[list[Span] | None]:
    """Per text, the spans of its passages when it is to be split, else None; raises
    :class:`~colbridge.DocumentTooLongError` for a long text under ``"error"`` (before
    anything is encoded or written)."""
    plans: list[list[Span] | None] = [None] * len(texts)
    if long_documents == LongDocuments.TRUNCATE or not texts:
        return plans
    # A token has at least one character, so a text this short fits without tokenizing it.
    bound = model.document_length - 3
    maybe_long = [i for i, text in enumerate(texts) if len(text) > bound]
    if not maybe_long:
        return plans
    offsets = model.document_token_offsets([texts[i] for i in maybe_long])
    if offsets is None:
        return plans
    size = model.passage_tokens
    for position, tokens in zip(maybe_long, offsets, strict=True):
        text = texts[position]
        if tokens is None or len(tokens) <= size:
            continue
        if long_documents == LongDocuments.ERROR:
            name = repr(ids[position]) if ids is not None else f"at position {position}"
            raise DocumentTooLongError(
                f"document {name} has {len(tokens)} tokens, more than the {size} that fit the "
                f"model's document length ({model.document_length}); nothing was written. Use "
                "long_documents='split' to index it as passages, or 'truncate'")
        plans[position] = windows(text, tokens, size)
    return plans


def encode_documents(model: Encoder, texts: Sequence[str], *,
                     long_documents: LongDocuments | str = DEFAULT_LONG_DOCUMENTS,
                     ids: Sequence[str] | None = None, pool_factor: int = 1,
                     show_progress: bool | None = None) -> EncodedDocuments:
    """Encode ``texts`` (validated, non-empty) under ``long_documents``, in one encoder call.

    ``ids`` name a document in the error ``"error"`` raises.
    """
    setting = long_documents_setting(long_documents)
    plans = plan_passages(model, texts, ids, setting)
    pieces: list[str] = []
    for text, plan in zip(texts, plans, strict=True):
        pieces.extend([text] if plan is None else [text[s:e] for s, e in plan])
    with warnings.catch_warnings():
        if setting == LongDocuments.SPLIT:  # a window cut inside a long word may overrun by one
            warnings.filterwarnings("ignore", message=r".*were truncated", category=UserWarning)
        vectors = model.encode_documents(pieces, pool_factor=pool_factor,
                                         show_progress=show_progress)
    embeddings: list[np.ndarray] = []
    passages: list[tuple[Passage, ...] | None] = []
    at = 0
    for plan in plans:
        if plan is None:
            embeddings.append(vectors[at])
            passages.append(None)
            at += 1
            continue
        parts = vectors[at:at + len(plan)]
        at += len(plan)
        embeddings.append(np.ascontiguousarray(np.concatenate(parts)))
        passages.append(tuple(Passage(s, e, len(v)) for (s, e), v in zip(plan, parts, strict=True)))
    return EncodedDocuments(embeddings, passages)


def passage_starts(passages: Sequence[Passage]) -> np.ndarray:
    """The first row of each passage within its document's rows."""
    counts = np.array([p.rows for p in passages], np.int64)
    return np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)


def check_passages(passages: Sequence[Passage] | None, rows: int, text_length: int,
                   where: str) -> tuple[Passage, ...] | None:
    """``passages`` checked against a document of ``rows`` vectors and a text of
    ``text_length`` characters (:class:`~colbridge.InvalidInputError` otherwise); a single
    passage is the same as none."""
    if passages is None:
        return None
    passages = tuple(passages)
    if not passages or not all(isinstance(p, Passage) for p in passages):
        raise InvalidInputError(f"{where} must be a non-empty sequence of Passage")
    if sum(p.rows for p in passages) != rows or any(p.rows < 1 for p in passages):
        raise InvalidInputError(f"{where}: the passages' rows must be positive and add up to the "
                                f"document's {rows} vectors")
    if any(not 0 <= p.start < p.end <= text_length for p in passages):
        raise InvalidInputError(f"{where}: a passage's span lies outside the text")
    return passages if len(passages) > 1 else None


def read_layout(raw: object) -> tuple[Passage, ...]:
    """A stored passage layout (the JSON text ``[[start, end, rows], ...]`` of
    ``docs/index-format.md``) as passages; ValueError when it is not such a list of integers."""
    if not isinstance(raw, str):
        raise ValueError("the layout is not JSON text")
    try:
        entries = json.loads(raw)
    except RecursionError:
        raise ValueError("the layout nests too deeply") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError("the layout is not a non-empty list")
    passages = []
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3
                and all(type(value) is int for value in entry)):
            raise ValueError(f"{str(entry)[:40]} is not a [start, end, rows] of integers")
        passages.append(Passage(*entry))
    return tuple(passages)


def layout_problem(passages: Sequence[Passage], rows: int, text_length: int | None) -> str | None:
    """What is wrong with a stored layout for a document of ``rows`` vectors and a text of
    ``text_length`` characters (None: not checked), or None when nothing is."""
    if any(p.rows < 1 for p in passages) or sum(p.rows for p in passages) != rows:
        return (f"its passages hold {[p.rows for p in passages]} rows, which do not add up to "
                f"the document's {rows} vectors")
    if text_length is not None and any(not 0 <= p.start < p.end <= text_length
                                       for p in passages):
        return f"a passage's span lies outside its {text_length}-character text"
    # Windows move forward: each starts after the one before and ends no earlier.
    if any(b.start <= a.start or b.end < a.end for a, b in itertools.pairwise(passages)):
        return "its passages' spans are not in text order"
    return None
