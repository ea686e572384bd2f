"""Where one process's search time goes, stage by stage, over every query of a cached set.

    uv run python tests/benchmarks/profile_search.py CACHE FOLDER [--rounds 2] [--k 10] \
        [--options KEY=VALUE ...]

CACHE is what ``embeddings.py`` writes (``ab_search.py`` reads the same); FOLDER is an index
built from it (``ab_search.py`` leaves one under ``/tmp/ab-search-*``), or a missing folder to
build it in. Each stage's primitive is wrapped with a timer, so the split is of wall time
inside one search; what no wrapper covers (pre-ranking, sorting, assembly, Python between
the steps) is the remainder. Run it with ``PYTHONPATH=<checkout>/core/src`` to profile
another checkout; a stage that checkout lacks is left out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ab_search import cached_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--k", type=int, default=10, help="hits per search")
    parser.add_argument("--options", nargs="*", default=[], metavar="KEY=VALUE",
                        help="search options (SearchOptions fields) for every search")
    args = parser.parse_args()

    import colbridge._kernels as kernels
    import colbridge.index.embedded as embedded
    import colbridge.index.graph as graph
    import colbridge.index.vectors_int8 as int8

    options = {key: int(value) for key, value in (pair.split("=") for pair in args.options)}
    index, queries = cached_index(args.cache, args.folder)

    spent: dict[str, float] = defaultdict(float)

    def timed(owner, name: str, label: str) -> None:
        inner = getattr(owner, name, None)
        if inner is None:
            return

        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                spent[label] += time.perf_counter() - started
        setattr(owner, name, wrapper)

    search = embedded._SnapshotSearch
    stages = [(search, "first_stage", "first stage (all)"),
              (graph.TokenGraph, "query", "  graph query (Voyager, every query token)"),
              (embedded._Snapshot, "doc_nos_of_rows", "  graph ids to documents"),
              (search, "exact_maxsim", "exact MaxSim (all)"),
              (int8.Int8Store, "read_codes", "  read codes (one pread per candidate)"),
              (int8.Int8Store, "read_padded", "  read codes into padded groups (preadv)"),
              (kernels, "maxsim_group_codes_coarse", "  coarse kernel (integers, 8-bit query)"),
              (kernels, "maxsim_group_codes", "  kernel (ONNX Runtime, widening included)"),
              (search, "documents", "documents (SQLite)"),
              (search, "best_passages", "best passages")]
    for owner, name, label in stages:
        timed(owner, name, label)
    for query in queries[:5]:
        index.search_encoded(query, k=args.k, **options)
    spent.clear()
    times = []
    for _ in range(args.rounds):
        for query in queries:
            started = time.perf_counter()
            index.search_encoded(query, k=args.k, **options)
            times.append(time.perf_counter() - started)
    n = len(times)
    print(f"{n} searches: p50 {statistics.median(times) * 1e3:.2f} ms, "
          f"mean {sum(times) / n * 1e3:.2f} ms")
    top = sum(v for k, v in spent.items() if not k.startswith(" "))
    for _, _, label in stages:
        if label in spent:
            print(f"{label:48s} {spent[label] / n * 1e3:7.2f} ms")
    rest = (sum(times) - top) / n * 1e3
    print(f"{'rest (pre-rank, sorting, assembly, Python)':48s} {rest:7.2f} ms")
    index.close()


if __name__ == "__main__":
    main()
