"""The residual codec on real token vectors (groundwork for issue #15): size, exact MaxSim over
decoded vectors against float16, training time, encoding and decoding throughput.

    uv run python tests/benchmarks/bench_codec.py ../shared/data/scifact --limit-docs 1500

The token vectors come from tests/benchmarks/embeddings.py (cached under
.colbridge-cache/embeddings). ``--limit-docs`` keeps every document judged for the test queries
and fills up with others, so nDCG stays meaningful on a subset. For every bit width and
codebook size, the codec is trained on the collection's own vectors, every vector is encoded and
decoded, and each query is scored by exact MaxSim over all decoded vectors; the reference is
exact MaxSim over the float16 vectors. Prints a Markdown table and writes the figures to
docs/benchmarks/codec.json. Not part of any default test run (``-m benchmark``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from colbridge import ColBERTModel
from colbridge.evaluation import agreement_at, load_beir, quality
from prototypes.codecs import ResidualCodec
from prototypes.codecs.residual import suggested_centroids
from colbridge.scoring import maxsim_packed
from embeddings import load_or_encode

pytestmark = pytest.mark.benchmark

ROOT = Path(__file__).resolve().parents[2]


def ranked(vectors: np.ndarray, lengths: np.ndarray, ids: list[str], queries: np.ndarray,
           query_ids: list[str], k: int = 100) -> dict[str, list[str]]:
    """Exact MaxSim of every query over every document, top ``k`` ids per query."""
    runs = {}
    for qid, query in zip(query_ids, queries, strict=True):
        scores = maxsim_packed(query, vectors, lengths)
        top = np.argpartition(-scores, k)[:k]
        runs[qid] = [ids[i] for i in top[np.argsort(-scores[top], kind="stable")]]
    return runs


def contained(runs: dict[str, list[str]], reference: dict[str, list[str]], n: int) -> float:
    """Mean share of each query's exact top 10 found in the run's top ``n``."""
    return float(np.mean([len(set(ref[:10]) & set(runs[q][:n])) / len(ref[:10])
                          for q, ref in reference.items()]))


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def run(data_path: Path, *, model_name: str, limit_docs: int | None, bits_list: list[int],
        centroid_counts: list[int | None], iterations: int, out: Path | None,
        first_stage: tuple[int, int | None] | None = None,
        probes: tuple[int, ...] = (1, 2, 4, 8, 16)) -> dict:
    data = load_beir(data_path, "test", limit_docs=limit_docs)
    model = ColBERTModel(model_name)
    emb = load_or_encode(data, model, ROOT / ".colbridge-cache" / "embeddings")
    vectors = np.ascontiguousarray(emb.vectors)  # float16, (tokens, dim)
    widened = vectors.astype(np.float32)  # the same values; both sides score in float32
    lengths = emb.lengths.astype(np.int64)
    n_tokens, dim = vectors.shape
    qrels = {q: data.qrels[q] for q in emb.query_ids}
    print(f"{data.name}: {len(emb.doc_ids):,} documents, {n_tokens:,} token vectors ({dim}-d), "
          f"{len(emb.query_ids)} queries; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
          flush=True)

    reference, reference_seconds = timed(ranked, widened, lengths, emb.doc_ids, emb.queries,
                                         emb.query_ids)
    exact_quality = quality(reference, qrels)
    report = {
        "dataset": data.name, "documents": len(emb.doc_ids), "token_vectors": n_tokens, "dim": dim,
        "queries": len(emb.query_ids), "model": model_name, "iterations": iterations,
        "load_average_at_start": os.getloadavg()[0],
        "float16": {"bytes_per_token": 2 * dim, "ndcg@10": exact_quality["ndcg@10"],
                    "search_seconds_all_queries": reference_seconds},
        "codecs": [],
    }
    for n_centroids in centroid_counts:
        k = suggested_centroids(n_tokens) if n_centroids is None else n_centroids
        for bits in bits_list:
            codec, train_s = timed(ResidualCodec.train, vectors, bits=bits, n_centroids=k,
                                   iterations=iterations)
            (codes, residuals), encode_s = timed(codec.encode, vectors)
            decoded, decode_s = timed(codec.decode, codes, residuals, dtype=np.float32)
            _, decode16_s = timed(codec.decode, codes, residuals, dtype=np.float16)
            cosine = np.einsum("ij,ij->i", decoded, widened)
            runs = ranked(decoded, lengths, emb.doc_ids, emb.queries, emb.query_ids)
            codebook_bytes = codec.centroids.nbytes + codec.cutoffs.nbytes + codec.weights.nbytes
            row = {
                "bits": bits, "centroids": k, "suggested": n_centroids is None,
                "bytes_per_token_codes": codec.bytes_per_vector,
                "bytes_per_token_with_codebook": codec.bytes_per_vector + codebook_bytes / n_tokens,
                "mean_cosine_to_float16": float(cosine.mean()),
                "p01_cosine_to_float16": float(np.percentile(cosine, 1)),
                "agreement@10": agreement_at(runs, reference, 10),
                "agreement@100": agreement_at(runs, reference, 100),
                "ndcg@10": quality(runs, qrels)["ndcg@10"],
                # Rescoring the decoded top n with the float16 vectors recovers exactly the part
                # of the exact top 10 that the decoded top n holds.
                **{f"exact_top10_in_decoded_top{n}": contained(runs, reference, n)
                   for n in (20, 50, 100)},
                "train_seconds": train_s,
                "encode_vectors_per_second": n_tokens / encode_s,
                "decode_vectors_per_second_float32": n_tokens / decode_s,
                "decode_vectors_per_second_float16": n_tokens / decode16_s,
            }
            report["codecs"].append(row)
            print(json.dumps(row), flush=True)
            if first_stage is not None and (bits, n_centroids) == first_stage:
                report["first_stage"] = inverted_file_study(
                    codec, codes, decoded, lengths, emb, reference, qrels, probes)
    report["load_average_at_end"] = os.getloadavg()[0]
    print(markdown(report))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def inverted_file_study(codec: ResidualCodec, codes: np.ndarray, decoded: np.ndarray,
                        lengths: np.ndarray, emb, reference: dict[str, list[str]],
                        qrels: dict, probes: tuple[int, ...]) -> dict:
    """A PLAID-style first stage over the codec's centroids: each centroid lists the documents
    with a token assigned to it; a query takes the ``nprobe`` nearest centroids of each of its
    tokens, and the union of their lists is rescored by exact MaxSim over decoded vectors."""
    n_docs, k = len(lengths), codec.n_centroids
    doc_of_token = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    pairs = np.unique(codes.astype(np.int64) * n_docs + doc_of_token)  # by centroid, then doc
    docs = (pairs % n_docs).astype(np.int32)
    offsets = np.searchsorted(pairs // n_docs, np.arange(k + 1)).astype(np.int64)
    ivf_bytes = docs.nbytes + offsets.nbytes
    centroids = codec.centroids.astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    results = {p: {"runs": {}, "candidates": [], "tokens": [], "seconds": []} for p in probes}
    for qid, query in zip(emb.query_ids, emb.queries, strict=True):
        scores = maxsim_packed(query, decoded, lengths)
        order = np.argsort(-(query @ centroids.T), axis=1)
        for p in probes:
            started = time.perf_counter()
            probed = np.unique(order[:, :p])
            candidates = np.unique(np.concatenate(
                [docs[offsets[c]:offsets[c + 1]] for c in probed.tolist()]))
            results[p]["seconds"].append(time.perf_counter() - started)
            top = candidates[np.argsort(-scores[candidates], kind="stable")[:100]]
            results[p]["runs"][qid] = [emb.doc_ids[i] for i in top]
            results[p]["candidates"].append(len(candidates))
            results[p]["tokens"].append(int(lengths[candidates].sum()))
    rows = []
    for p, r in results.items():
        rows.append({
            "nprobe": p, "mean_candidate_documents": float(np.mean(r["candidates"])),
            "mean_candidate_tokens": float(np.mean(r["tokens"])),
            "candidate_seconds_p50": float(np.median(r["seconds"])),
            "agreement@10": agreement_at(r["runs"], reference, 10),
            "ndcg@10": quality(r["runs"], qrels)["ndcg@10"],
        })
        print(json.dumps(rows[-1]), flush=True)
    return {"bits": codec.bits, "centroids": k, "doc_centroid_pairs": len(docs),
            "ivf_bytes_per_token": ivf_bytes / len(codes), "probes": rows}


def markdown(report: dict) -> str:
    lines = [
        "| codec | centroids | bytes/token (codes + codebook) | mean cosine to float16 | "
        "agreement with exact top 10 | top 100 | nDCG@10 | train s | encode vec/s | decode vec/s "
        "(float32) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| float16 | - | {report['float16']['bytes_per_token']} | 1 | 1 | 1 | "
        f"{report['float16']['ndcg@10']:.3f} | - | - | - |",
    ]
    for r in report["codecs"]:
        codebook = r["bytes_per_token_with_codebook"] - r["bytes_per_token_codes"]
        size = f"{r['centroids']:,}" + (" (suggested)" if r["suggested"] else "")
        lines.append(
            f"| residual {r['bits']}-bit | {size} | {r['bytes_per_token_codes']} + {codebook:.1f}"
            f" | {r['mean_cosine_to_float16']:.4f} | {r['agreement@10']:.3f}"
            f" | {r['agreement@100']:.3f} | {r['ndcg@10']:.3f} | {r['train_seconds']:.1f}"
            f" | {r['encode_vectors_per_second']:,.0f}"
            f" | {r['decode_vectors_per_second_float32']:,.0f} |"
        )
    return "\n".join(lines)


@pytest.mark.shared_data
def test_codec_benchmark():
    data = ROOT.parent / "shared" / "data" / "scifact"
    if not data.exists():
        pytest.skip("needs ../shared/data/scifact")
    report = run(data, model_name="offline-minilm", limit_docs=1500, bits_list=[2, 4],
                 centroid_counts=[None], iterations=4, out=None)
    for row in report["codecs"]:  # bars a little under docs/compression.md's figures
        assert row["agreement@10"] >= {2: 0.8, 4: 0.9}[row["bits"]]
        assert row["exact_top10_in_decoded_top50"] >= 0.99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", default="offline-minilm")
    parser.add_argument("--limit-docs", type=int)
    parser.add_argument("--bits", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--centroids", nargs="+", default=["1024", "4096", "suggested"],
                        help="codebook sizes; 'suggested' is PLAID's rule for the collection")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--first-stage", nargs=2, metavar=("BITS", "CENTROIDS"),
                        default=["4", "suggested"],
                        help="the configuration whose centroids are studied as an inverted file")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "codec.json")
    args = parser.parse_args()
    counts = [None if c == "suggested" else int(c) for c in args.centroids]
    bits, size = args.first_stage
    run(args.data, model_name=args.model, limit_docs=args.limit_docs, bits_list=args.bits,
        centroid_counts=counts, iterations=args.iterations, out=args.out,
        first_stage=(int(bits), None if size == "suggested" else int(size)))


if __name__ == "__main__":
    main()
