"""Throughput of concurrent searches against the same searches one after another.

    uv run python tests/benchmarks/bench_async.py CACHE [--folder DIR] [--batch 32] [--rounds 6]

CACHE is what ``embeddings.py`` writes (the layout ``ab_search.py`` reads); the index is built
from it in ``--folder`` (a temporary one by default) unless one is there. Each round takes the
next ``--batch`` pre-encoded queries and runs them twice: one ``search_encoded`` after another,
and all at once as ``asearch_encoded`` calls gathered on one event loop, the order of the two
alternating from round to round so that the machine's drift falls on both alike. Query encoding
is left out (``bench_scifact.py`` times the whole ``asearch`` with it), so this isolates how
concurrent searches share the cores. Prints each round's seconds and the median ratio
(sequential ÷ concurrent: above 1, concurrency adds throughput). Not part of any test run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ab_search import cached_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench-async-")) / "index"
    index, queries = cached_index(args.cache, folder)
    for query in queries[:5]:  # warm up
        index.search_encoded(query, k=10)

    def one_after_another(batch) -> float:
        started = time.perf_counter()
        for query in batch:
            index.search_encoded(query, k=10)
        return time.perf_counter() - started

    async def all_at_once(batch) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(index.asearch_encoded(query, k=10) for query in batch))
        return time.perf_counter() - started

    sequential, concurrent = [], []
    for round_no in range(args.rounds):
        first = round_no * args.batch % len(queries)
        batch = queries[first:first + args.batch]
        if round_no % 2:
            sequential.append(one_after_another(batch))
            concurrent.append(asyncio.run(all_at_once(batch)))
        else:
            concurrent.append(asyncio.run(all_at_once(batch)))
            sequential.append(one_after_another(batch))
    print("one after another, s:", " ".join(f"{s:.3f}" for s in sequential))
    print("all at once, s:      ", " ".join(f"{s:.3f}" for s in concurrent))
    ratio = statistics.median(s / c for s, c in zip(sequential, concurrent, strict=True))
    print(f"throughput of {args.batch} concurrent searches: {ratio:.2f}x one after another "
          f"(median of {args.rounds} rounds)")
    index.close()


if __name__ == "__main__":
    main()
