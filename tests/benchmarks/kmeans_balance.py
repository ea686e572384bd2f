"""How well k-means graph items stand for their document's tokens, by number of rounds.

    uv run python tests/benchmarks/kmeans_balance.py CACHE [--rounds 0 1 2 3] [--out FILE]

CACHE is what ``embeddings.py`` writes (``bench_scifact.py`` leaves one under
``.colbridge-cache/embeddings``). For each number of rounds (0: the runs of 8 tokens that
seed k-means) the items are built as the index builds them (``graph.kmeans_clusters``, pool 8)
and, for every token, its best cosine to an item of its own document is taken (how well the
items fit their tokens) and the item it is nearest to (how evenly tokens spread over items).
docs/benchmarks.md ("One round is enough") quotes the results.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from colbridge.index.graph import kmeans_clusters

POOL = 8


def profile(vectors: np.ndarray, lengths: np.ndarray, rounds: int) -> dict:
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    ids, items = kmeans_clusters(vectors, starts, lengths, POOL, rounds)
    order = np.argsort(ids, kind="stable")  # items come grouped by document length
    ids, items = ids[order], items[order]
    doc_of_item = np.searchsorted(starts, ids, side="right") - 1
    bounds = np.searchsorted(doc_of_item, np.arange(len(lengths) + 1))
    best, sizes = [], []
    for doc, (start, count) in enumerate(zip(starts, lengths, strict=True)):
        similarity = np.asarray(vectors[start:start + count], np.float32) @ items[
            bounds[doc]:bounds[doc + 1]].T
        best.append(similarity.max(axis=1))
        sizes.append(np.bincount(similarity.argmax(axis=1), minlength=similarity.shape[1]))
    best, sizes = np.concatenate(best), np.concatenate(sizes)
    large = sizes > 2 * POOL
    return {"rounds": rounds, "items": len(ids),
            "best_cosine_mean": float(best.mean()),
            "best_cosine_p10": float(np.percentile(best, 10)),
            "share_of_items_nearest_to_over_16_tokens": float(large.mean()),
            "share_of_tokens_in_those_items": float(sizes[large].sum() / sizes.sum()),
            "largest_item_tokens": int(sizes.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--rounds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lengths = np.load(args.cache / "doc_lengths.npy", allow_pickle=False).astype(np.int64)
    vectors = np.load(args.cache / "doc_vectors.npy", allow_pickle=False, mmap_mode="r")
    results = []
    for rounds in args.rounds:
        results.append(profile(vectors, lengths, rounds))
        print(json.dumps(results[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
