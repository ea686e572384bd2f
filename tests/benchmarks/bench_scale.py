"""Scale benchmark for compressed storage (issue #15): the prototype IvfIndex on SciFact and on
synthetic collections made from SciFact's real token vectors.

    uv run python tests/benchmarks/bench_scale.py ../shared/data/scifact --limit-docs 1500 \\
        --sizes real 1500 10000 --queries 100 --baseline

``real`` is the SciFact collection itself (``--limit-docs`` of it: every judged document, filled
up with others); a number is a synthetic collection of that many documents. Synthetic documents
(see :func:`synthesize`) are built from runs of consecutive token vectors of ``--spans`` random
real documents, each vector perturbed by Gaussian noise and renormalised, with lengths drawn
from the real documents'. A synthetic collection of the real one's size is there to show that
exact MaxSim behaves alike on both (score distributions, gaps at rank 10, the index's
agreement). The queries are SciFact's real test queries, so only agreement with exact MaxSim
is measured on synthetic collections (there are no judgements).

For each collection: exact MaxSim over float16 vectors (the reference, and its time per query
in the same run), the IvfIndex build time, bytes per token vector of its folder, resident
memory (VmRSS from /proc, in a fresh process, after opening and after the searches) per token
vector, search p50/p95, agreement with the exact top 10, recall of the exact top 10 among the
first stage's candidates, and with ``--baseline`` (real collection only) today's EmbeddedIndex
over the same vectors. Embeddings are cached under ``--cache`` (default
~/.cache/colbridge/bench); synthetic vectors are written there as ``.npy`` files, so a run at
200k documents needs about 9 GB of disk there. Prints JSON lines and writes ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[2]
_CHUNK_TOKENS = 1 << 19


def synthesize(vectors: np.ndarray, lengths: np.ndarray, n_docs: int, *, spans: int = 3,
               noise: float = 0.15, seed: int = 0, out: Path | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """``n_docs`` documents of float16 token vectors from the real ``vectors``.

    Each document takes a length from the real ``lengths``, splits it into ``spans`` runs, and
    fills each run with consecutive token vectors of a random real document (from a random
    start, wrapping around), so neighbouring tokens stay as correlated as in real text. Every
    vector gets Gaussian noise of norm about ``noise`` and is renormalised. ``out`` makes the
    result a memory-mapped ``.npy`` file there (for collections larger than RAM).
    """
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    dim = vectors.shape[1]
    new_lengths = rng.choice(lengths, size=n_docs)
    total = int(new_lengths.sum())
    if out is None:
        result = np.empty((total, dim), dtype=np.float16)
    else:
        result = np.lib.format.open_memmap(out, mode="w+", dtype=np.float16, shape=(total, dim))
    row = 0
    for begin in range(0, n_docs, 4096):
        block = new_lengths[begin:begin + 4096]
        pieces = []
        for length in block.tolist():
            cuts = np.sort(rng.choice(np.arange(1, length), size=min(spans, length) - 1,
                                      replace=False)) if length > 1 else np.zeros(0, np.int64)
            for run in np.diff(np.concatenate(([0], cuts, [length]))).tolist():
                source = int(rng.integers(len(lengths)))
                offset = int(rng.integers(lengths[source]))
                picks = starts[source] + (offset + np.arange(run)) % lengths[source]
                pieces.append(picks)
        rows = np.concatenate(pieces)
        x = vectors[rows].astype(np.float32)
        x += rng.standard_normal(x.shape, dtype=np.float32) * (noise / np.sqrt(dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        result[row:row + len(x)] = x
        row += len(x)
    if out is not None:
        result.flush()
    return result, new_lengths


def exact_scores(query: np.ndarray, vectors: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Exact MaxSim of ``query`` over every document, in chunks of about 0.5 M token vectors."""
    from colbridge.scoring import maxsim_packed

    ends = np.cumsum(lengths)
    out = np.empty(len(lengths), dtype=np.float32)
    doc, row = 0, 0
    while doc < len(lengths):
        stop = max(int(np.searchsorted(ends, row + _CHUNK_TOKENS, side="right")), doc + 1)
        out[doc:stop] = maxsim_packed(query, np.asarray(vectors[row:ends[stop - 1]]),
                                      lengths[doc:stop])
        doc, row = stop, int(ends[stop - 1])
    return out


