"""``colbridge eval``: retrieval quality, latency, build cost and size on a BEIR-format folder.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``, with a
header line). Metrics follow the usual definitions (as in BEIR / pytrec_eval): nDCG@10 with
graded gains and log2 discounts, recall@k over judged-relevant documents, MRR@10.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInputError

SWEEP = ((16, 32), (32, 64), (64, 128), (128, 256), (128, 512), (192, 768), (256, 1024),
         (384, 1536))
"""(token_k, max_candidates) settings tried by ``--plot``, narrow to broad."""


@dataclass
class BeirData:
    name: str
    doc_ids: list[str]
    doc_texts: list[str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)


def load_beir(folder: str | Path, split: str = "test", *, limit_docs: int | None = None,
              limit_queries: int | None = None) -> BeirData:
    """Read a BEIR folder. With limits, the kept documents include every judged document of the
    kept queries, so scores on a subset stay meaningful."""
    root = Path(folder)
    for needed in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (root / needed).exists():
            raise InvalidInputError(f"{root} is not a BEIR folder: {needed} is missing")
    qrels: dict[str, dict[str, int]] = {}
    with open(root / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        for number, line in enumerate(f):
            parts = line.rstrip("\n").split("\t")
            if number == 0 and not parts[-1].lstrip("-").isdigit():
                continue  # header
            if len(parts) < 3:
                continue
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    queries: dict[str, str] = {}
    with open(root / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if str(row["_id"]) in qrels:
                    queries[str(row["_id"])] = row["text"]
    if limit_queries is not None:
        queries = dict(list(queries.items())[:limit_queries])
    qrels = {q: qrels[q] for q in queries}
    judged = {d for rels in qrels.values() for d in rels}
    ids, texts, extra_ids, extra_texts = [], [], [], []
    with open(root / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            doc_id = str(row["_id"])
            title = (row.get("title") or "").strip()
            text = f"{title}\n{row['text']}" if title else row["text"]
            if not text.strip():
                continue
            if limit_docs is None or doc_id in judged:
                ids.append(doc_id)
                texts.append(text)
            elif len(extra_ids) < limit_docs:
                extra_ids.append(doc_id)
                extra_texts.append(text)
    if limit_docs is not None:
        room = max(limit_docs - len(ids), 0)
        ids, texts = ids + extra_ids[:room], texts + extra_texts[:room]
    return BeirData(root.name, ids, texts, queries, qrels)


# -- metrics ----------------------------------------------------------------------------------
def ndcg_at(ranked: Sequence[str], relevance: dict[str, int], k: int = 10) -> float:
    gains = [relevance.get(d, 0) for d in ranked[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g > 0)
    ideal = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], relevance: dict[str, int], k: int) -> float:
    relevant = {d for d, g in relevance.items() if g > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at(ranked: Sequence[str], relevance: dict[str, int], k: int = 10) -> float:
    for rank, doc in enumerate(ranked[:k], start=1):
        if relevance.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def quality(runs: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, recall@10, recall@100 and MRR@10 of ranked lists per query."""
    metrics = {"ndcg@10": [], "recall@10": [], "recall@100": [], "mrr@10": []}
    for qid, ranked in runs.items():
        rels = qrels.get(qid, {})
        metrics["ndcg@10"].append(ndcg_at(ranked, rels, 10))
        metrics["recall@10"].append(recall_at(ranked, rels, 10))
        metrics["recall@100"].append(recall_at(ranked, rels, 100))
        metrics["mrr@10"].append(mrr_at(ranked, rels, 10))
    return {name: float(np.mean(values)) if values else 0.0 for name, values in metrics.items()}


def agreement_at(runs: dict[str, list[str]], reference: dict[str, list[str]], k: int = 10) -> float:
    """Mean share of the reference top-k that the run's top-k contains."""
    shares = [len(set(runs[q][:k]) & set(ref[:k])) / max(min(k, len(ref)), 1)
              for q, ref in reference.items()]
    return float(np.mean(shares)) if shares else 1.0


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if os.uname().sysname == "Darwin" else peak / 1024


