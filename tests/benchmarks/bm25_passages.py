"""BM25 over whole documents against BM25 over their passages (best passage per document).

    uv run python tests/benchmarks/bm25_passages.py /work/shared/data/scifact \
        [--model offline-minilm] [--lengths 128 300]

What decides whether hybrid search fuses MaxSim with BM25 of the whole text or of the best
passage (see "Passages" in docs/concepts.md). The passages are the windows an index with
``long_documents="split"`` makes at each document length (the model's tokenizer only: nothing
is encoded). BM25 is the embedded index's own (``colbridge.index.lexical``), one segment over
the whole collection. Prints nDCG@10 over every test query as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np


def _ndcg(segment, owners: np.ndarray, data, k: int = 10) -> float:
    """Mean nDCG@k when each document scores its best row of ``segment`` (row -> ``owners``)."""
    from colbridge.evaluation import ndcg_at
    from colbridge.index.lexical import segment_scores

    values = []
    for query_id, query in data.queries.items():
        rows, scores = segment_scores([segment], query)
        best: dict[int, float] = {}
        for row, score in zip(owners[rows].tolist(), scores.tolist(), strict=True):
            if score > best.get(row, -1.0):
                best[row] = score
        ranked = sorted(best, key=lambda d: (-best[d], d))[:k]
        values.append(ndcg_at([data.doc_ids[d] for d in ranked], data.qrels.get(query_id, {}), k))
    return statistics.fmean(values)


def main() -> None:
    from colbridge import ColBERTModel
    from colbridge.evaluation import load_beir
    from colbridge.index.lexical import Segment
    from colbridge.passages import LongDocuments, plan_passages

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--model", default="offline-minilm")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 300])
    args = parser.parse_args()

    data = load_beir(args.data)
    numbers = np.arange(len(data.doc_ids), dtype=np.int64)
    whole = Segment.build(numbers, data.doc_texts, len(numbers))
    report = {"documents": len(data.doc_ids), "queries": len(data.queries),
              "whole": round(_ndcg(whole, numbers, data), 4)}
    for length in args.lengths:
        model = ColBERTModel(args.model, document_length=length)
        plans = plan_passages(model, data.doc_texts, data.doc_ids, LongDocuments.SPLIT)
        texts, owners = [], []
        for number, (text, plan) in enumerate(zip(data.doc_texts, plans, strict=True)):
            spans = plan if plan is not None else [(0, len(text))]
            texts.extend(text[s:e] for s, e in spans)
            owners.extend([number] * len(spans))
        rows = np.arange(len(texts), dtype=np.int64)
        segment = Segment.build(rows, texts, len(rows))
        report[f"passages_{length}"] = round(_ndcg(segment, np.array(owners), data), 4)
        report[f"passages_{length}_count"] = len(texts)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
