"""Fixtures shared by the adapters' tests: an index and a reranker whose results carry a best
passage (``Hit.passage``, ``RerankResult.passage``), for the adapters' passage handling.

Both run the real model: each result's passage is the sentence of its text that scores best by
exact MaxSim on its own (MaxP over one-sentence passages); a one-sentence text is one passage
(``passage=None``). Ranking, scores and explanations are the real index's and reranker's.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from colbridge import ColBERTModel, EmbeddedIndex, Hit, Reranker, RerankResult


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``, surrounding whitespace left out."""
    spans = []
    for found in re.finditer(r"[^.!?]+[.!?]*", text):
        piece = found.group()
        start = found.start() + len(piece) - len(piece.lstrip())
        end = found.end() - (len(piece) - len(piece.rstrip()))
        if end > start:
            spans.append((start, end))
    return spans


def best_passage(reranker: Reranker, query: str, text: str) -> tuple[int, int] | None:
    """The span of the sentence of ``text`` that matches ``query`` best; None for one sentence."""
    spans = sentence_spans(text)
    if len(spans) < 2:
        return None
    (best,) = reranker.rerank(query, [text[a:b] for a, b in spans], top_n=1)
    return spans[best.index]


class PassageIndex(EmbeddedIndex):
    """An embedded index whose text searches give each hit its best sentence as ``passage``."""

    def search(self, query: str, k: int = 10, **kwargs: Any) -> list[Hit]:
        return self._with_passages(query, super().search(query, k, **kwargs))

    async def asearch(self, query: str, k: int = 10, **kwargs: Any) -> list[Hit]:
        hits = await super().asearch(query, k, **kwargs)
        return await asyncio.to_thread(self._with_passages, query, hits)

    def _with_passages(self, query: str, hits: list[Hit]) -> list[Hit]:
        reranker = Reranker(self.model)
        return [replace(h, passage=best_passage(reranker, query, h.text)) for h in hits]


class PassageReranker(Reranker):
    """A reranker that gives each result of a text its best sentence as ``passage``."""

    def rerank(self, query: str, documents: Sequence[str | np.ndarray], top_n: int | None = None,
               *, explain: bool = False) -> list[RerankResult]:
        results = super().rerank(query, documents, top_n, explain=explain)
        return self._with_passages(query, documents, results)

    async def arerank(self, query: str, documents: Sequence[str | np.ndarray],
                      top_n: int | None = None, *, explain: bool = False) -> list[RerankResult]:
        results = await super().arerank(query, documents, top_n, explain=explain)
        return await asyncio.to_thread(self._with_passages, query, documents, results)

    def _with_passages(self, query: str, documents: Sequence[str | np.ndarray],
                       results: list[RerankResult]) -> list[RerankResult]:
        plain = Reranker(self.model)
        return [replace(r, passage=best_passage(plain, query, text))
                if isinstance(text := documents[r.index], str) else r for r in results]


@pytest.fixture
def passage_index(tmp_path: Path, sample_index_path: Path,
                  offline_model: ColBERTModel) -> Iterator[PassageIndex]:
    """A private copy of the sample-corpus index (offline-minilm) whose hits carry passages."""
    path = tmp_path / "passage-index"
    shutil.copytree(sample_index_path, path)
    with PassageIndex(path, model=offline_model) as index:
        yield index


@pytest.fixture
def passage_reranker(offline_model: ColBERTModel) -> PassageReranker:
    """A reranker (offline-minilm) whose results carry passages."""
    return PassageReranker(offline_model)