# -- the evaluation ---------------------------------------------------------------------------
def build_index(index: Any, data: BeirData, *, batch: int = 256,
                progress: Callable[[int], None] | None = None) -> dict[str, float]:
    """Encode and add the corpus in batches; returns seconds spent encoding and indexing."""
    from .passages import encode_documents

    encode_s = index_s = 0.0
    for begin in range(0, len(data.doc_ids), batch):
        texts = data.doc_texts[begin:begin + batch]
        ids = data.doc_ids[begin:begin + batch]
        started = time.perf_counter()
        vectors = encode_documents(index.model, texts, long_documents=index.long_documents,
                                   ids=ids, show_progress=False)
        encoded = time.perf_counter()
        index.add_encoded(vectors.embeddings, texts, ids=ids, passages=vectors.passages)
        encode_s += encoded - started
        index_s += time.perf_counter() - encoded
        if progress:
            progress(len(texts))
    started = time.perf_counter()
    flush = getattr(index, "flush", None)
    if flush:
        flush()
    index_s += time.perf_counter() - started
    return {"encode_s": encode_s, "index_s": index_s}


MODES = ("colbert", "bm25", "hybrid")


def run_queries(index: Any, data: BeirData, *, k: int = 100,
                options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Encode and search every query; returns the runs, exact reference runs, latencies and
    the query embeddings."""
    options = options or {}
    runs: dict[str, list[str]] = {}
    exact: dict[str, list[str]] = {}
    embeddings: dict[str, np.ndarray] = {}
    encode_ms, search_ms, exact_ms = [], [], []
    for qid, text in data.queries.items():
        started = time.perf_counter()
        embedding = index.model.encode_query(text)
        encoded = time.perf_counter()
        hits = index.search_encoded(embedding, k=k, **options)
        searched = time.perf_counter()
        reference = index.search_encoded(embedding, k=k, exact_threshold=10**9)
        done = time.perf_counter()
        encode_ms.append((encoded - started) * 1000)
        search_ms.append((searched - encoded) * 1000)
        exact_ms.append((done - searched) * 1000)
        runs[qid] = [h.id for h in hits]
        exact[qid] = [h.id for h in reference]
        embeddings[qid] = embedding
    return {"runs": runs, "exact": exact, "encode_ms": encode_ms, "search_ms": search_ms,
            "exact_ms": exact_ms, "embeddings": embeddings}


def run_mode(index: Any, data: BeirData, mode: str, embeddings: dict[str, np.ndarray], *,
             k: int = 100, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Search every query in ``mode`` with its precomputed embedding (BM25 needs none);
    returns the runs and search latencies (query encoding excluded)."""
    runs: dict[str, list[str]] = {}
    search_ms = []
    for qid, text in data.queries.items():
        started = time.perf_counter()
        if mode == "bm25":
            hits = index.search(text, k=k, mode="bm25")
        else:
            hits = index.search_encoded(embeddings[qid], k=k, mode=mode, query_text=text,
                                        **(options or {}))
        search_ms.append((time.perf_counter() - started) * 1000)
        runs[qid] = [h.id for h in hits]
    return {"runs": runs, "search_ms": search_ms}


def evaluate(index: Any, data: BeirData, *, build: dict[str, float] | None = None,
             options: dict[str, Any] | None = None, modes: Sequence[str] = ("colbert",)
             ) -> dict[str, Any]:
    """The full report for an index that holds ``data``'s corpus.

    The ColBERT search is always measured in detail (agreement with exact MaxSim, latency split
    into encoding and search). ``modes`` adds a side-by-side row per search mode under
    ``report["modes"]``: nDCG@10, recall@10/100, MRR@10 and search latency.
    """
    unknown = set(modes) - set(MODES)
    if unknown:
        raise InvalidInputError(f"unknown mode(s) {sorted(unknown)}; choose from {MODES}")
    result = run_queries(index, data, options=options)
    stats = index.stats()
    ours, exact = quality(result["runs"], data.qrels), quality(result["exact"], data.qrels)
    by_mode: dict[str, dict[str, float]] = {}
    for mode in modes:
        run = result if mode == "colbert" else run_mode(
            index, data, mode, result["embeddings"], options=options)
        by_mode[mode] = {**quality(run["runs"], data.qrels),
                         "search_p50_ms": percentile(run["search_ms"], 50),
                         "search_p95_ms": percentile(run["search_ms"], 95)}
    return {
        "dataset": data.name,
        "documents": len(data.doc_ids),
        "queries": len(data.queries),
        "model": index.model.name,
        "backend": index.model.backend,
        "document_length": index.model.document_length,
        "long_documents": str(getattr(index, "long_documents", "truncate")),
        "quality": {**ours, "exact_ndcg@10": exact["ndcg@10"],
                    "agreement@10": agreement_at(result["runs"], result["exact"], 10)},
        "latency_ms": {
            "encode_p50": percentile(result["encode_ms"], 50),
            "encode_p95": percentile(result["encode_ms"], 95),
            "search_p50": percentile(result["search_ms"], 50),
            "search_p95": percentile(result["search_ms"], 95),
            "exact_search_p50": percentile(result["exact_ms"], 50),
        },
        "modes": by_mode,
        "build_s": build or {},
        "size": {
            "bytes": stats["bytes_on_disk"],
            "bytes_per_document": stats["bytes_on_disk"] / max(stats["documents"], 1),
            "bytes_per_token_vector": stats["bytes_on_disk"] / max(stats["token_vectors"], 1),
            "token_vectors": stats["token_vectors"],
            "lexical_bytes": sum(size for name, size in stats["files"].items()
                                 if name.startswith("lexical-")),
        },
        "peak_rss_mb": peak_rss_mb(),
    }


def sweep(index: Any, data: BeirData, settings: Sequence[tuple[int, int]] = SWEEP
          ) -> list[dict[str, float]]:
    """Agreement with exact top-10 and search latency as the candidate breadth grows: each
    setting is ``(token_k, max_candidates)``, searched with ``ef = token_k``."""
    embeddings = {q: index.model.encode_query(t) for q, t in data.queries.items()}
    exact = {q: [h.id for h in index.search_encoded(e, k=10, exact_threshold=10**9)]
             for q, e in embeddings.items()}
    points = []
    for token_k, max_candidates in settings:
        runs, times = {}, []
        for q, e in embeddings.items():
            started = time.perf_counter()
            hits = index.search_encoded(e, k=10, token_k=token_k, ef=token_k,
                                        max_candidates=max_candidates, exact_threshold=0)
            times.append((time.perf_counter() - started) * 1000)
            runs[q] = [h.id for h in hits]
        points.append({"token_k": token_k, "max_candidates": max_candidates,
                       "agreement@10": agreement_at(runs, exact), "search_p50_ms":
                       statistics.median(times), "ndcg@10": quality(runs, data.qrels)["ndcg@10"]})
    return points


def plot_sweep(points: list[dict[str, float]], path: str | Path, title: str) -> None:
    """Save agreement-with-exact against search latency as a PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise InvalidInputError('--plot needs matplotlib: pip install "colbridge[plot]"') from e
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    xs = [p["search_p50_ms"] for p in points]
    ys = [p["agreement@10"] for p in points]
    ax.plot(xs, ys, marker="o")
    for p, x, y in zip(points, xs, ys):
        ax.annotate(f"{p['token_k']}/{p['max_candidates']}", (x, y), textcoords="offset points",
                    xytext=(4, -10), fontsize=7)
    ax.set_xlabel("search latency p50, ms (excluding query encoding)")
    ax.set_ylabel("agreement with exact MaxSim top-10")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
