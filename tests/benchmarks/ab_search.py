"""Search speed and agreement of two colbridge checkouts, side by side, on one index folder.

    uv run python tests/benchmarks/ab_search.py CACHE OLD_CHECKOUT NEW_CHECKOUT [--rounds 6]

For refactors that must not change search: each checkout's ``core/src`` runs in its own
process (this environment's Python, so the dependencies are the same). The first process builds
the index from the cached embeddings in CACHE (the layout ``embeddings.py`` writes:
``doc_vectors.npy``, ``query_vectors.npy``...), the second opens the same folder, so both search
the same graph. Rounds of every query alternate between them, and exact MaxSim (NumPy, every
vector) is timed in each round too, so machine drift falls on all three alike. Prints each
checkout's search p50/p95, its ratio to exact, its agreement with the exact top 10, and how often
the two returned the same top 10.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _load(cache: Path):
    lengths = np.load(cache / "doc_lengths.npy")
    vectors = np.load(cache / "doc_vectors.npy")
    ids = json.loads((cache / "doc_ids.json").read_text())
    texts = json.loads((cache / "doc_texts.json").read_text())
    queries = np.load(cache / "query_vectors.npy")
    return lengths, vectors, ids, texts, queries


def cached_index(cache: Path, folder: Path):
    """The index at ``folder`` (built there from CACHE's vectors when it has none), opened with
    an encoder of the cached model's shape that refuses texts (searches here are pre-encoded),
    named "ab-search" whichever script opens it, so any of them opens a folder another built.
    Returns ``(index, query vectors)``."""
    from colbridge import EmbeddedIndex
    from colbridge.models.base import Encoder

    lengths, vectors, ids, texts, queries = _load(cache)

    class Recorded(Encoder):
        dimension = property(lambda self: vectors.shape[1])
        query_length = property(lambda self: queries.shape[1])
        document_length = property(lambda self: int(lengths.max()))

        def _encode(self, texts, *, is_query, pool_factor=1, show_progress=False):
            raise RuntimeError("these benchmarks search pre-encoded queries only")

    built = (folder / "manifest.json").exists()
    index = EmbeddedIndex(folder, model=Recorded(name="ab-search"))
    if not built:
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        for begin in range(0, len(lengths), 500):
            stop = min(begin + 500, len(lengths))
            index.add_encoded([vectors[s:s + n].astype(np.float32)
                               for s, n in zip(starts[begin:stop], lengths[begin:stop],
                                               strict=True)],
                              texts[begin:stop], ids[begin:stop])
        index.flush()
    return index, queries


def worker(cache: Path, folder: Path) -> None:
    """Open (or build) the index, then answer each line on stdin with one round of searches."""
    index, queries = cached_index(cache, folder)
    for query in queries[:5]:  # warm up
        index.search_encoded(query, k=10)
    print("ready", flush=True)
    for _ in sys.stdin:
        out = []
        for query in queries:
            started = time.perf_counter()
            hits = index.search_encoded(query, k=10)
            out.append([time.perf_counter() - started, [h.id for h in hits]])
        print(json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("checkouts", type=Path, nargs=2)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ab-search-")) / "index"
    procs = []
    for checkout in args.checkouts:  # one after the other: the second opens what the first built
        env = dict(os.environ, PYTHONPATH=str(checkout.resolve() / "core" / "src"))
        command = [sys.executable, __file__, "--worker", str(args.cache), str(folder)]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, env=env)
        assert proc.stdout.readline().strip() == "ready"
        procs.append(proc)
    lengths, vectors, ids, _, queries = _load(args.cache)
    vectors = vectors.astype(np.float32)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))

    def exact_scores(query: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(vectors @ query.T, starts, axis=0).sum(axis=1)

    exact = [{ids[i] for i in np.argsort(-exact_scores(q))[:10]} for q in queries]
    times: list[list[float]] = [[], []]
    tops: list[list[set[str]]] = [[], []]
    exact_times = []
    for round_no in range(args.rounds):
        for query in queries[:30]:
            started = time.perf_counter()
            exact_scores(query)
            exact_times.append(time.perf_counter() - started)
        for i in (0, 1) if round_no % 2 == 0 else (1, 0):
            procs[i].stdin.write("round\n")
            procs[i].stdin.flush()
            answer = json.loads(procs[i].stdout.readline())
            times[i] += [seconds for seconds, _ in answer]
            tops[i] = [set(top) for _, top in answer]
    exact_p50 = statistics.median(exact_times)
    print(f"exact MaxSim over {len(vectors):,} vectors: p50 {exact_p50 * 1000:.1f} ms")
    for i, checkout in enumerate(args.checkouts):
        p50 = statistics.median(times[i])
        agreement = statistics.mean(len(t & e) / 10 for t, e in zip(tops[i], exact, strict=True))
        print(f"{checkout}: search p50 {p50 * 1000:.2f} ms ({p50 / exact_p50:.3f} of exact), "
              f"p95 {np.percentile(times[i], 95) * 1000:.2f} ms, agreement@10 {agreement:.3f}")
    same = statistics.mean(a == b for a, b in zip(tops[0], tops[1], strict=True))
    print(f"same top 10 from both: {same:.3f} of {len(queries)} queries")
    for proc in procs:
        proc.stdin.close()
        proc.wait()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
