"""What verifying checksums costs on open, on a SciFact-size folder (docs/reliability.md).

    uv run python tests/benchmarks/checksum_cost.py ../shared/data/scifact /tmp/scifact-size

Builds (once) an index of the collection's texts with random unit token vectors of width 96,
about as many per text as offline MiniLM gives SciFact (1.2 M in all), then times hashing each
file, Voyager's load, opens with and without verification, `colbridge check`, and the first
open of a copy without checksum records (a folder from an older colbridge).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from colbridge import EmbeddedIndex
from colbridge._files import file_digest
from colbridge.check import check_index
from colbridge.index import graph as graph_module
from colbridge.index import means as means_module
from colbridge.index.manifest import Manifest
from colbridge.models import ColBERTModel


class RandomVectors(ColBERTModel):
    """Names a 96-d model without weights: the vectors come with the texts."""

    def __init__(self, name: str = "random-96") -> None:
        super().__init__(name, name=name)

    @property
    def dimension(self) -> int:
        return 96

    @property
    def query_length(self) -> int:
        return 32

    @property
    def document_length(self) -> int:
        return 300

    def load(self):  # type: ignore[no-untyped-def]
        raise AssertionError("no weights: vectors are added with add_encoded")


def build(corpus: Path, folder: Path) -> None:
    docs = [json.loads(line) for line in (corpus / "corpus.jsonl").open()]
    rng = np.random.default_rng(0)
    with EmbeddedIndex(folder, model=RandomVectors(), checkpoint_rows=10**9) as index:
        for begin in range(0, len(docs), 500):
            part = docs[begin:begin + 500]
            texts = [(d.get("title", "") + " " + d["text"]).strip() for d in part]
            vectors = [rng.standard_normal((min(300, int(len(t.split()) * 1.2) + 2), 96))
                       for t in texts]
            index.add_encoded(vectors, texts, ids=[d["_id"] for d in part])


def median_time(action, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(corpus: Path, folder: Path) -> None:
    import voyager

    if not folder.exists():
        build(corpus, folder)
    model_name = Manifest.read(folder).model.name
    graph, means = next(folder.glob("graph-*.voy")), next(folder.glob("means-*.npz"))
    vectors = next(folder.glob("vectors-*.f16"))
    for path in (graph, means, vectors):
        print(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB, SHA-256 in "
              f"{median_time(lambda p=path: file_digest(p), 3):.3f} s")
    print(f"Voyager load: {median_time(lambda: voyager.Index.load(str(graph)), 3):.3f} s")

    def open_close() -> None:
        EmbeddedIndex(folder, model=RandomVectors(model_name), create=False).close()

    open_close()  # the first close may save a lexical segment or means
    print(f"open + close, verifying: {median_time(open_close):.3f} s")
    recorded = {p.name: file_digest(p) for p in (graph, means)}
    real = graph_module.file_digest, means_module.file_digest
    graph_module.file_digest = means_module.file_digest = lambda p: recorded[p.name]
    try:
        print(f"open + close, checksums taken as given: {median_time(open_close):.3f} s")
    finally:
        graph_module.file_digest, means_module.file_digest = real
    start = time.perf_counter()
    report = check_index(folder)
    print(f"check: {time.perf_counter() - start:.1f} s, ok={report.ok}, notes={report.notes}")

    legacy = folder.with_name(folder.name + "-legacy")
    shutil.rmtree(legacy, ignore_errors=True)
    shutil.copytree(folder, legacy)
    conn = sqlite3.connect(legacy / "documents.sqlite")
    conn.execute("DROP TABLE checksums")
    conn.commit()
    conn.close()
    start = time.perf_counter()
    index = EmbeddedIndex(legacy, model=RandomVectors(model_name), create=False)
    print(f"first open without checksum records (graph rebuilt): "
          f"{time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    index.close()
    print(f"its close (graph and means saved with checksums): {time.perf_counter() - start:.1f} s")
    shutil.rmtree(legacy)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
