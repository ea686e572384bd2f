"""Soak: thousands of mixed operations on one index, with a steady memory footprint (slow)."""

from __future__ import annotations

import collections
import gc
import random
import resource
import time
from pathlib import Path

import pytest

from colbridge import EmbeddedIndex, GraphParams

from .conftest import HashEncoder, check_clean, doc_metadata, doc_text, stored_state


def rss_mb() -> float:
    """Resident set size of this process now, in MB (Linux /proc; peak RSS elsewhere)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _soak(path: Path, operations: int, capsys) -> None:
    rng = random.Random(42)
    ops: collections.Counter = collections.Counter()
    versions: dict[str, int] = {}
    index = EmbeddedIndex.open_or_create(path, model=HashEncoder(),
                                         graph=GraphParams(M=8, ef_construction=32),
                                         checkpoint_rows=5000)
    samples = []
    started = time.perf_counter()
    warm_up = operations // 10
    for n in range(operations):
        if n == warm_up:
            gc.collect()
            samples.append(rss_mb())
        kind = rng.choices(["add", "upsert", "delete", "search", "filtered", "get"],
                           weights=[20, 10, 10 if len(versions) < 1500 else 40, 35, 15, 10])[0]
        if kind in ("upsert", "delete", "get") and not versions:
            kind = "add"
        if kind in ("add", "upsert"):
            if kind == "add":
                batch = {f"s{n}-{j}": 0 for j in range(rng.randint(1, 20))}
            else:
                chosen = rng.sample(sorted(versions), min(len(versions), rng.randint(1, 10)))
                batch = {i: versions[i] + 1 for i in chosen}
            index.add([doc_text(i, v) for i, v in batch.items()], ids=list(batch),
                      metadatas=[doc_metadata(i, v) for i, v in batch.items()])
            versions.update(batch)
        elif kind == "delete":
            gone = rng.sample(sorted(versions), min(len(versions), rng.randint(1, 15)))
            assert index.delete(gone) == len(gone)
            for i in gone:
                del versions[i]
        elif kind == "get":
            some = rng.sample(sorted(versions), min(len(versions), 5))
            assert [d.metadata["v"] for d in index.get(some)] == [versions[i] for i in some]
        else:
            target = rng.choice(sorted(versions)) if versions else None
            query = doc_text(target, versions[target]) if target else "w1 w2 w3"
            exhaustive = rng.random() < 0.5
            hits = index.search(query, k=5, filter={"even": True} if kind == "filtered" else None,
                                exact_threshold=10**6 if exhaustive else 0)
            if target and kind == "search" and exhaustive:
                assert hits[0].id == target
            assert len(hits) == min(5, len(versions)) or kind == "filtered"
        ops[kind] += 1
        if n % (operations // 20) == 0 and n > warm_up:
            samples.append(rss_mb())
    gc.collect()
    samples.append(rss_mb())
    seconds = time.perf_counter() - started
    assert index.count() == len(versions)
    index.close()
    assert check_clean(path) == []
    assert stored_state(path) == versions
    start, end, peak = samples[0], samples[-1], max(samples)
    with capsys.disabled():
        print(f"\nsoak: {operations} operations in {seconds:.0f} s ("
              + ", ".join(f"{k} {v}" for k, v in sorted(ops.items()))
              + f"); {len(versions)} documents at the end; RSS after warm-up {start:.0f} MB, "
              f"at the end {end:.0f} MB, peak {peak:.0f} MB")
    # Steady: what the process holds at the end is within a margin of what it held after
    # warm-up, with the collection at a similar size (deletes keep it near 1,500 documents).
    assert end - start < 64, samples


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_soak(tmp_path, capsys):
    _soak(tmp_path / "index", 5000, capsys)


def test_short_soak(tmp_path, capsys):
    _soak(tmp_path / "index", 120, capsys)
