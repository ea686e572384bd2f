"""Fixtures for the LangChain adapter's tests (helpers are fixtures: test modules cannot import
each other under ``--import-mode=importlib``)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from colbridge import ColBERTModel, EmbeddedIndex

T = TypeVar("T")

class SlowModel(ColBERTModel):
    """The tiny test model, made to block for ``delay`` seconds in each encoder call.

    It counts its query-encoding calls, so tests can see concurrent queries sharing a batch.
    Run on the event loop, it would freeze the loop for the whole delay: the heartbeat tests
    use that to tell a real async path from sync work on the loop.
    """

    delay = 0.4

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.query_batches: list[int] = []

    def encode_queries(self, queries):  # type: ignore[no-untyped-def]
        self.query_batches.append(len(queries))
        time.sleep(self.delay)
        return super().encode_queries(queries)

    def encode_documents(self, documents, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(self.delay)
        return super().encode_documents(documents, **kwargs)


@pytest.fixture
def slow_model(tiny_model_path: Path) -> SlowModel:
    """A fresh :class:`SlowModel` (fresh call counts) named ``slow-tiny-model``."""
    model = SlowModel(tiny_model_path, name="slow-tiny-model", device="cpu")
    model.load()
    return model


@pytest.fixture
def slow_index(
    tmp_path: Path, slow_model: SlowModel, sample_corpus: list[dict]
) -> Iterator[EmbeddedIndex]:
    """A small index (12 sample passages) built with the slow model."""
    corpus = sample_corpus[:12]
    with EmbeddedIndex(tmp_path / "slow-index", model=slow_model) as index:
        index.add([d["text"] for d in corpus], ids=[d["id"] for d in corpus],
                  metadatas=[d["metadata"] for d in corpus])
        yield index


@pytest.fixture
def measure_loop() -> Callable[[Awaitable[T]], Awaitable[tuple[T, float, int]]]:
    """``await measure_loop(awaitable)`` -> (result, longest event-loop stall in s, heartbeats).

    A heartbeat task wakes every 10 ms while the awaitable runs; the longest gap between two
    beats is how long the loop was blocked at worst.
    """

    async def measure(awaitable: Awaitable[T]) -> tuple[T, float, int]:
        gaps: list[float] = []
        done = asyncio.Event()

        async def heartbeat() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        beating = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.03)  # let the heartbeat settle
        gaps.clear()
        try:
            result = await awaitable
        finally:
            done.set()
            await beating
        return result, max(gaps, default=0.0), len(gaps)

    return measure


@pytest.fixture
def sample_index(
    tmp_path: Path, sample_index_path: Path, offline_model: ColBERTModel
) -> Iterator[EmbeddedIndex]:
    """A private, writable copy of the sample-corpus index (offline-minilm)."""
    path = tmp_path / "sample-index"
    shutil.copytree(sample_index_path, path)
    with EmbeddedIndex(path, model=offline_model) as index:
        yield index
