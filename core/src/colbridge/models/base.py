"""The encoder seam: what indexes, the reranker and the adapters need from a ColBERT encoder."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from .._aio import Coalescer, run_off_loop
from .._validate import check_text, check_texts
from ..errors import InvalidInputError


class Encoder(ABC):
    """Text in, one L2-normalised float32 vector per token out.

    Subclasses implement :meth:`_encode` (and the shape properties); validation, the async twins
    and the coalescing of concurrent async queries into shared batches live here, so every
    encoder behaves the same to its callers. :class:`~colbridge.ColBERTModel` is the one
    colbridge ships.

    Attributes:
        name: identity recorded in indexes; an index opens only with an encoder of its name.
        batch_size: texts per encoder call.
    """

    name: str
    batch_size: int

    def __init__(self, *, name: str, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
        self.name = name
        self.batch_size = batch_size
        self._query_coalescer: Coalescer[str, np.ndarray] = Coalescer(self.encode_queries)

    # -- shape ----------------------------------------------------------------------------
    @property
    @abstractmethod
    def dimension(self) -> int:
        """Size of each token vector."""

    @property
    @abstractmethod
    def query_length(self) -> int:
        """Tokens per encoded query."""

    @property
    @abstractmethod
    def document_length(self) -> int:
        """Maximum tokens per encoded document; longer texts are truncated."""

    @property
    def backend(self) -> str:
        """The runtime that computes the vectors (``"torch"``, ``"onnx"`` …)."""
        return type(self).__name__

    @property
    def precision(self) -> str:
        """The family of the vectors: ``"float32"``, or ``"int8"`` for a quantized encoder.
        Vectors of one family are interchangeable in an index; an index records its family."""
        return "float32"

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (encoders that load lazily override this)."""
        return True

    def load(self) -> object:
        """Load the weights now rather than on the first encode; returns what was loaded."""
        return self

    # -- encoding -------------------------------------------------------------------------
    @abstractmethod
    def _encode(
        self, texts: list[str], *, is_query: bool, pool_factor: int = 1, show_progress: bool = False
    ) -> list[np.ndarray]:
        """Encode validated, non-empty ``texts``: one contiguous float32 array per text."""

    def encode_queries(self, queries: Sequence[str]) -> list[np.ndarray]:
        """Encode queries: one ``(query_length, dimension)`` float32 array each."""
        texts = check_texts(queries, "queries")
        return self._encode(texts, is_query=True) if texts else []

    def encode_query(self, query: str) -> np.ndarray:
        """Encode one query: a ``(query_length, dimension)`` float32 array."""
        return self.encode_queries([check_text(query, "query")])[0]

    def encode_documents(
        self,
        documents: Sequence[str],
        *,
        pool_factor: int = 1,
        show_progress: bool | None = None,
    ) -> list[np.ndarray]:
        """Encode documents: one ``(n_tokens, dimension)`` float32 array each.

        ``n_tokens`` counts the real tokens kept after truncation to :attr:`document_length`
        (punctuation is skipped, as in ColBERT). ``pool_factor > 1`` merges similar token
        vectors (PyLate's token pooling) to store about ``1/pool_factor`` as many.
        ``show_progress=None`` shows a bar only for jobs long enough to want one.
        """
        texts = check_texts(documents, "documents")
        if pool_factor < 1:
            raise InvalidInputError(f"pool_factor must be at least 1, got {pool_factor}")
        if not texts:
            return []
        if show_progress is None:
            show_progress = len(texts) > 4 * self.batch_size and sys.stderr.isatty()
        return self._encode(texts, is_query=False, pool_factor=pool_factor,
                            show_progress=show_progress)

    def document_token_spans(
        self, documents: Sequence[str]
    ) -> list[list[tuple[int, int] | None]] | None:
        """Where each stored token vector of each document comes from in its text.

        For each document, one entry per vector that :meth:`encode_documents` makes of it
        (``pool_factor=1``), in order: the token's ``(start, end)`` character offsets in the
        document, or None for a token with no text (``[CLS]``, the document marker,
        ``[SEP]``). An encoder that cannot tell returns None (the default); explanations then
        name the matched tokens without their spans.
        """
        return None

    @property
    def passage_tokens(self) -> int:
        """Text tokens one encoded document (or passage) holds: :attr:`document_length` less
        the tokens every document gets (``[CLS]``, the document marker, ``[SEP]``)."""
        return self.document_length - 3

    def document_token_offsets(
        self, documents: Sequence[str]
    ) -> list[list[tuple[int, int]] | None] | None:
        """The ``(start, end)`` character offsets of every token of each whole document,
        nothing truncated and no special tokens, for splitting long documents into passages
        (:mod:`colbridge.passages`); None for a document whose offsets are not exact.

        An encoder that cannot tell returns None (the default): its long documents are then
        truncated, whatever the index's ``long_documents`` setting.
        """
        return None

    async def aencode_query(self, query: str) -> np.ndarray:
        """Async :meth:`encode_query`; concurrent calls share encoder batches."""
        return await self._query_coalescer.submit(check_text(query, "query"))

    async def aencode_documents(
        self, documents: Sequence[str], *, pool_factor: int = 1
    ) -> list[np.ndarray]:
        """Async :meth:`encode_documents`, run in a worker thread."""
        return await run_off_loop(
            self.encode_documents, documents, pool_factor=pool_factor, show_progress=False
        )
