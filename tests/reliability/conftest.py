"""Helpers for the reliability tests: the writer process, the hash encoder, state verification.

The writer (``_writer.py``) runs as a separate Python process that never imports torch or
pylate, so killing and restarting it is cheap. Its output tells the test which operations were
committed before the kill; :func:`verify` then checks the promise of ``docs/reliability.md``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

WRITER = Path(__file__).with_name("_writer.py")
_spec = importlib.util.spec_from_file_location("colbridge_reliability_writer", WRITER)
writer = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(writer)  # type: ignore[union-attr]

HashEncoder = writer.HashEncoder
doc_text = writer.doc_text
doc_metadata = writer.doc_metadata
word_vectors = writer.word_vectors
CRASH_POINTS = writer.CRASH_POINTS


@dataclass
class WriterRun:
    """What a writer process printed before it ended (or was killed)."""

    returncode: int
    ready: bool = False
    begun: list[dict] = field(default_factory=list)
    committed: set[int] = field(default_factory=set)
    lock_errors: int = 0
    stderr: str = ""

    @property
    def committed_ops(self) -> list[dict]:
        return [op for op in self.begun if op["seq"] in self.committed]

    @property
    def in_flight(self) -> dict | None:
        """The operation that had begun but not returned when the process died, if any."""
        last = self.begun[-1] if self.begun else None
        return last if last is not None and last["seq"] not in self.committed else None


def writer_command(path: Path, seed: int, *args: str) -> list[str]:
    return [sys.executable, str(WRITER), str(path), str(seed), *args]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"
    return env


def parse_output(lines: list[str], returncode: int, stderr: str = "") -> WriterRun:
    run = WriterRun(returncode=returncode, stderr=stderr)
    for line in lines:
        kind, _, rest = line.strip().partition(" ")
        if kind == "READY":
            run.ready = True
        elif kind == "B":
            run.begun.append(json.loads(rest))
        elif kind == "C":
            run.committed.add(int(rest))
        elif kind == "L":
            run.lock_errors += 1
    return run


def run_writer(path: Path, seed: int, *args: str, kill_after: float | None = None,
               timeout: float = 120.0) -> WriterRun:
    """Run the writer; with ``kill_after``, SIGKILL it that many seconds after it is READY."""
    proc = subprocess.Popen(writer_command(path, seed, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_child_env())
    lines: list[str] = []
    ready = threading.Event()
    err: list[str] = []

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("READY"):
                ready.set()

    def read_stderr() -> None:
        assert proc.stderr is not None
        err.append(proc.stderr.read())

    readers = [threading.Thread(target=read_stdout), threading.Thread(target=read_stderr)]
    for thread in readers:
        thread.start()
    try:
        if kill_after is not None:
            ready.wait(timeout)
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the writer did not end within {timeout} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for thread in readers:
            thread.join()
    return parse_output(lines, proc.returncode, "".join(err))


def apply(state: dict[str, int], op: dict | None) -> dict[str, int]:
    """The documents (id -> version) after ``op``."""
    state = dict(state)
    if op is None:
        return state
    if "docs" in op:
        state.update(op["docs"])
    for doc_id in op.get("ids", ()):
        state.pop(doc_id, None)
    return state


def stored_state(path: Path, document_length: int = 4096) -> dict[str, int]:
    """Open the index and check every stored document is whole: its text, metadata and token
    vectors all belong to one version of it, and a document split into passages (by a hash
    encoder of ``document_length``) has all of that version's passages. Returns id -> version.

    The vectors are read from the vector file directly (the public API has no vector getter),
    and every one of them must be an item of the graph the index opened with (it is rebuilt
    from the vectors where its checkpoint is behind). A sample of documents is also found by
    search, exhaustively and through the graph (with a wide candidate budget: the graph stage
    is approximate, and this checks reachability, not recall).
    """
    from colbridge import EmbeddedIndex
    from colbridge.passages import encode_documents

    encoder = HashEncoder(document_length)
    with EmbeddedIndex(path, model=encoder, create=False) as index:
        rows = list(index._store.iter_documents())
        layouts = index._passages([row[0] for row in rows])
        matrix = index._snap.vectors
        # Graph item ids are vector rows: every row with pool 1, one row per run or merged
        # cluster of a document's tokens otherwise.
        pool = index.manifest.graph.pool
        every_row = pool == 1
        in_graph = np.zeros(len(matrix), dtype=bool)
        in_graph[np.fromiter(index._graph._index.ids, dtype=np.int64)] = True
        # float16 rounds each value; int8 codes also clip values outside their trained range,
        # which the hash encoder's random word vectors often are: there each row must point
        # where this version's does (another version's rows are other words' random vectors)
        coded = getattr(index._vectors, "params", None) is not None
        state = {}
        for doc_id, text, metadata, start, count in rows:
            version = metadata["v"]
            assert text == doc_text(doc_id, version), f"{doc_id}: text of another version"
            assert metadata == doc_metadata(doc_id, version), f"{doc_id}: metadata mismatch"
            encoded = encode_documents(encoder, [text], long_documents=index.long_documents)
            expected = encoded.embeddings[0]
            assert layouts.get(doc_id) == encoded.passages[0], \
                f"{doc_id}: passages of another version"
            got = np.asarray(matrix[start:start + count], dtype=np.float32)
            assert got.shape == expected.shape, f"{doc_id}: {got.shape} vectors, {expected.shape}"
            if coded:
                cosines = (got * expected).sum(1) / np.linalg.norm(got, axis=1)
                assert cosines.min() > 0.95, f"{doc_id}: vectors of another version"
            else:
                assert np.abs(got - expected).max() < 2e-3, f"{doc_id}: vectors of another version"
            covered = in_graph[start:start + count]
            assert covered.all() if every_row else covered.sum() >= -(-count // pool), \
                f"{doc_id}: vectors missing from the graph"
            state[doc_id] = version
        assert index.count() == len(state)
        sample = sorted(state)[:: max(1, len(state) // 12)]
        for doc_id in sample:
            query = word_vectors(doc_text(doc_id, state[doc_id]))[:16]
            for options in ({"exact_threshold": 0, "token_k": 256, "ef": 512},
                            {"exact_threshold": 10**6}):
                hits = index.search_encoded(query, k=1, **options)
                assert hits and hits[0].id == doc_id, f"{doc_id} is not found by search"
    return state


def check_clean(path: Path) -> list[str]:
    """Problems reported by ``colbridge check`` (none expected)."""
    from colbridge.check import check_index

    return check_index(path).problems


SAMPLE_IDS = [f"doc-{i}" for i in range(300)]


def build_sample_index(path: Path, codec: str | None = None) -> Path:
    """300 hash-encoded documents at ``path``: 10 deleted and compacted away (generation 1),
    then 10 more deleted, so the folder holds dead rows as a living index does. ``codec`` as
    for ``EmbeddedIndex`` (the default, int8, when None)."""
    from colbridge import EmbeddedIndex, GraphParams

    ids = SAMPLE_IDS
    with EmbeddedIndex(path, model=HashEncoder(), graph=GraphParams(M=8, ef_construction=32),
                       codec=codec) as ix:
        ix.add([doc_text(i, 0) for i in ids], ids=ids, metadatas=[doc_metadata(i, 0) for i in ids])
        ix.delete(ids[:10])
        ix.compact()
        ix.delete(ids[10:20])
    return path


@pytest.fixture
def hash_index(tmp_path):
    """An empty index folder created with the hash encoder."""
    from colbridge import EmbeddedIndex

    path = tmp_path / "index"
    EmbeddedIndex.open_or_create(path, model=HashEncoder()).close()
    return path
