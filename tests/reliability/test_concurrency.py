"""Many readers while one writes; second writers wait or get IndexLockedError, never corrupt.

Builds on tests/core/index/test_concurrency.py (threads searching during adds and deletes) with
time-boxed runs that mix every kind of write, check each hit is a whole document, and add
writers in other threads and other processes.
"""

from __future__ import annotations

import collections
import random
import threading
import time

import numpy as np
import pytest

from colbridge import EmbeddedIndex, GraphParams

from .conftest import (
    WRITER,
    HashEncoder,
    check_clean,
    doc_metadata,
    doc_text,
    parse_output,
    stored_state,
    word_vectors,
    writer_command,
)

ANCHORS = [f"anchor-{i}" for i in range(150)]  # never touched by the writer


def _new_index(path, **kwargs):
    return EmbeddedIndex(path, model=HashEncoder(), graph=GraphParams(M=8, ef_construction=32),
                         **kwargs)


def _add(index, versions):
    index.add([doc_text(i, v) for i, v in versions.items()], ids=list(versions),
              metadatas=[doc_metadata(i, v) for i, v in versions.items()])


def _readers_and_one_writer(tmp_path, seconds, capsys):
    index = _new_index(tmp_path / "index", compact_threshold=0.3, checkpoint_rows=3000)
    _add(index, dict.fromkeys(ANCHORS, 0))
    versions: dict[str, int] = dict.fromkeys(ANCHORS, 0)
    ever: dict[str, set[int]] = {i: {0} for i in ANCHORS}
    ops: collections.Counter = collections.Counter()
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                anchor = rng.choice(ANCHORS)
                what = rng.randrange(4)
                if what == 0:  # a text query finds its own document first, through the graph
                    hits = index.search(doc_text(anchor, 0), k=5, exact_threshold=0,
                                        token_k=256, ef=512)
                    assert hits[0].id == anchor
                elif what == 1:  # filtered exact search over the encoded query
                    query = word_vectors(doc_text(anchor, 0))[:16]
                    hits = index.search_encoded(query, k=3, filter={"even": True})
                    assert hits and all(h.metadata["even"] for h in hits)
                elif what == 2:
                    (doc,) = index.get([anchor])
                    assert doc.text == doc_text(anchor, 0)
                    hits = []
                else:
                    assert index.count() >= len(ANCHORS)
                    hits = []
                for hit in hits:  # every hit is a whole document of a version ever written
                    version = hit.metadata["v"]
                    assert version in ever[hit.id]
                    assert hit.text == doc_text(hit.id, version)
                ops["reads"] += 1
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    def writer() -> None:
        rng = random.Random(1)
        seq = 0
        try:
            while not stop.is_set():
                seq += 1
                mutable = [i for i in versions if not i.startswith("anchor-")]
                kind = rng.choice(["add", "add", "upsert", "delete", "compact"] if mutable
                                  else ["add"])
                if kind == "add":
                    batch = {f"w{seq}-{j}": 0 for j in range(rng.randint(1, 40))}
                elif kind == "upsert":
                    batch = {i: versions[i] + 1 for i in rng.sample(mutable, min(20, len(mutable)))}
                if kind in ("add", "upsert"):
                    for i, v in batch.items():
                        ever.setdefault(i, set()).add(v)  # before the write: readers may see it
                    _add(index, batch)
                    versions.update(batch)
                elif kind == "delete":
                    gone = rng.sample(mutable, min(15, len(mutable)))
                    assert index.delete(gone) == len(gone)
                    for i in gone:
                        del versions[i]
                else:
                    index.compact()
                ops[f"writes ({kind})"] += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, repr(errors[0])
    assert ops["reads"] > 20 and sum(v for k, v in ops.items() if k.startswith("writes")) > 3
    found = {d.id: d.metadata["v"] for d in index.get(sorted(versions))}
    assert found == versions  # every committed document, at its last version
    assert index.count() == len(versions)
    index.close()
    assert check_clean(tmp_path / "index") == []
    assert stored_state(tmp_path / "index") == versions
    with capsys.disabled():
        print(f"\nconcurrency: 4 readers + 1 writer for {seconds} s: " +
              ", ".join(f"{k} {v}" for k, v in sorted(ops.items())) + ", exceptions 0")


def test_readers_while_one_thread_writes(tmp_path, capsys):
    _readers_and_one_writer(tmp_path, 3, capsys)


@pytest.mark.slow
def test_readers_while_one_thread_writes_long(tmp_path, capsys):
    _readers_and_one_writer(tmp_path, 30, capsys)