def score_profile(scores: list[np.ndarray], query_tokens: int) -> dict:
    """How exact MaxSim spreads over a collection: per query, the top-1, top-10 and median
    scores (divided by the query length) and the relative gap between ranks 10 and 11."""
    top1, top10, median, gap = [], [], [], []
    for s in scores:
        ordered = np.sort(s)[::-1]
        top1.append(ordered[0] / query_tokens)
        top10.append(ordered[9] / query_tokens)
        median.append(np.median(ordered) / query_tokens)
        gap.append((ordered[9] - ordered[10]) / ordered[9])
    return {"top1_mean": float(np.mean(top1)), "top10_mean": float(np.mean(top10)),
            "median_mean": float(np.mean(median)), "gap10_11_median": float(np.median(gap)),
            "gap10_11_share_below_1e-3": float(np.mean(np.array(gap) < 1e-3))}


def vm_rss() -> int:
    """This process's resident memory in bytes, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def probe(folder: Path, queries_file: Path, settings: dict) -> dict:
    """Run in a fresh process: open the index, search every query, report RSS and times."""
    from colbridge.index.ivf import IvfIndex  # imported before the first reading

    queries = np.load(queries_file, allow_pickle=False)
    before = vm_rss()
    index = IvfIndex.open(folder)
    opened = vm_rss()
    seconds, runs = [], []
    for q in queries:
        started = time.perf_counter()
        docs, _ = index.search(q, k=10, **settings)
        seconds.append(time.perf_counter() - started)
        runs.append(docs.tolist())
    searched = vm_rss()
    return {"rss_before_open": before, "rss_after_open": opened, "rss_after_searches": searched,
            "seconds": seconds, "runs": runs, "resident_parts": index.resident_bytes()}


def measure(name: str, vectors: np.ndarray, lengths: np.ndarray, queries: np.ndarray, args,
            work: Path) -> dict:
    from colbridge.index.ivf import IvfIndex

    n_tokens = int(lengths.sum())
    print(f"{name}: {len(lengths):,} documents, {n_tokens:,} token vectors; load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    exact, exact_seconds = [], []
    for q in queries:
        started = time.perf_counter()
        exact.append(exact_scores(q, vectors, lengths))
        exact_seconds.append(time.perf_counter() - started)
    reference = [np.argsort(-s, kind="stable")[:10] for s in exact]
    folder = work / f"ivf-{name}"
    started = time.perf_counter()
    index = IvfIndex.build(folder, vectors, lengths, bits=args.bits, n_centroids=args.centroids,
                           refinement_bits=args.refinement_bits, seed=args.seed)
    build_seconds = time.perf_counter() - started
    recall = {n: [] for n in (16, 32, 64, 128, 256)}
    first_seconds = []
    for q, ref in zip(queries, reference, strict=True):
        started = time.perf_counter()
        candidates, _ = index.first_stage(q, nprobe=args.nprobe, pool=args.pool, n=max(recall))
        first_seconds.append(time.perf_counter() - started)
        for n in recall:
            recall[n].append(len(set(candidates[:n].tolist()) & set(ref.tolist())) / 10)
    decoded_only = []
    for q in queries:
        docs, _ = index.first_stage(q, nprobe=args.nprobe, pool=args.pool, n=args.candidates)
        decoded_only.append(docs[np.argsort(-index.score(q, docs), kind="stable")[:10]])
    folder_bytes = index.folder_bytes()
    tier_bytes = (folder / "refinement.u8").stat().st_size if args.refinement_bits else 0
    del index
    queries_file = work / "queries.npy"
    np.save(queries_file, queries)
    settings = {"nprobe": args.nprobe, "pool": args.pool, "candidates": args.candidates}
    out = subprocess.run(
        [sys.executable, __file__, "--probe", str(folder), str(queries_file), json.dumps(settings)],
        check=True, capture_output=True, text=True).stdout
    probed = json.loads(out.strip().splitlines()[-1])
    runs = probed["runs"]

    def agreement(found) -> float:
        return float(np.mean([len(set(list(f)) & set(r.tolist())) / 10
                              for f, r in zip(found, reference, strict=True)]))

    row = {
        "collection": name, "documents": len(lengths), "token_vectors": n_tokens,
        "queries": len(queries), "settings": {**settings, "bits": args.bits,
                                              "centroids": args.centroids,
                                              "refinement_bits": args.refinement_bits},
        "exact_p50_ms": float(np.median(exact_seconds) * 1000),
        "score_profile": score_profile(exact, queries.shape[1]),
        "build_seconds": build_seconds,
        "folder_bytes_per_token": folder_bytes / n_tokens,
        "folder_bytes_per_token_without_tier": (folder_bytes - tier_bytes) / n_tokens,
        "resident_parts_bytes_per_token": {k: v / n_tokens
                                           for k, v in probed["resident_parts"].items()},
        "rss_after_open_bytes_per_token":
            (probed["rss_after_open"] - probed["rss_before_open"]) / n_tokens,
        "rss_after_searches_bytes_per_token":
            (probed["rss_after_searches"] - probed["rss_before_open"]) / n_tokens,
        "search_p50_ms": float(np.median(probed["seconds"]) * 1000),
        "search_p95_ms": float(np.percentile(probed["seconds"], 95) * 1000),
        "first_stage_p50_ms": float(np.median(first_seconds) * 1000),
        "agreement@10": agreement(runs),
        "agreement@10_decoded_only": agreement(decoded_only),
        "exact_top10_in_first_stage": {str(n): float(np.mean(v)) for n, v in recall.items()},
    }
    row["search_p50_over_exact_p50"] = row["search_p50_ms"] / row["exact_p50_ms"]
    print(json.dumps(row), flush=True)
    if not args.keep:
        shutil.rmtree(folder)
    return row


def baseline(vectors: np.ndarray, lengths: np.ndarray, queries: np.ndarray, texts: list[str],
             doc_ids: list[str], model, work: Path) -> dict:
    """Today's EmbeddedIndex over the same vectors: build time, bytes, search time, agreement."""
    from colbridge import EmbeddedIndex

    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    docs = [np.asarray(vectors[s:s + n], dtype=np.float32)
            for s, n in zip(starts, lengths, strict=True)]
    index = EmbeddedIndex(work / "embedded", model=model)
    started = time.perf_counter()
    for begin in range(0, len(docs), 512):
        index.add_encoded(docs[begin:begin + 512], texts[begin:begin + 512],
                          ids=doc_ids[begin:begin + 512])
    index.flush()
    build = time.perf_counter() - started
    seconds, runs = [], []
    for q in queries:
        started = time.perf_counter()
        hits = index.search_encoded(q, k=10)
        seconds.append(time.perf_counter() - started)
        runs.append([doc_ids.index(h.id) for h in hits])
    stats = index.stats()
    index.close()
    return {"build_seconds": build, "search_p50_ms": float(np.median(seconds) * 1000),
            "bytes_per_token": stats["bytes_on_disk"] / int(lengths.sum()), "runs": runs}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        print(json.dumps(probe(Path(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--limit-docs", type=int, default=1500)
    parser.add_argument("--sizes", nargs="+", default=["real", "10000"],
                        help="'real' and/or synthetic document counts (10000 50000 200000)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--centroids", type=int, default=4096)
    parser.add_argument("--refinement-bits", type=int, default=4,
                        help="bits of the on-disk tier; 0 for none")
    parser.add_argument("--nprobe", type=int, default=4)
    parser.add_argument("--pool", type=int, default=1024)
    parser.add_argument("--candidates", type=int, default=64)
    parser.add_argument("--spans", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", action="store_true",
                        help="also build today's EmbeddedIndex on the real collection")
    parser.add_argument("--keep", action="store_true", help="keep the index folders")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/colbridge/bench")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "docs" / "benchmarks" / "scale.json")
    args = parser.parse_args()
    args.refinement_bits = args.refinement_bits or None

    from colbridge import ColBERTModel
    from colbridge.evaluation import load_beir
    from embeddings import load_or_encode

    data = load_beir(args.data, "test", limit_docs=args.limit_docs)
    model = ColBERTModel("offline-minilm", backend="onnx")
    emb = load_or_encode(data, model, args.cache)
    real = np.asarray(emb.vectors)
    lengths = emb.lengths.astype(np.int64)
    queries = emb.queries[:args.queries]
    report = {"dataset": data.name, "source_documents": len(lengths), "cpus": os.cpu_count(),
              "load_average_at_start": os.getloadavg()[0], "spans": args.spans,
              "noise": args.noise, "collections": []}
    work = Path(tempfile.mkdtemp(prefix="colbridge-scale-", dir=args.cache))
    try:
        for size in args.sizes:
            if size == "real":
                row = measure("real", real, lengths, queries, args, work)
                if args.baseline:
                    base = baseline(real, lengths, queries, emb.doc_texts, emb.doc_ids, model,
                                    work)
                    ref = [np.argsort(-exact_scores(q, real, lengths), kind="stable")[:10]
                           for q in queries]
                    base["agreement@10"] = float(np.mean(
                        [len(set(r) & set(f.tolist())) / 10
                         for r, f in zip(base.pop("runs"), ref, strict=True)]))
                    row["embedded_index_today"] = base
                    print(json.dumps(base), flush=True)
            else:
                n = int(size)
                path = args.cache / f"synthetic-{data.name}-{len(lengths)}-{n}-{args.seed}.npy"
                synthetic, synthetic_lengths = synthesize(
                    real, lengths, n, spans=args.spans, noise=args.noise, seed=args.seed,
                    out=path)
                row = measure(f"synthetic-{n}", synthetic, synthetic_lengths, queries, args, work)
                del synthetic
                path.unlink()
            report["collections"].append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["load_average_at_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
