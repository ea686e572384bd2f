"""The int8 token store against float16: quality, exact-stage speed, resident memory (issue #15).

    uv run python tests/benchmarks/bench_int8.py ../shared/data/scifact --limit-docs 1500

On the cached SciFact subset (see bench_codec_study.py; 355,397 token vectors, offline-minilm):

1. **Quality.** Every token vector replaced by its stored form; all 300 test queries scored by
   exact MaxSim over every document; agreement with float16 exact MaxSim's top 10 and nDCG@10.
   Variants: the int8 codec as built (per-dimension range from an even sample of 65,536 rows),
   the same with each row renormalised (what a per-token norm correction would buy), 8 bits on
   the residual to the nearest of 1,024 k-means centroids (2 more bytes per token), and the
   range trained on only the first 3, 30 or 300 documents (the clipping that updates face).
2. **Speed of the exact stage.** ``maxsim_ranges`` over 512 random documents per query, from
   a float16 file (memory-mapped, today's path) and from an int8 store (codes read with
   ``os.pread``, or memory-mapped); median per query, as a ratio to float16.
3. **Resident memory.** In a fresh process per variant: VmRSS after opening the store and after
   100 such scorings, less the VmRSS of the process before opening (interpreter and libraries).

With ``--whole-index DIR``, instead: builds an ``EmbeddedIndex`` per codec in DIR from the
cached vectors (default settings otherwise) and, in a fresh process per codec, measures VmRSS
after opening and after 100 searches (less the process before opening), search p50/p95 (query
encoding excluded), agreement of the top 10 with exact float16 MaxSim over all 300 queries,
and whole-folder bytes per token vector; then p50/p95 again with both indexes open in one
process and queried in turn. Writes docs/benchmarks/int8_index.json.

Writes docs/benchmarks/int8.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = 512


def vm_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def child(folder: Path, variant: str, dimension: int, rows: int) -> None:
    """One fresh process: open the store, score 100 queries' candidates, print VmRSS."""
    from colbridge.index.vectors import Float16Store
    from colbridge.index.vectors_int8 import Int8Store
    from colbridge.scoring import maxsim_ranges

    meta = np.load(folder / "meta.npz")
    starts, counts, queries = meta["starts"], meta["counts"], meta["queries"]
    maxsim_ranges(queries[0], np.zeros((1, dimension), np.float16), np.array([0]),
                  np.array([1]))  # load the kernels before the baseline
    Int8Store.use_memory_map = variant == "int8-mmap"
    base = vm_rss_kb()
    store = (Float16Store if variant == "float16" else Int8Store)(folder, 0, dimension, rows)
    opened = vm_rss_kb()
    rng = np.random.default_rng(1)
    for q in queries[:100]:
        picked = rng.choice(len(starts), CANDIDATES, replace=False)
        maxsim_ranges(q, store, starts[picked], counts[picked])
    print(json.dumps({"variant": variant, "rss_open_bytes": (opened - base) * 1024,
                      "rss_after_100_bytes": (vm_rss_kb() - base) * 1024}))


def index_child(folder: Path, cache_folder: Path) -> None:
    """One fresh process: open the index, search, print memory, latency and the top 10s."""
    from colbridge import EmbeddedIndex

    queries = np.load(cache_folder / "query_vectors.npy", allow_pickle=False)
    base = vm_rss_kb()
    index = EmbeddedIndex(folder)
    opened = vm_rss_kb()
    times, tops = [], []
    for i, q in enumerate(queries):
        begin = time.perf_counter()
        hits = index.search_encoded(q, k=10)
        times.append(time.perf_counter() - begin)
        tops.append([h.id for h in hits])
        if i == 99:
            after_100 = vm_rss_kb()
    stats = index.stats()
    index.close()
    print(json.dumps({"codec": stats["codec"], "rss_open_bytes": (opened - base) * 1024,
                      "rss_after_100_bytes": (after_100 - base) * 1024,
                      "p50_ms": 1000 * float(np.median(times)),
                      "p95_ms": 1000 * float(np.percentile(times, 95)),
                      "bytes_on_disk": stats["bytes_on_disk"],
                      "token_vectors": stats["token_vectors"], "tops": tops}))


