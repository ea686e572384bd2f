"""Character spans of a document's stored token vectors, for any tokenizer that gives offsets.

PyLate encodes ``(prompt + text).strip()``, lower-cased when the model says so, inserts the
document marker after the first token and drops the skiplist's tokens (punctuation) from the
stored vectors. :func:`stored_token_spans` undoes exactly that, so that the i-th span belongs
to the i-th stored vector.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

Span = tuple[int, int]


def prepared(text: str, prompt: str, lower: bool) -> tuple[str, int, bool]:
    """What PyLate tokenizes for ``text``, the shift from its offsets back to ``text``'s, and
    whether the shift is exact (lower-casing can change a text's length, rarely)."""
    joined = prompt + text
    cleaned = joined.strip()
    shift = (len(joined) - len(joined.lstrip())) - len(prompt)
    if lower:
        lowered = cleaned.lower()
        return lowered, shift, len(lowered) == len(cleaned)
    return cleaned, shift, True


def stored_token_spans(
    texts: Sequence[str], prompt: str, lower: bool,
    tokenize: Callable[[list[str]], list[tuple[list[int], list[Span], list[int]]]],
    prefix_id: int | None, skiplist: Collection[int],
) -> list[list[Span | None]]:
    """One span (or None) per stored vector of each text.

    ``tokenize`` takes the prepared texts and returns, per text, its token ids, their offsets
    and its special-tokens mask, with special tokens added and truncated as for encoding.
    """
    ready = [prepared(t, prompt, lower) for t in texts]
    out: list[list[Span | None]] = []
    for text, (_, shift, exact), (ids, offsets, special) in zip(
            texts, ready, tokenize([r[0] for r in ready]), strict=True):
        tokens: list[tuple[int | None, Span | None]] = []
        for token_id, (start, end), is_special in zip(ids, offsets, special, strict=True):
            span = None
            if exact and not is_special and end > start and start + shift >= 0:
                span = (start + shift, min(end + shift, len(text)))
            tokens.append((token_id, span))
        if prefix_id is not None:
            tokens.insert(1, (None, None))  # the marker, never in the skiplist
        out.append([span for token_id, span in tokens if token_id not in skiplist])
    return out


def whole_token_offsets(
    texts: Sequence[str], prompt: str, lower: bool,
    tokenize: Callable[[list[str]], list[list[Span]]],
) -> list[list[Span] | None]:
    """The character offsets in each text of every token the tokenizer makes of the whole
    prepared text (no special tokens, nothing truncated); None for a text whose offsets cannot
    be moved back exactly (lower-casing changed its length).

    ``tokenize`` takes the prepared texts and returns each one's token offsets.
    """
    ready = [prepared(t, prompt, lower) for t in texts]
    out: list[list[Span] | None] = []
    for text, (_, shift, exact), offsets in zip(
            texts, ready, tokenize([r[0] for r in ready]), strict=True):
        if not exact:
            out.append(None)
            continue
        out.append([(start + shift, min(end + shift, len(text))) for start, end in offsets
                    if end > start and start + shift >= 0])
    return out
