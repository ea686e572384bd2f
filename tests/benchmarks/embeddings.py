"""Precomputed embeddings of a BEIR collection, cached as plain NumPy files (no pickle).

Layout of ``<cache>/<dataset>-<model>/``::

    doc_ids.json        list of document ids, in order
    doc_texts.json      their texts (title + text)
    doc_lengths.npy     int32 (n_docs,): token vectors per document
    doc_vectors.npy     float16 (sum(doc_lengths), dim): all document token vectors
    query_ids.json      list of query ids
    query_vectors.npy   float32 (n_queries, query_length, dim)
    meta.json           model name, counts, how long encoding took when the cache was made
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colbridge import ColBERTModel
from colbridge.evaluation import BeirData


@dataclass
class Embeddings:
    folder: Path
    doc_ids: list[str]
    doc_texts: list[str]
    lengths: np.ndarray
    vectors: np.ndarray
    query_ids: list[str]
    queries: np.ndarray

    def documents(self) -> list[np.ndarray]:
        starts = np.concatenate(([0], np.cumsum(self.lengths)[:-1]))
        return [self.vectors[s:s + n] for s, n in zip(starts, self.lengths)]


def load_or_encode(data: BeirData, model: ColBERTModel, cache: Path) -> Embeddings:
    folder = cache / f"{data.name}-{model.name.replace('/', '_')}-{len(data.doc_ids)}"
    if not (folder / "meta.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        docs = model.encode_documents(data.doc_texts, show_progress=True)
        seconds = time.perf_counter() - started
        queries = np.stack(model.encode_queries(list(data.queries.values())))
        np.save(folder / "doc_vectors.npy", np.concatenate(docs).astype(np.float16))
        np.save(folder / "doc_lengths.npy", np.array([len(d) for d in docs], dtype=np.int32))
        np.save(folder / "query_vectors.npy", queries.astype(np.float32))
        (folder / "doc_ids.json").write_text(json.dumps(data.doc_ids))
        (folder / "doc_texts.json").write_text(json.dumps(data.doc_texts))
        (folder / "query_ids.json").write_text(json.dumps(list(data.queries)))
        (folder / "meta.json").write_text(json.dumps({
            "model": model.name, "documents": len(docs), "queries": len(queries),
            "token_vectors": int(sum(len(d) for d in docs)), "encode_seconds_when_cached": seconds,
        }, indent=2))
    return Embeddings(
        folder=folder,
        doc_ids=json.loads((folder / "doc_ids.json").read_text()),
        doc_texts=json.loads((folder / "doc_texts.json").read_text()),
        lengths=np.load(folder / "doc_lengths.npy", allow_pickle=False),
        vectors=np.load(folder / "doc_vectors.npy", allow_pickle=False, mmap_mode="r"),
        query_ids=json.loads((folder / "query_ids.json").read_text()),
        queries=np.load(folder / "query_vectors.npy", allow_pickle=False),
    )