def whole_index(root: Path, emb, out: Path) -> None:
    from colbridge import EmbeddedIndex
    from colbridge.scoring import maxsim_packed

    lengths = emb.lengths.astype(np.int64)
    exact = np.asarray(emb.vectors, dtype=np.float32)
    ids = np.array(emb.doc_ids)
    reference = [set(ids[np.argsort(-maxsim_packed(q, exact, lengths))[:10]]) for q in emb.queries]
    report = {"load_average_at_start": os.getloadavg()[0], "codecs": []}
    for codec in ("int8", "float16"):
        folder = root / codec
        if not folder.exists():
            begin = time.perf_counter()
            with EmbeddedIndex(folder, model="offline-minilm", codec=codec) as index:
                for b in range(0, len(ids), 256):
                    index.add_encoded(emb.documents()[b:b + 256], emb.doc_texts[b:b + 256],
                                      ids=emb.doc_ids[b:b + 256])
            build = time.perf_counter() - begin
        else:
            build = None
        out_text = subprocess.run([sys.executable, __file__, "--index-child", str(folder),
                                   str(emb.folder)], capture_output=True, text=True,
                                  check=True).stdout
        row = json.loads(out_text.strip().splitlines()[-1])
        tops = row.pop("tops")
        row["agreement@10_with_exact_float16"] = float(np.mean(
            [len(set(t) & r) / 10 for t, r in zip(tops, reference, strict=True)]))
        row["build_seconds_beyond_encoding"] = build
        for key in ("rss_open_bytes", "rss_after_100_bytes", "bytes_on_disk"):
            row[key + "_per_token"] = row[key] / row["token_vectors"]
        report["codecs"].append(row)
        print(json.dumps(row), flush=True)
    # Latency again, both indexes open in this process and queried in turn, so that machine
    # load falls on both alike (the children above ran one after the other).
    opened = {codec: EmbeddedIndex(root / codec) for codec in ("int8", "float16")}
    times: dict[str, list[float]] = {codec: [] for codec in opened}
    for q in emb.queries:
        for codec, index in opened.items():
            begin = time.perf_counter()
            index.search_encoded(q, k=10)
            times[codec].append(time.perf_counter() - begin)
    for index in opened.values():
        index.close()
    report["interleaved_latency_ms"] = {
        codec: {"p50": 1000 * float(np.median(t)), "p95": 1000 * float(np.percentile(t, 95))}
        for codec, t in times.items()}
    print(json.dumps(report["interleaved_latency_ms"]), flush=True)
    report["load_average_at_end"] = os.getloadavg()[0]
    out.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?")
    parser.add_argument("--limit-docs", type=int, default=1500)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/colbridge/bench")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "int8.json")
    parser.add_argument("--skip-quality", action="store_true",
                        help="measure speed and memory only (keeps --out's quality figures)")
    parser.add_argument("--child", nargs=4)
    parser.add_argument("--whole-index", type=Path)
    parser.add_argument("--index-child", nargs=2)
    args = parser.parse_args()
    if args.index_child:
        index_child(Path(args.index_child[0]), Path(args.index_child[1]))
        return
    if args.child:
        child(Path(args.child[0]), args.child[1], int(args.child[2]), int(args.child[3]))
        return

    from colbridge import ColBERTModel
    from colbridge.evaluation import agreement_at, load_beir, quality
    from colbridge.index.vectors import Float16Store
    from colbridge.index.vectors_int8 import Int8Params, Int8Store
    from colbridge.scoring import maxsim_packed, maxsim_ranges
    from embeddings import load_or_encode

    data = load_beir(args.data, "test", limit_docs=args.limit_docs)
    emb = load_or_encode(data, ColBERTModel("offline-minilm", backend="onnx"), args.cache)
    v16 = np.ascontiguousarray(emb.vectors)
    exact = v16.astype(np.float32)
    lengths = emb.lengths.astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    rows, dim = exact.shape
    qrels = {q: data.qrels[q] for q in emb.query_ids}
    ids = np.array(emb.doc_ids)
    if args.whole_index:
        whole_index(args.whole_index, emb, ROOT / "docs" / "benchmarks" / "int8_index.json")
        return
    report: dict = {"documents": len(ids), "token_vectors": rows, "dim": dim,
                    "queries": len(emb.query_ids), "load_average_at_start": os.getloadavg()[0]}

    def runs(vectors: np.ndarray) -> dict[str, list[str]]:
        return {qid: ids[np.argsort(-maxsim_packed(q, vectors, lengths), kind="stable")[:100]]
                .tolist() for qid, q in zip(emb.query_ids, emb.queries, strict=True)}

    if not args.skip_quality:
        reference = runs(exact)
        report["float16_ndcg@10"] = quality(reference, qrels)["ndcg@10"]
        variants = report["quality"] = []

        def record(name: str, decoded: np.ndarray, bytes_per_token: int, **extra) -> None:
            found = runs(decoded)
            row = {"variant": name, "bytes_per_token": bytes_per_token,
                   "agreement@10": agreement_at(found, reference, 10),
                   "ndcg@10": quality(found, qrels)["ndcg@10"], **extra}
            variants.append(row)
            print(json.dumps(row), flush=True)

        def coded(params: Int8Params, vectors: np.ndarray) -> tuple[np.ndarray, float]:
            codes, clipped = params.encode(vectors)
            return params.decode(codes), clipped / vectors.size

        decoded, share = coded(Int8Params.train(exact), exact)
        record("int8 (the codec)", decoded, dim, clipped_share=share)
        record("int8, rows renormalised", decoded / np.linalg.norm(decoded, axis=1,
                                                                   keepdims=True), dim + 2)
        from prototypes.codecs import ResidualCodec

        started = time.perf_counter()
        codec = ResidualCodec.train(v16, bits=4, n_centroids=1024, iterations=4)
        nearest = codec.centroids.astype(np.float32)[codec.encode(v16)[0].astype(np.int64)]
        residual = Int8Params.train(exact - nearest)
        decoded_residual, _ = coded(residual, exact - nearest)
        record("int8 on the residual to 1,024 centroids", nearest + decoded_residual, dim + 2,
               train_seconds=time.perf_counter() - started)
        for docs in (3, 30, 300):
            first = int(lengths[:docs].sum())
            decoded, share = coded(Int8Params.train(exact[:first]), exact)
            record(f"int8 trained on the first {docs} documents ({first} rows)", decoded, dim,
                   clipped_share=share)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        f16 = Float16Store(folder, 0, dim, 0)
        f16.append([v16])
        i8 = Int8Store(folder, 0, dim, 0)
        i8.append([v16])
        del f16, i8
        np.savez(folder / "meta.npz", starts=starts, counts=lengths, queries=emb.queries)
        rng = np.random.default_rng(0)
        picks = [rng.choice(len(starts), CANDIDATES, replace=False) for _ in emb.queries]
        stores = {"float16": Float16Store(folder, 0, dim, rows),
                  "int8-pread": Int8Store(folder, 0, dim, rows)}
        timings: dict[str, list[float]] = {name: [] for name in (*stores, "int8-mmap")}
        agree = []
        for q, picked in zip(emb.queries, picks, strict=True):
            for name in timings:  # interleaved, so machine load hits every variant alike
                store = stores["int8-pread" if name == "int8-mmap" else name]
                Int8Store.use_memory_map = name == "int8-mmap"
                begin = time.perf_counter()
                scores = maxsim_ranges(q, store, starts[picked], lengths[picked])
                timings[name].append(time.perf_counter() - begin)
                if name == "float16":
                    base = scores
                elif name == "int8-pread":
                    agree.append(float(np.abs(scores - base).max()))
        Int8Store.use_memory_map = False
        median = {name: float(np.median(t)) for name, t in timings.items()}
        report["exact_stage"] = {
            "candidates": CANDIDATES,
            "median_ms": {name: 1000 * m for name, m in median.items()},
            "ratio_to_float16": {name: m / median["float16"] for name, m in median.items()},
            "max_score_difference_to_float16": max(agree),
        }
        print(json.dumps(report["exact_stage"]), flush=True)
        del stores
        memory = report["resident_memory"] = []
        for variant in ("float16", "int8-pread", "int8-mmap"):
            out = subprocess.run([sys.executable, __file__, "--child", str(folder), variant,
                                  str(dim), str(rows)], capture_output=True, text=True,
                                 check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            row["rss_after_100_bytes_per_token"] = row["rss_after_100_bytes"] / rows
            memory.append(row)
            print(json.dumps(row), flush=True)
        report["file_bytes_per_token"] = {
            "float16": (folder / "vectors-0.f16").stat().st_size / rows,
            "int8": ((folder / "vectors-0.u8").stat().st_size
                     + (folder / "vectors-0.json").stat().st_size) / rows}
    report["load_average_at_end"] = os.getloadavg()[0]
    if args.skip_quality and args.out.exists():  # keep the quality figures of an earlier run
        earlier = json.loads(args.out.read_text())
        report.update({k: earlier[k] for k in ("quality", "float16_ndcg@10") if k in earlier})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["file_bytes_per_token"]))


if __name__ == "__main__":
    main()
