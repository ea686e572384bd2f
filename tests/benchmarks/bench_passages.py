"""Search latency with passages against truncation, side by side in one process.

    uv run python tests/benchmarks/bench_passages.py /work/shared/data/scifact \
        [--model offline-minilm] [--limit-docs N] [--rounds 5] [--cache DIR]

The corpus is encoded once under ``long_documents="split"`` at the model's document length.
Two embedded indexes are built from those vectors with ``add_encoded``: the split one holds
every passage; the truncating one holds, for a split document, only its first passage (the
first window of its tokens, which is what truncation encodes, up to the window ending at a
word boundary) and every other document as it is. The queries are encoded once, outside the
timing; then each round runs every query against both indexes with ``search_encoded``,
alternating which goes first, and the medians of the per-search times are compared. It prints
one JSON object: vectors, sizes, p50/p95 per index, their ratio, and each one's nDCG@10;
with ``--agreement``, also each index's agreement with its own exact MaxSim over the whole
corpus (every passage scored; untimed) and that exact ranking's nDCG@10.

``--cache DIR`` keeps the encoded corpus and queries there (NumPy files, no pickle) so that a
rerun skips the encoding; it is never needed for the result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _encode(model, data, cache: Path | None):
    """``(embeddings, passages, query vectors)``, from ``cache`` when it holds them."""
    from colbridge.passages import Passage, encode_documents

    if cache is not None and (cache / "meta.json").exists():
        meta = json.loads((cache / "meta.json").read_text())
        if meta["doc_ids"] == data.doc_ids and meta["model"] == model.name:
            with np.load(cache / "encoded.npz", allow_pickle=False) as f:
                vectors, lengths, queries = f["vectors"], f["lengths"], f["queries"]
            ends = np.cumsum(lengths)
            embeddings = [vectors[e - n:e] for e, n in zip(ends, lengths, strict=True)]
            passages = [None if p is None else tuple(Passage(*x) for x in p)
                        for p in meta["passages"]]
            return embeddings, passages, list(queries)
    encoded = encode_documents(model, data.doc_texts, long_documents="split", show_progress=False)
    queries = [model.encode_query(q) for q in data.queries.values()]
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(cache / "encoded.npz", vectors=np.concatenate(encoded.embeddings),
                 lengths=np.array([len(e) for e in encoded.embeddings]), queries=np.stack(queries))
        (cache / "meta.json").write_text(json.dumps({
            "doc_ids": data.doc_ids, "model": model.name,
            "passages": [None if p is None else [[x.start, x.end, x.rows] for x in p]
                         for p in encoded.passages]}))
    return encoded.embeddings, encoded.passages, queries


def main() -> None:
    from colbridge import ColBERTModel, EmbeddedIndex
    from colbridge.evaluation import load_beir, ndcg_at

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--model", default="offline-minilm")
    parser.add_argument("--limit-docs", type=int)
    parser.add_argument("--limit-queries", type=int)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--agreement", action="store_true",
                        help="also score every document exactly (all passages) per query, untimed, "
                             "and report each index's agreement with its own exact top k")
    args = parser.parse_args()

    data = load_beir(args.data, limit_docs=args.limit_docs, limit_queries=args.limit_queries)
    model = ColBERTModel(args.model)
    started = time.perf_counter()
    embeddings, passages, queries = _encode(model, data, args.cache)
    encode_s = time.perf_counter() - started
    first = [e if p is None else e[:p[0].rows] for e, p in zip(embeddings, passages, strict=True)]

    with tempfile.TemporaryDirectory(prefix="bench-passages-") as scratch:
        indexes = {}
        for name, vectors, layouts in (("split", embeddings, passages),
                                       ("truncate", first, None)):
            index = EmbeddedIndex(Path(scratch) / name, model=model, long_documents=name)
            for begin in range(0, len(vectors), 500):
                part = slice(begin, begin + 500)
                index.add_encoded(vectors[part], data.doc_texts[part], ids=data.doc_ids[part],
                                  passages=None if layouts is None else layouts[part])
            index.flush()
            indexes[name] = index
        query_ids = list(data.queries)
        times: dict[str, list[float]] = {name: [] for name in indexes}
        runs: dict[str, dict[str, list[str]]] = {name: {} for name in indexes}
        for round_number in range(args.rounds):
            for number, (query_id, query) in enumerate(zip(query_ids, queries, strict=True)):
                order = list(indexes) if (round_number + number) % 2 == 0 else list(indexes)[::-1]
                for name in order:
                    began = time.perf_counter()
                    hits = indexes[name].search_encoded(query, k=args.k)
                    times[name].append(time.perf_counter() - began)
                    runs[name][query_id] = [h.id for h in hits]
        report = {
            "documents": len(data.doc_ids), "queries": len(query_ids), "rounds": args.rounds,
            "model": model.name, "document_length": model.document_length,
            "split_documents": sum(p is not None for p in passages),
            "encode_s": round(encode_s, 1),
        }
        for name, index in indexes.items():
            stats = index.stats()
            ordered = sorted(times[name])
            report[name] = {
                "token_vectors": int(sum(len(v) for v in (embeddings if name == "split"
                                                          else first))),
                "bytes": sum(f.stat().st_size for f in (Path(scratch) / name).rglob("*")
                             if f.is_file()),
                "search_p50_ms": round(1000 * statistics.median(ordered), 2),
                "search_p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 2),
                "ndcg@10": round(statistics.fmean(
                    ndcg_at(runs[name][q], data.qrels.get(q, {}), 10) for q in query_ids), 4),
                "graph_items": stats.get("graph_items"),
            }
            if args.agreement:  # exact MaxSim (MaxP over all passages) of the whole corpus
                overlap, exact_ndcg = [], []
                for query_id, query in zip(query_ids, queries, strict=True):
                    exact = [h.id for h in index.search_encoded(
                        query, k=args.k, exact_threshold=len(data.doc_ids))]
                    overlap.append(len(set(exact) & set(runs[name][query_id])) / args.k)
                    exact_ndcg.append(ndcg_at(exact, data.qrels.get(query_id, {}), 10))
                report[name]["agreement_with_exact@k"] = round(statistics.fmean(overlap), 4)
                report[name]["exact_ndcg@10"] = round(statistics.fmean(exact_ndcg), 4)
            index.close()
        report["p50_ratio_split_to_truncate"] = round(
            report["split"]["search_p50_ms"] / report["truncate"]["search_p50_ms"], 3)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
