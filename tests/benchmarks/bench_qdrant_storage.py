"""How Qdrant stores the token multivector: bytes, quality and speed of each storage datatype,
measured with Qdrant's own engine (issue #15, the Qdrant part).

    uv run --with qdrant-edge-py==0.9.0 python tests/benchmarks/bench_qdrant_storage.py \\
        ../shared/data/scifact --limit-docs 1500 --out docs/benchmarks/qdrant_storage.json

qdrant-client's local mode cannot answer this: it is NumPy brute force that ignores the
datatype. ``qdrant-edge-py`` runs Qdrant's storage and search code in-process, so every figure
here comes from the engine a server runs. For each datatype, one shard holds the collection's
token vectors as the Qdrant backend lays them out (multivector, dot product, MaxSim, no HNSW
graph: every search scans exactly); then

- bytes per token vector: blocks allocated on disk for the multivector storage of the shard's
  segments (Qdrant preallocates sparse 32 MB chunks, so file sizes would say nothing);
- agreement of its top 10 with exact MaxSim over the same vectors in NumPy, and nDCG@10;
- search p50: every query runs against every shard in a rotating order (so load on the shared
  cores falls on all alike), then the median per shard, as a ratio to float16.

The embeddings are the cached ones of tests/benchmarks/embeddings.py (``--cache``, default
~/.cache/colbridge/bench, as bench_scale.py uses). Not part of any test run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from colbridge import ColBERTModel
from colbridge.evaluation import agreement_at, load_beir, quality
from colbridge.scoring import maxsim_packed
from embeddings import load_or_encode

# qdrant-edge 0.9.0 has no turbo4 storage (Qdrant 1.19 added it to the server).
STORAGES = ("float16", "turbo8", "turbo16", "uint8")
VECTOR = "colbert"
UPSERT_TOKENS = 50_000


def import_edge():
    try:
        import qdrant_edge
    except ImportError:
        sys.exit("this benchmark needs Qdrant's engine: run it with "
                 "`uv run --with qdrant-edge-py==0.9.0 python ...`")
    return qdrant_edge


def allocated_bytes(folder: Path, part: str | None = None) -> int:
    """Bytes allocated on disk under ``folder`` (only paths containing ``part`` when given)."""
    total = 0
    for root, _, files in os.walk(folder):
        if part is not None and part not in root:
            continue
        for name in files:
            total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


def build_shard(edge, path: Path, storage: str, docs: list[np.ndarray], dim: int):
    datatype = getattr(edge.VectorStorageDatatype, storage.capitalize())
    config = edge.EdgeConfig(vectors={VECTOR: edge.EdgeVectorParams(
        size=dim, distance=edge.Distance.Dot, datatype=datatype,
        multivector_config=edge.MultiVectorConfig(edge.MultiVectorComparator.MaxSim),
        hnsw_config=edge.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
    )})
    shard = edge.EdgeShard.create(str(path), config)
    batch, tokens = [], 0
    for number, doc in enumerate(docs):
        batch.append(edge.Point(number, {VECTOR: doc.astype(np.float32).tolist()}))
        tokens += len(doc)
        if tokens >= UPSERT_TOKENS or number == len(docs) - 1:
            shard.update(edge.UpdateOperation.upsert_points(batch))
            batch, tokens = [], 0
    shard.flush()
    shard.optimize()
    shard.flush()
    return shard


def search(edge, shard, query: np.ndarray, k: int) -> tuple[list[int], float]:
    request = edge.QueryRequest(limit=k, query=edge.Query.Nearest(query.tolist(), using=VECTOR))
    started = time.perf_counter()
    hits = shard.query(request)
    return [int(h.id) for h in hits], time.perf_counter() - started


def run(args: argparse.Namespace) -> dict:
    edge = import_edge()
    data = load_beir(args.data, "test", limit_docs=args.limit_docs)
    emb = load_or_encode(data, ColBERTModel(args.model), args.cache)
    lengths = emb.lengths.astype(np.int64)
    widened = np.asarray(emb.vectors, dtype=np.float32)  # the float16 values, scored in float32
    docs = emb.documents()
    n_tokens, dim = widened.shape
    queries = emb.queries[: args.queries] if args.queries else emb.queries
    query_ids = emb.query_ids[: len(queries)]
    qrels = {q: data.qrels[q] for q in query_ids}
    k = 100
    print(f"{data.name}: {len(docs):,} documents, {n_tokens:,} token vectors ({dim}-d), "
          f"{len(queries)} queries; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
          flush=True)

    reference, exact_seconds = {}, []
    for qid, query in zip(query_ids, queries, strict=True):
        started = time.perf_counter()
        scores = maxsim_packed(query, widened, lengths)
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        exact_seconds.append(time.perf_counter() - started)
        reference[qid] = [emb.doc_ids[i] for i in top]

    work = Path(tempfile.mkdtemp(prefix="qdrant-storage-", dir=args.work))
    report = {
        "dataset": data.name, "documents": len(docs), "token_vectors": n_tokens, "dim": dim,
        "queries": len(queries), "model": args.model, "qdrant_edge": edge_version(),
        "load_average_at_start": os.getloadavg()[0],
        "exact": {"ndcg@10": quality(reference, qrels)["ndcg@10"],
                  "search_p50_ms_numpy": 1000 * float(np.median(exact_seconds))},
        "storages": {},
    }
    shards = {}
    try:
        for storage in args.storages:
            started = time.perf_counter()
            path = work / storage
            shards[storage] = build_shard(edge, path, storage, docs, dim)
            build_s = time.perf_counter() - started
            vector_bytes = allocated_bytes(path / "segments", f"vector_storage-{VECTOR}")
            report["storages"][storage] = {
                "vector_bytes_per_token": vector_bytes / n_tokens,
                "segments_bytes_per_token": allocated_bytes(path / "segments") / n_tokens,
                "build_seconds": build_s,
            }
            print(storage, json.dumps(report["storages"][storage]), flush=True)

        runs = {s: {} for s in shards}
        seconds = {s: [] for s in shards}
        names = list(shards)
        for number, (qid, query) in enumerate(zip(query_ids, queries, strict=True)):
            # Rotate who goes first so no storage always meets a warm (or cold) cache.
            turn = names[number % len(names):] + names[:number % len(names)]
            for storage in turn:
                hits, took = search(edge, shards[storage], query, k)
                runs[storage][qid] = [emb.doc_ids[i] for i in hits]
                seconds[storage].append(took)
        base = float(np.median(seconds["float16"])) if "float16" in seconds else None
        for storage in names:
            p50 = float(np.median(seconds[storage]))
            report["storages"][storage].update({
                "agreement@10": agreement_at(runs[storage], reference, 10),
                "ndcg@10": quality(runs[storage], qrels)["ndcg@10"],
                "search_p50_ms": 1000 * p50,
                "search_p50_vs_float16": p50 / base if base else None,
            })
            print(storage, json.dumps(report["storages"][storage]), flush=True)
    finally:
        for shard in shards.values():
            shard.close()
        shutil.rmtree(work, ignore_errors=True)
    report["load_average_at_end"] = os.getloadavg()[0]
    print(markdown(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def edge_version() -> str:
    from importlib.metadata import version

    return version("qdrant-edge-py")


def markdown(report: dict) -> str:
    lines = [
        "| storage | bytes per token vector (multivector storage) | whole segments | "
        "agreement with exact top 10 | nDCG@10 | search p50 | vs float16 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in report["storages"].items():
        ratio = r.get("search_p50_vs_float16")
        lines.append(
            f"| {name} | {r['vector_bytes_per_token']:.1f} | {r['segments_bytes_per_token']:.1f}"
            f" | {r['agreement@10']:.3f} | {r['ndcg@10']:.4f} | {r['search_p50_ms']:.1f} ms"
            f" | {'-' if ratio is None else f'{ratio:.2f}x'} |")
    exact = report["exact"]
    lines.append(f"| exact MaxSim (NumPy, float32 over the float16 values) | - | - | 1 | "
                 f"{exact['ndcg@10']:.4f} | {exact['search_p50_ms_numpy']:.1f} ms | - |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a BEIR folder, e.g. ../shared/data/scifact")
    parser.add_argument("--limit-docs", type=int, default=1500)
    parser.add_argument("--queries", type=int, default=0, help="first N test queries (0: all)")
    parser.add_argument("--model", default="offline-minilm")
    parser.add_argument("--storages", nargs="+", default=list(STORAGES), choices=STORAGES)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/colbridge/bench")
    parser.add_argument("--work", type=Path, default=None, help="where the shards are built")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
