"""How the embedded index's pre-ranking guess and candidate breadth trade agreement for time,
on one built index (issue #15: re-tuning them for pooled graph items).

    uv run python tests/benchmarks/bench_prerank.py ../shared/data/scifact --limit-docs 1500 \\
        --graph pool=8 pooling=runs --guess 0 0.5 0.75 1 --token-k 64 128

Builds an EmbeddedIndex over the cached SciFact embeddings with ``--graph`` settings, then
searches the first ``--queries`` test queries for each pre-ranking guess factor (the share of a
query token's similarity to a document's mean vector that stands in for a token the graph found
nothing for in that document) and each ``token_k``, and prints agreement with the exact top 10
and search p50, with exact MaxSim's p50 in the same run. ``--max-candidates`` sweeps the
candidates scored exactly too, and ``--synthetic N`` searches bench_scale's synthetic
collection of N documents instead of the real one. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--limit-docs", type=int, default=1500)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--graph", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--guess", type=float, nargs="+", default=[0.5])
    parser.add_argument("--token-k", type=int, nargs="+", default=[128])
    parser.add_argument("--max-candidates", type=int, nargs="+", default=[512])
    parser.add_argument("--synthetic", type=int, default=0,
                        help="search a synthetic collection of this many documents instead "
                             "(bench_scale's recipe and seed)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/colbridge/bench")
    args = parser.parse_args()

    from bench_scale import exact_scores, parse_settings, recorded_encoder, synthesize
    from colbridge import ColBERTModel, EmbeddedIndex, GraphParams
    from colbridge.evaluation import load_beir
    from colbridge.index import embedded
    from embeddings import load_or_encode

    data = load_beir(args.data, "test", limit_docs=args.limit_docs)
    emb = load_or_encode(data, ColBERTModel("offline-minilm", backend="onnx"), args.cache)
    vectors, lengths = np.asarray(emb.vectors), emb.lengths.astype(np.int64)
    texts = emb.doc_texts
    if args.synthetic:
        vectors, lengths = synthesize(vectors, lengths, args.synthetic)
        texts = [f"synthetic document {i}" for i in range(args.synthetic)]
    queries = emb.queries[:args.queries]
    exact_seconds, reference = [], []
    for q in queries:
        started = time.perf_counter()
        scores = exact_scores(q, vectors, lengths)
        exact_seconds.append(time.perf_counter() - started)
        reference.append(set(np.argsort(-scores, kind="stable")[:10].tolist()))
    with tempfile.TemporaryDirectory(dir=args.cache) as scratch:
        model = recorded_encoder("bench-prerank", vectors.shape[1], queries.shape[1],
                                 int(lengths.max()))
        index = EmbeddedIndex(Path(scratch) / "ix", model=model,
                              graph=GraphParams(**parse_settings(args.graph)))
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        docs = [np.asarray(vectors[s:s + n], np.float32) for s, n in zip(starts, lengths,
                                                                          strict=True)]
        for begin in range(0, len(docs), 512):
            index.add_encoded(docs[begin:begin + 512], texts[begin:begin + 512],
                              ids=[str(i) for i in range(begin, min(begin + 512, len(docs)))])
        for q in queries[:5]:  # warm up
            index.search_encoded(q, k=10)
        for guess in args.guess:
            embedded._MEAN_GUESS = guess
            for token_k, candidates in itertools.product(args.token_k, args.max_candidates):
                seconds, held = [], []
                for q, ref in zip(queries, reference, strict=True):
                    started = time.perf_counter()
                    hits = index.search_encoded(q, k=10, token_k=token_k,
                                                max_candidates=candidates)
                    seconds.append(time.perf_counter() - started)
                    held.append(len({int(h.id) for h in hits} & ref) / 10)
                print(json.dumps({
                    "graph": parse_settings(args.graph), "documents": len(lengths),
                    "guess": guess, "token_k": token_k, "max_candidates": candidates,
                    "agreement@10": float(np.mean(held)),
                    "search_p50_ms": float(np.median(seconds) * 1000),
                    "exact_p50_ms": float(np.median(exact_seconds) * 1000),
                    "load_average": os.getloadavg()[0],
                }), flush=True)
        index.close()


if __name__ == "__main__":
    main()
