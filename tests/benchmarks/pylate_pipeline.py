"""One of PyLate's indexes + ``retrieve.ColBERT``, defaults, on cached embeddings.

``--index voyager`` (the default) is PyLate's Voyager pipeline; ``plaid`` is ``indexes.PLAID``
(fast-plaid, on the CPU, 4-bit residuals) and ``warp`` is ``indexes.WARP`` (xtr-warp-rs, which
must be installed in the environment). PyLate 1.6's Voyager index passes Python lists to
``add_items``, which voyager >= 2.2 rejects, so this runs in an isolated environment with voyager
2.1.0 (``bench_scifact.py`` starts it)::

    uv run --isolated --no-project --with pylate==1.6.0 --with voyager==2.1.0 \\
        [--with xtr-warp-rs==2.1.0.2110] \\
        python tests/benchmarks/pylate_pipeline.py EMBEDDINGS_DIR WORK_DIR OUT.json [--index NAME]

Writes build seconds, per-query retrieval seconds (query encoding excluded: the queries are
already encoded), the index folder's size and the top-100 ids per query.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def open_index(name: str, work: Path, dimension: int):
    from pylate import indexes

    if name == "voyager":
        return indexes.Voyager(index_folder=str(work), index_name="bench", override=True,
                               embedding_size=dimension)
    if name == "plaid":
        return indexes.PLAID(index_folder=str(work), index_name="bench", override=True,
                             device="cpu", show_progress=False)
    if name == "warp":
        return indexes.WARP(index_folder=str(work), index_name="bench", override=True,
                            device="cpu", show_progress=False)
    raise SystemExit(f"unknown index {name!r}: voyager, plaid or warp")


def main(cache: Path, work: Path, out: Path, name: str) -> None:
    from pylate import retrieve

    ids = json.loads((cache / "doc_ids.json").read_text())
    lengths = np.load(cache / "doc_lengths.npy", allow_pickle=False)
    vectors = np.load(cache / "doc_vectors.npy", allow_pickle=False)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    documents = [vectors[s:s + n].astype(np.float32) for s, n in zip(starts, lengths)]
    queries = np.load(cache / "query_vectors.npy", allow_pickle=False)
    query_ids = json.loads((cache / "query_ids.json").read_text())
    limit = int(os.environ.get("PYLATE_QUERY_LIMIT", len(queries)))

    index = open_index(name, work, vectors.shape[1])
    started = time.perf_counter()
    index.add_documents(documents_ids=ids, documents_embeddings=documents)
    build_seconds = time.perf_counter() - started

    retriever = retrieve.ColBERT(index=index)
    runs, latencies = {}, []
    for qid, query in list(zip(query_ids, queries))[:limit]:
        started = time.perf_counter()
        result = retriever.retrieve(queries_embeddings=[query], k=100, device="cpu")
        latencies.append(time.perf_counter() - started)
        runs[qid] = [r["id"] for r in result[0]]
    out.write_text(json.dumps({
        "build_seconds": build_seconds,
        "query_seconds": latencies,
        "index": name,
        "index_bytes": folder_bytes(work),
        "token_vectors": int(lengths.sum()),
        "runs": runs,
    }))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("embeddings", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--index", default="voyager", choices=["voyager", "plaid", "warp"])
    args = parser.parse_args()
    main(args.embeddings, args.work, args.out, args.index)
