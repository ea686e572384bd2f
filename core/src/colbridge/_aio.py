"""Async plumbing: run compute off the event loop, and coalesce concurrent query encodings."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Turns many concurrent ``await submit(item)`` calls into few ``batch_fn(items)`` calls.

    ``batch_fn`` runs in a worker thread, so the event loop keeps running while it works. Items
    submitted while one batch is being computed form the next batch, so under load the batches
    grow by themselves and no fixed delay is added to a lone call.
    """

    def __init__(self, batch_fn: Callable[[list[T]], Sequence[R]], max_batch: int = 64) -> None:
        self._batch_fn = batch_fn
        self._max_batch = max_batch
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue[T, R]] = (
            weakref.WeakKeyDictionary()
        )

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _LoopQueue()
        future: asyncio.Future[R] = loop.create_future()
        queue.pending.append((item, future))
        if not queue.draining:
            queue.draining = True
            queue.task = loop.create_task(self._drain(queue))
        return await future

    async def _drain(self, queue: _LoopQueue[T, R]) -> None:
        try:
            await asyncio.sleep(0)  # let callers scheduled in the same loop turn join this batch
            while queue.pending:
                batch = queue.pending[: self._max_batch]
                del queue.pending[: self._max_batch]
                live = [(item, fut) for item, fut in batch if not fut.cancelled()]
                if not live:
                    continue
                try:
                    results = await asyncio.to_thread(self._batch_fn, [item for item, _ in live])
                except Exception as error:
                    for _, fut in live:
                        if not fut.done():
                            fut.set_exception(error)
                else:
                    for (_, fut), result in zip(live, results):
                        if not fut.done():
                            fut.set_result(result)
        finally:
            queue.draining = False
            for _, fut in queue.pending:  # only reached if this task was cancelled mid-way
                if not fut.done():
                    fut.cancel()
            queue.pending.clear()


class _LoopQueue(Generic[T, R]):
    def __init__(self) -> None:
        self.pending: list[tuple[T, asyncio.Future[R]]] = []
        self.draining = False
        self.task: asyncio.Task[Any] | None = None


async def run_off_loop(fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
    """Run blocking ``fn`` in a worker thread and await its result."""
    return await asyncio.to_thread(fn, *args, **kwargs)
