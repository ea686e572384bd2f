"""How precise must stored token vectors be to keep the exact top 10? (issue #15)

    uv run python tests/benchmarks/bench_codec_study.py ../shared/data/scifact --limit-docs 1500

Every variant replaces all of the collection's token vectors by a lossy copy and scores every
query (every third of SciFact's 300 test queries) by exact MaxSim over the copy; the reference
is exact MaxSim over the float16 vectors. Variants: isotropic Gaussian noise (to calibrate
agreement against mean cosine), the 4-bit residual codec, a PCA rotation of the residuals with
bits allocated per rotated dimension (greedy on measured distortion), the residual codec plus
the nested refinement codec (2 or 4 more bits), and 8 bits per dimension (min-max scalar).
Also the relative score gap between ranks 10 and 11 of the exact ranking. Writes
docs/benchmarks/codec_study.json. Embeddings as in bench_scale.py (cached under --cache).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[2]


def bucketize(values: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """Bucket of each value, column by column: how many of the column's cutoffs it exceeds."""
    return np.stack([np.searchsorted(cutoffs[d], values[:, d], side="left")
                     for d in range(values.shape[1])], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--limit-docs", type=int, default=1500)
    parser.add_argument("--centroids", type=int, default=1024)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/colbridge/bench")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "docs" / "benchmarks" / "codec_study.json")
    args = parser.parse_args()

    from colbridge import ColBERTModel
    from colbridge.evaluation import load_beir
    from prototypes.codecs import ResidualCodec
    from prototypes.codecs.refine import RefinementCodec
    from prototypes.codecs.residual import _buckets
    from colbridge.scoring import maxsim_packed
    from embeddings import load_or_encode

    data = load_beir(args.data, "test", limit_docs=args.limit_docs)
    emb = load_or_encode(data, ColBERTModel("offline-minilm", backend="onnx"), args.cache)
    vec16 = np.asarray(emb.vectors)
    exact = vec16.astype(np.float32)
    lengths = emb.lengths.astype(np.int64)
    queries = emb.queries[::3]

    def top10(vectors: np.ndarray) -> list[set[int]]:
        return [set(np.argpartition(-maxsim_packed(q, vectors, lengths), 10)[:10].tolist())
                for q in queries]

    reference = top10(exact)
    rows = []

    def record(name: str, vectors: np.ndarray, bytes_per_token: float | None, **extra) -> None:
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        found = top10(vectors)
        row = {"variant": name, "bytes_per_token": bytes_per_token,
               "mean_cosine": float(np.einsum("ij,ij->i", vectors, exact).mean()),
               "agreement@10": float(np.mean([len(a & b) / 10
                                              for a, b in zip(found, reference, strict=True)])),
               **extra}
        rows.append(row)
        print(json.dumps(row), flush=True)

    rng = np.random.default_rng(0)
    dim = exact.shape[1]
    for sigma in (0.005, 0.01, 0.02):
        record(f"gaussian noise, sigma {sigma} per dimension",
               exact + rng.normal(0, sigma, exact.shape).astype(np.float32), None)

    codec = ResidualCodec.train(vec16, bits=4, n_centroids=args.centroids)
    codes, residuals = codec.encode(vec16)
    record("residual 4-bit", codec.decode(codes, residuals, dtype=np.float32),
           codec.bytes_per_vector)

    # PCA rotation of the residuals, bits per rotated dimension allocated greedily.
    centroids = codec.centroids.astype(np.float32)[codes]
    res = exact - centroids
    sample = res[rng.choice(len(res), min(len(res), 50_000), replace=False)]
    eigenvalues, basis = np.linalg.eigh(sample.T @ sample / len(sample))
    basis = basis[:, ::-1]
    spectrum = eigenvalues[::-1]
    rotated, train = res @ basis, sample @ basis
    distortion = np.zeros((dim, 9))
    distortion[:, 0] = (train ** 2).mean(0)
    for b in range(1, 9):
        cut, w = _buckets(train, b)
        buckets = bucketize(train, cut)
        distortion[:, b] = ((train - w[np.arange(dim)[None], buckets]) ** 2).mean(0)
    for bits_per_dim in (4, 5, 6):
        bits = np.zeros(dim, int)
        for _ in range(dim * bits_per_dim):
            gain = np.where(bits < 8, distortion[np.arange(dim), bits]
                            - distortion[np.arange(dim), np.minimum(bits + 1, 8)], -1)
            bits[gain.argmax()] += 1
        quantised = np.zeros_like(rotated)
        for b in np.unique(bits):
            dims = np.flatnonzero(bits == b)
            cut, w = _buckets(train[:, dims], int(b))
            buckets = bucketize(rotated[:, dims], cut)
            quantised[:, dims] = w[np.arange(len(dims))[None], buckets]
        record(f"PCA-rotated residual, {bits_per_dim} bits per dimension on average",
               quantised @ basis.T + centroids, codec.code_dtype.itemsize + dim * bits_per_dim / 8,
               bits_histogram=np.bincount(bits, minlength=9).tolist())

    for bits in (2, 4):
        started = time.perf_counter()
        refine = RefinementCodec.train(codec, vec16, bits=bits)
        fine = refine.encode(vec16, codes, residuals)
        record(f"residual 4-bit + nested {bits}-bit refinement",
               refine.decode(codes, residuals, fine),
               codec.bytes_per_vector + refine.refinement_bytes,
               train_and_encode_seconds=time.perf_counter() - started)

    low, high = exact.min(0), exact.max(0)
    steps = np.round((exact - low) / (high - low) * 255)
    record("8 bits per dimension (min-max)", steps / 255 * (high - low) + low, dim)

    gaps = []
    for q in queries:
        ordered = np.sort(maxsim_packed(q, exact, lengths))[::-1]
        gaps.append(float((ordered[9] - ordered[10]) / ordered[9]))
    report = {"documents": len(lengths), "token_vectors": len(exact), "queries": len(queries),
              "load_average": os.getloadavg()[0],
              "residual_spectrum_am_over_gm": float(spectrum.mean()
                                                    / np.exp(np.log(spectrum).mean())),
              "gap10_11_median": float(np.median(gaps)),
              "gap10_11_share_below_1e-3": float(np.mean(np.array(gaps) < 1e-3)),
              "variants": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
