"""A first stage over pooled token vectors (issue #15): Voyager over the normalised means of
runs of ``pool`` consecutive tokens, and how much of the exact top 10 its candidates hold.

    uv run python tests/benchmarks/bench_pooled_graph.py ../shared/data/scifact --limit-docs 1500

For each pooling factor, the graph is built as the embedded index builds its own (inner
product, M 8, ef_construction 40, Float8 storage). Each query token fetches its ``k`` nearest
items; the candidates are ranked as the embedded index pre-ranks them (per query token, the
best similarity found in the document, 0 when none) and the share of the exact top 10 (MaxSim
over float16) among the first 64 … 512 is reported, with the graph file's bytes per token
vector and the time per query. Every sixth test query (50). With ``--end-to-end``, an
IvfIndex (4-bit codes plus the nested 4-bit refinement, ``--centroids``) is built too, the
top 256 and 512 candidates are scored from both code levels, and the agreement of the
resulting top 10 with the exact top 10 is reported, with that scoring's time. Prints JSON
lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def pooled(vectors: np.ndarray, lengths: np.ndarray, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised means of runs of ``pool`` consecutive tokens of each document, and the
    document of each."""
    items, owners = [], []
    start = 0
    for doc, length in enumerate(lengths.tolist()):
        tokens = np.asarray(vectors[start:start + length], dtype=np.float32)
        means = np.add.reduceat(tokens, np.arange(0, length, pool), axis=0)
        items.append(means / np.linalg.norm(means, axis=1, keepdims=True))
        owners.append(np.full(len(means), doc))
        start += length
    return np.concatenate(items), np.concatenate(owners)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--limit-docs", type=int, default=1500)
    parser.add_argument("--pools", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--k", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/colbridge/bench")
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--centroids", type=int, default=1024)
    args = parser.parse_args()

    import voyager
    from colbridge import ColBERTModel
    from colbridge.evaluation import load_beir
    from colbridge.scoring import maxsim_packed
    from embeddings import load_or_encode

    data = load_beir(args.data, "test", limit_docs=args.limit_docs)
    emb = load_or_encode(data, ColBERTModel("offline-minilm", backend="onnx"), args.cache)
    vectors = np.asarray(emb.vectors)
    lengths = emb.lengths.astype(np.int64)
    queries = emb.queries[::6]
    truth = [set(np.argsort(-maxsim_packed(q, vectors, lengths), kind="stable")[:10].tolist())
             for q in queries]
    depths = (64, 128, 256, 512)
    scratch_folder = tempfile.TemporaryDirectory()
    index = None
    if args.end_to_end:
        from prototypes.ivf import IvfIndex

        index = IvfIndex.build(Path(scratch_folder.name) / "ivf", vectors, lengths,
                               n_centroids=args.centroids)
    for pool in args.pools:
        items, owners = pooled(vectors, lengths, pool)
        started = time.perf_counter()
        graph = voyager.Index(voyager.Space.InnerProduct, num_dimensions=vectors.shape[1], M=8,
                              ef_construction=40,
                              storage_data_type=voyager.StorageDataType.Float8)
        graph.add_items(items, num_threads=-1)
        build = time.perf_counter() - started
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "graph.voy")
            graph.save(path)
            graph_bytes = os.path.getsize(path)
        for k in args.k:
            held = {n: [] for n in depths}
            seconds, union = [], []
            final = {n: [] for n in (256, 512)}
            rescore_seconds = {n: [] for n in (256, 512)}
            for q, exact in zip(queries, truth, strict=True):
                started = time.perf_counter()
                labels, distances = graph.query(q, k=k, query_ef=max(k, 64))
                docs = owners[labels]
                unique, slot = np.unique(docs, return_inverse=True)
                best = np.zeros((len(q), len(unique)), np.float32)
                np.maximum.at(best, (np.repeat(np.arange(len(q)), k), slot.ravel()),
                              np.maximum(1 - distances.ravel(), 0))
                ranked = unique[np.argsort(-best.sum(axis=0), kind="stable")]
                seconds.append(time.perf_counter() - started)
                union.append(len(unique))
                for n in depths:
                    held[n].append(len(set(ranked[:n].tolist()) & exact) / 10)
                for n in (final if index is not None else ()):
                    started = time.perf_counter()
                    scores = index.rescore(q, ranked[:n])
                    rescore_seconds[n].append(time.perf_counter() - started)
                    top = ranked[:n][np.argsort(-scores, kind="stable")[:10]]
                    final[n].append(len(set(top.tolist()) & exact) / 10)
            print(json.dumps({
                "pool": pool, "items": len(items), "build_seconds": build,
                "graph_file_bytes_per_token": graph_bytes / len(vectors), "k": k,
                "mean_candidate_documents": float(np.mean(union)),
                "first_stage_p50_ms": float(np.median(seconds) * 1000),
                **{f"exact_top10_in_top{n}": float(np.mean(v)) for n, v in held.items()},
                **{f"agreement@10_scoring_top{n}_two_level": float(np.mean(v))
                   for n, v in final.items() if v},
                **{f"two_level_scoring_top{n}_p50_ms": float(np.median(v) * 1000)
                   for n, v in rescore_seconds.items() if v},
                "load_average": os.getloadavg()[0],
            }), flush=True)


if __name__ == "__main__":
    main()
