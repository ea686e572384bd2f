"""Async twins keep the loop free; threads may search while one thread writes."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from .conftest import synthetic_docs


async def _ticks_during(awaitable, interval=0.005):
    ticks = 0
    done = False

    async def heartbeat():
        nonlocal ticks
        while not done:
            await asyncio.sleep(interval)
            ticks += 1

    beat = asyncio.create_task(heartbeat())
    try:
        result = await awaitable
    finally:
        done = True
        await beat
    return ticks, result


async def test_asearch_does_not_block_the_event_loop(small_index, monkeypatch):
    slow_search = small_index._search

    def slow(*args, **kwargs):
        time.sleep(0.3)  # stands in for a heavy MaxSim pass: it blocks its thread, not the loop
        return slow_search(*args, **kwargs)

    monkeypatch.setattr(small_index, "_search", slow)
    ticks, hits = await _ticks_during(small_index.asearch("alpha river", k=3))
    assert len(hits) == 3
    assert ticks >= 20  # 0.3 s at 5 ms per tick; a blocked loop would tick about once


async def test_query_encoding_is_off_the_loop_too(small_index, monkeypatch):
    model = small_index.model
    encode = model.encode_queries

    def slow(queries):
        time.sleep(0.3)
        return encode(queries)

    monkeypatch.setattr(model._query_coalescer, "_batch_fn", slow)
    ticks, hits = await _ticks_during(small_index.asearch("alpha", k=2))
    assert len(hits) == 2 and ticks >= 20


@pytest.mark.parametrize("hook, call", [
    ("_upsert", lambda ix, emb: ix.aadd_encoded([emb], ["slow text"], ids=["slow"])),
    ("_search", lambda ix, emb: ix.asearch_encoded(emb, k=2)),
    ("_delete", lambda ix, emb: ix.adelete(["d1"])),
    ("_get", lambda ix, emb: ix.aget(["d2"])),
    ("_count", lambda ix, emb: ix.acount()),
])
async def test_every_async_hook_runs_its_sync_hook_off_the_loop(small_index, monkeypatch,
                                                                 hook, call):
    sync_hook = getattr(small_index, hook)

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return sync_hook(*args, **kwargs)

    monkeypatch.setattr(small_index, hook, slow)
    embedding = small_index.model.encode_query("alpha")
    ticks, _ = await _ticks_during(call(small_index, embedding))
    assert ticks >= 20


async def test_async_twins_match_sync(small_index):
    sync_hits = small_index.search("beta gamma", k=4)
    async_hits = await small_index.asearch("beta gamma", k=4)
    assert [h.id for h in async_hits] == [h.id for h in sync_hits]
    await small_index.aadd(["async added"], ids=["async-1"], metadatas=[{"via": "aadd"}])
    assert (await small_index.aget(["async-1"]))[0].metadata == {"via": "aadd"}
    assert await small_index.acount() == 41
    assert await small_index.adelete(["async-1"]) == 1
    results = await asyncio.gather(*(small_index.asearch(f"alpha {i}", k=2) for i in range(10)))
    assert all(len(r) == 2 for r in results)


async def test_concurrent_searches_run_one_at_a_time(small_index, monkeypatch):
    # Each search already uses every core; overlapping ones would only contend (embedded.py).
    import colbridge.index.embedded as embedded

    running, most = 0, 0
    counting = threading.Lock()
    real = embedded.run_search

    def counted(*args, **kwargs):
        nonlocal running, most
        with counting:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.02)  # long enough for the other calls to be waiting by now
            return real(*args, **kwargs)
        finally:
            with counting:
                running -= 1

    monkeypatch.setattr(embedded, "run_search", counted)
    results = await asyncio.gather(*(small_index.asearch(f"alpha {i}", k=2) for i in range(6)))
    threads = [threading.Thread(target=small_index.search, args=("beta",)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(len(r) == 2 for r in results)
    assert most == 1


def test_threads_search_while_one_thread_writes(tmp_path, tiny_model):
    from colbridge import EmbeddedIndex

    index = EmbeddedIndex(tmp_path / "ix", model=tiny_model, compact_threshold=0.5)
    texts, ids, metas = synthetic_docs(300, seed=7)
    index.add(texts[:100], ids=ids[:100], metadatas=metas[:100])
    errors: list[BaseException] = []
    searches = 0
    stop = threading.Event()
    ever_written = set(ids)

    def reader():
        nonlocal searches
        while not stop.is_set():
            try:
                hits = index.search("alpha omega", k=5, exact_threshold=0 if searches % 2 else 512)
                assert {h.id for h in hits} <= ever_written
                searches += 1
            except BaseException as e:  # collected and asserted below
                errors.append(e)
                return

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for begin in range(100, 300, 25):
            index.add(texts[begin:begin + 25], ids=ids[begin:begin + 25],
                      metadatas=metas[begin:begin + 25])
            index.delete(ids[begin - 100:begin - 90])
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert not errors, errors[0]
    assert searches > 10
    deleted = {i for b in range(100, 300, 25) for i in ids[b - 100:b - 90]}
    assert index.count() == 300 - len(deleted)
    assert {d.id for d in index.get(sorted(set(ids) - deleted))} == set(ids) - deleted
    index.close()
