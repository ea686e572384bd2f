"""The embedded index's coarse integer pass: how many candidates it must hand back to exact
scoring (``rescore``), and what it saves.

    uv run python tests/benchmarks/bench_coarse.py CACHE [--rounds 2] [--out FILE.json]

CACHE is what ``embeddings.py`` writes (the layout ``ab_search.py`` reads). The index is built
once from it in a temporary folder, with the defaults. Then, on every query:

1. **Margins.** For ``k`` 10 and 100, at the default breadth, each ``rescore`` margin's hits
   against ``rescore=0`` (every candidate scored in float): the share of queries whose hit list
   is identical, and whose hit set is.
2. **Speed.** Search p50 of each setting in ``--settings`` (``KEY=VALUE[,KEY=VALUE]``; ``{}``
   is the defaults) and of exact MaxSim (one NumPy product over every vector per query, as
   ``bench_scifact.py`` times it), rounds alternating the order, and each setting's agreement
   with the exact top 10.

Not part of any test run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from ab_search import _load, cached_index

MARGINS = (4, 8, 16, 32, 64)
DEFAULT_SETTINGS = ("token_k=128,ef=128,max_candidates=512,rescore=0", "rescore=0", "{}",
                    "token_k=256,ef=256,max_candidates=1024")


def parse(setting: str) -> dict[str, int]:
    if setting == "{}":
        return {}
    return {key: int(value) for key, value in (pair.split("=") for pair in setting.split(","))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--k", type=int, default=100, help="hits per search in the speed part")
    parser.add_argument("--settings", nargs="*", default=list(DEFAULT_SETTINGS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from colbridge.scoring import maxsim_packed

    folder = Path(tempfile.mkdtemp(prefix="bench-coarse-")) / "index"
    index, queries = cached_index(args.cache, folder)
    lengths, vectors, ids, _, _ = _load(args.cache)
    lengths = lengths.astype(np.int64)
    report: dict = {"documents": len(lengths), "token_vectors": int(lengths.sum()),
                    "queries": len(queries), "defaults": index.stats()["search_options"],
                    "margins": [], "speed": []}

    for k in (10, 100):
        reference = [[h.id for h in index.search_encoded(q, k=k, rescore=0)] for q in queries]
        for margin in MARGINS:
            found = [[h.id for h in index.search_encoded(q, k=k, rescore=margin)]
                     for q in queries]
            row = {"k": k, "rescore": margin,
                   "identical_lists": statistics.mean(a == b for a, b in
                                                      zip(found, reference, strict=True)),
                   "identical_sets": statistics.mean(set(a) == set(b) for a, b in
                                                     zip(found, reference, strict=True))}
            report["margins"].append(row)
            print(json.dumps(row), flush=True)

    matrix = vectors.astype(np.float32)
    exact_top = [{ids[i] for i in np.argsort(-maxsim_packed(q, matrix, lengths))[:10]}
                 for q in queries]
    settings = [parse(s) for s in args.settings]
    times: list[list[float]] = [[] for _ in settings]
    tops: list[list[set[str]]] = [[] for _ in settings]
    exact_times: list[float] = []
    for query in queries[:5]:  # warm up
        for options in settings:
            index.search_encoded(query, k=args.k, **options)
    for round_no in range(args.rounds):
        for query_no, query in enumerate(queries):
            if query_no % 10 == 0:
                started = time.perf_counter()
                maxsim_packed(query, matrix, lengths)
                exact_times.append(time.perf_counter() - started)
            order = range(len(settings))
            for i in (order if (round_no + query_no) % 2 == 0 else reversed(order)):
                started = time.perf_counter()
                hits = index.search_encoded(query, k=args.k, **settings[i])
                times[i].append(time.perf_counter() - started)
                if round_no == 0:
                    tops[i].append({h.id for h in hits[:10]})
    exact_p50 = statistics.median(exact_times) * 1000
    report["exact_p50_ms"] = exact_p50
    print(f"exact MaxSim p50 {exact_p50:.1f} ms", flush=True)
    for setting, seconds, top in zip(args.settings, times, tops, strict=True):
        p50 = statistics.median(seconds) * 1000
        row = {"settings": setting, "k": args.k, "search_p50_ms": p50,
               "search_p50_over_exact": p50 / exact_p50,
               "agreement@10": statistics.mean(len(t & e) / 10
                                               for t, e in zip(top, exact_top, strict=True))}
        report["speed"].append(row)
        print(json.dumps(row), flush=True)
    index.close()
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