def test_writers_in_two_threads_wait_for_each_other(tmp_path):
    """Two index objects on one folder in one process: the file lock serialises them."""
    path = tmp_path / "index"
    first = _new_index(path, lock_timeout=30)
    second = EmbeddedIndex(path, model=HashEncoder(), lock_timeout=30)
    errors: list[BaseException] = []
    written = {"a": [], "b": []}

    def write(index, prefix):
        try:
            for n in range(8):
                batch = {f"{prefix}{n}-{j}": 0 for j in range(25)}
                _add(index, batch)
                written[prefix] += list(batch)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write, args=(first, "a")),
               threading.Thread(target=write, args=(second, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, repr(errors[0])
    for index in (first, second):
        index.refresh()
        assert index.count() == 400
        assert len(index.get(written["a"] + written["b"])) == 400
        index.close()
    assert check_clean(path) == []


def test_writer_processes_wait_or_get_the_lock_error(tmp_path):
    """Two writer processes on one folder (one waits for the lock, one gives up at once) while
    this process reads; without refresh() it then sees every document they committed."""
    import subprocess

    path = tmp_path / "index"
    reader = _new_index(path)
    _add(reader, dict.fromkeys(ANCHORS[:20], 0))
    procs = {
        prefix: subprocess.Popen(
            writer_command(path, seed, "--adds-only", "--ops", "15", "--batch", "30",
                           "--prefix", prefix, "--lock-timeout", timeout),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for prefix, seed, timeout in (("patient", 1, "30"), ("hasty", 2, "0.001"))
    }
    searches = 0
    while any(p.poll() is None for p in procs.values()):
        query = word_vectors(doc_text(ANCHORS[searches % 20], 0))[:16]
        assert reader.search_encoded(query, k=1)[0].id == ANCHORS[searches % 20]
        searches += 1
    runs = {}
    for prefix, proc in procs.items():
        out, err = proc.communicate()
        runs[prefix] = parse_output(out.splitlines(), proc.returncode, err)
        assert proc.returncode == 0, err[-2000:]
        assert "Traceback" not in err
    assert runs["patient"].lock_errors == 0 and len(runs["patient"].committed) == 15
    assert len(runs["hasty"].committed) + runs["hasty"].lock_errors == 15
    committed = [i for run in runs.values() for op in run.committed_ops for i in op["docs"]]
    assert len(reader.get(committed)) == len(committed)
    assert reader.count() == 20 + len(committed)
    query = np.asarray(word_vectors(doc_text(committed[-1], 0))[:16])
    assert reader.search_encoded(query, k=1)[0].id == committed[-1]
    reader.close()
    assert check_clean(path) == []


_DELETE_AND_COMPACT = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("writer", sys.argv[1])
writer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(writer)
from colbridge import EmbeddedIndex
with EmbeddedIndex(sys.argv[2], model=writer.HashEncoder(), create=False) as index:
    index.delete(sys.argv[3:])
    index.compact()
"""


def test_every_read_sees_what_another_process_committed(tmp_path):
    """The rule of docs/concepts.md: count, get, search and stats answer from the newest
    committed state, also after another process added, deleted and compacted; no refresh()."""
    import subprocess
    import sys

    path = tmp_path / "index"
    reader = _new_index(path)
    _add(reader, dict.fromkeys(ANCHORS[:20], 0))
    assert reader.count() == 20
    added = subprocess.run(
        writer_command(path, 7, "--adds-only", "--ops", "1", "--batch", "1", "--prefix", "other"),
        capture_output=True, text=True, timeout=120)
    run = parse_output(added.stdout.splitlines(), added.returncode, added.stderr)
    assert added.returncode == 0 and len(run.committed) == 1, added.stderr[-2000:]
    (new_id,) = run.committed_ops[0]["docs"]
    query = np.asarray(word_vectors(doc_text(new_id, 0))[:16])
    assert reader.count() == 21
    assert reader.search_encoded(query, k=1)[0].id == new_id
    assert reader.search(doc_text(new_id, 0), k=1, mode="bm25")[0].id == new_id
    assert reader.stats()["documents"] == 21
    assert reader.get([new_id])[0].text == doc_text(new_id, 0)

    gone = [new_id, ANCHORS[0], ANCHORS[1]]
    deleted = subprocess.run([sys.executable, "-c", _DELETE_AND_COMPACT, str(WRITER), str(path),
                              *gone], capture_output=True, text=True, timeout=120)
    assert deleted.returncode == 0, deleted.stderr[-2000:]
    assert reader.count() == 18
    assert not {h.id for h in reader.search_encoded(query, k=18)} & set(gone)
    anchor = np.asarray(word_vectors(doc_text(ANCHORS[5], 0))[:16])
    assert reader.search_encoded(anchor, k=1)[0].id == ANCHORS[5]  # after the compaction too
    assert reader.stats()["dead_token_vectors"] == 0
    assert reader.get(gone, missing_ok=True) == []
    assert reader.refresh() is False  # the reads brought it up to date already
    reader.close()
    assert check_clean(path) == []
