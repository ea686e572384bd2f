"""How much of the exact top 10 the embedded index's first stage can reach, and how much of it
Voyager's approximate search loses.

    uv run python tests/benchmarks/bench_graph_recall.py CACHE [--builds M,EFC,STORAGE ...] \
        [--searches K,EF ...] [--exact-k K ...] [--pooling kmeans|runs] [--rounds N] \
        [--out FILE.json]

CACHE is what ``embeddings.py`` writes (``ab_search.py`` reads the same). The graph items are
made as the embedded index makes them (``graph.pooled_items`` with 8 tokens per item, grouped by
``--pooling``: the index's default ``kmeans``, with ``--rounds`` rounds if given, or ``runs`` of
consecutive tokens). For every
query, each of its token vectors fetches its K nearest items (1) exactly, by a product with
every item, and (2) from Voyager graphs built with each
``--builds`` setting (``8,40,Float8`` is the index's default), searched with each ``--searches``
setting. A document is a candidate when one of its items was fetched; the figure is the share of
exact MaxSim's top 10 (over the float16 vectors) among the candidates: the first stage's recall,
before any cut, in ``bench_scale.py --diagnose``'s terms. Also the candidate count and Voyager's
search time per query (32 token vectors, best of two). Not part of any test run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from ab_search import _load
from bench_scale import exact_scores_all

_BLOCK = 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--builds", nargs="*", default=["8,40,Float8", "8,100,Float8",
                                                        "16,40,Float8", "8,40,Float32"])
    parser.add_argument("--searches", nargs="*",
                        default=["192,192", "192,384", "256,256", "256,512", "384,384"])
    parser.add_argument("--exact-k", nargs="*", type=int, default=[192, 256, 384])
    parser.add_argument("--pooling", choices=["kmeans", "runs"], default="kmeans")
    parser.add_argument("--rounds", type=int, help="k-means rounds (default: the index's)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import voyager
    from colbridge.index import graph

    if args.rounds is not None:  # the same knob as bench_scale.py --kmeans-rounds
        graph._KMEANS_ROUNDS = args.rounds

    lengths, vectors, _, _, queries = _load(args.cache)
    lengths = lengths.astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    exact = exact_scores_all(queries.astype(np.float32), vectors, lengths)
    top10 = np.argsort(-exact, axis=1)[:, :10]
    ids, items = graph.pooled_items(vectors, starts, lengths, 8, args.pooling)
    ids = ids.astype(np.int64)
    doc_of_item = np.searchsorted(starts, ids, side="right") - 1
    n_queries, query_tokens, dim = queries.shape
    tokens = np.ascontiguousarray(queries.reshape(-1, dim), dtype=np.float32)
    rounds = graph._KMEANS_ROUNDS if args.pooling == "kmeans" else None
    report: dict = {"documents": len(lengths), "pooling": args.pooling, "rounds": rounds,
                    "items": len(ids),
                    "queries": n_queries,
                    "exact": [], "voyager": []}

    def recall(fetched: np.ndarray) -> tuple[float, float]:
        """(share of the exact top 10 among the candidates, candidates per query) for item
        positions ``fetched``, one row per query token."""
        shares, counts = [], []
        for q in range(n_queries):
            docs = np.unique(doc_of_item[fetched[q * query_tokens:(q + 1) * query_tokens]])
            shares.append(np.isin(top10[q], docs).mean())
            counts.append(len(docs))
        return float(np.mean(shares)), float(np.mean(counts))

    nearest = {k: [] for k in args.exact_k}
    for begin in range(0, len(tokens), _BLOCK):
        sims = tokens[begin:begin + _BLOCK] @ items.T
        for k in nearest:  # copies: a view would keep each block's whole partition alive
            nearest[k].append(np.argpartition(-sims, k, axis=1)[:, :k].copy())
    for k, parts in nearest.items():
        share, count = recall(np.concatenate(parts))
        report["exact"].append({"k": k, "recall": share, "candidates": count})
        print(f"exact nearest items, k {k}: recall {share:.4f}, {count:.0f} candidates", flush=True)

    order = np.argsort(ids)
    for build in args.builds:
        m, efc, storage = build.split(",")
        graph = voyager.Index(voyager.Space.InnerProduct, num_dimensions=dim, M=int(m),
                              ef_construction=int(efc),
                              storage_data_type=getattr(voyager.StorageDataType, storage))
        started = time.perf_counter()
        graph.add_items(items, ids=ids.tolist(), num_threads=-1)
        build_seconds = time.perf_counter() - started
        for search in args.searches:
            k, ef = (int(v) for v in search.split(","))
            seconds = []
            for _ in range(2):
                started = time.perf_counter()
                got, _ = graph.query(tokens, k=k, query_ef=max(ef, k))
                seconds.append((time.perf_counter() - started) / n_queries)
            fetched = order[np.searchsorted(ids[order], got.astype(np.int64))]
            share, count = recall(fetched)
            row = {"M": int(m), "ef_construction": int(efc), "storage": storage,
                   "build_seconds": build_seconds, "k": k, "ef": ef, "recall": share,
                   "candidates": count, "query_ms": min(seconds) * 1000}
            report["voyager"].append(row)
            print(f"voyager M {m}, ef_construction {efc}, {storage} (build {build_seconds:.1f} s)"
                  f", k {k}, ef {ef}: recall {share:.4f}, {count:.0f} candidates, "
                  f"{row['query_ms']:.2f} ms/query", flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
