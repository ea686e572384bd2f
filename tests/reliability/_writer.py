"""A writer process for the crash and concurrency tests, and the fake encoder they share.

Run as a script (``python _writer.py INDEX SEED [options]``) it opens the index with the hash
encoder (no torch, no pylate: it starts in well under a second), then performs writes forever
(or ``--ops`` of them), printing one line per step, flushed:

    READY                       the index is open
    B <json>                    an operation begins: {"seq", "kind", "docs": {id: version}} or
                                {"seq", "kind", "ids": [...]}
    C <seq>                     that operation returned (it is committed)
    L                           the write lock was busy (IndexLockedError)

``--crash-at POINT`` kills the process with SIGKILL at a chosen point of the write protocol, on
its ``--crash-hit``-th occurrence; without it the test kills the process at a random moment.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import random
import re
import signal
import sys

import numpy as np

from colbridge.models import ColBERTModel

DIM = 32
# A large vocabulary: few exact duplicate vectors across documents, as with a real encoder.
VOCAB = [f"w{i}" for i in range(20_000)]
CRASH_POINTS = (
    "append",  # vectors appended and fsynced, store not yet committed
    "commit",  # store committed, graph and snapshot not yet updated
    "graph-rename",  # graph checkpoint written to its temporary name, not yet renamed
    "stale-removal",  # after a checkpoint or compaction, before superseded files are deleted
    "compact-vectors",  # compaction wrote the new vector file
    "compact-commit-before",  # compaction saved the new graph, store not yet switched
    "compact-commit-after",  # store switched to the new generation, old files still there
)


class HashEncoder(ColBERTModel):
    """A deterministic stand-in encoder: each word is a fixed random unit vector.

    It never loads weights; a document's vectors are fully determined by its text, so a test
    can recompute what the index should hold. Its tokens are whitespace words, so a text of
    more than ``document_length - 3`` words is split into passages (under ``"split"``).
    """

    def __init__(self, document_length: int = 4096) -> None:
        super().__init__("hash-encoder", name=f"hash-encoder-{DIM}")
        self._document_length = document_length

    @property
    def dimension(self) -> int:
        return DIM

    @property
    def query_length(self) -> int:
        return 16

    @property
    def document_length(self) -> int:
        return self._document_length

    @property
    def passage_tokens(self) -> int:
        return self._document_length - 3

    def document_token_offsets(self, documents):  # type: ignore[no-untyped-def]
        return [[m.span() for m in re.finditer(r"\S+", text)] for text in documents]

    def load(self):  # type: ignore[no-untyped-def]
        raise AssertionError("the hash encoder has no weights to load")

    def encode_documents(self, documents, *, pool_factor=1, show_progress=None):  # type: ignore[no-untyped-def]
        return [word_vectors(t) for t in documents]

    def encode_queries(self, queries):  # type: ignore[no-untyped-def]
        return [word_vectors(q) for q in queries]


@functools.lru_cache(maxsize=100_000)
def _word_vector(word: str) -> np.ndarray:
    digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    vector = np.random.default_rng(int.from_bytes(digest, "little")).standard_normal(DIM)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def word_vectors(text: str) -> np.ndarray:
    """The hash encoder's token vectors of ``text``: one unit vector per whitespace word."""
    words = text.split() or [text]
    return np.stack([_word_vector(w) for w in words])


def doc_text(doc_id: str, version: int) -> str:
    """The text of version ``version`` of ``doc_id``; its first word is unique to it."""
    rng = random.Random(f"{doc_id}/{version}")
    return " ".join([f"{doc_id}@v{version}"] + rng.choices(VOCAB, k=rng.randint(4, 40)))


def doc_metadata(doc_id: str, version: int) -> dict:
    return {"id": doc_id, "v": version, "even": version % 2 == 0}


# -- the writer process -------------------------------------------------------------------------
def _emit(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def _arm(point: str, hit: int) -> None:
    """Patch the library so that the ``hit``-th pass through ``point`` kills this process."""
    from colbridge.index import docstore, embedded, vectors, vectors_int8

    passes = 0

    def maybe_die(name: str) -> None:
        nonlocal passes
        if name == point:
            passes += 1
            if passes == hit:
                os.kill(os.getpid(), signal.SIGKILL)

    def after(owner, attr, name):  # type: ignore[no-untyped-def]
        original = getattr(owner, attr)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            result = original(*args, **kwargs)
            maybe_die(name)
            return result

        setattr(owner, attr, wrapper)

    def before(owner, attr, name):  # type: ignore[no-untyped-def]
        original = getattr(owner, attr)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            maybe_die(name)
            return original(*args, **kwargs)

        setattr(owner, attr, wrapper)

    for store in (vectors.Float16Store, vectors_int8.Int8Store):
        after(store, "append", "append")
        after(store, "write_generation", "compact-vectors")
        after(store, "write_rows", "compact-vectors")  # a compaction that retrains int8
    after(docstore.DocStore, "commit_write", "commit")
    before(docstore.DocStore, "commit_compaction", "compact-commit-before")
    after(docstore.DocStore, "commit_compaction", "compact-commit-after")
    before(embedded.EmbeddedIndex, "_remove_stale_files", "stale-removal")
    replace = os.replace

    def replace_then_maybe_die(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.path.basename(str(src)).startswith(".graph-"):
            maybe_die("graph-rename")
        return replace(src, dst, *args, **kwargs)

    os.replace = replace_then_maybe_die  # type: ignore[assignment]


def _run(args: argparse.Namespace) -> None:
    from colbridge import EmbeddedIndex, IndexLockedError

    if args.crash_at:
        _arm(args.crash_at, args.crash_hit)
    index = EmbeddedIndex(args.index, model=HashEncoder(args.document_length),
                          compact_threshold=args.compact_threshold,
                          checkpoint_rows=args.checkpoint_rows, lock_timeout=args.lock_timeout)
    versions = {doc_id: meta["v"] for doc_id, _, meta, _, _ in index._store.iter_documents()}
    _emit("READY")
    rng = random.Random(args.seed)
    cycle = ["add", "upsert", "delete", "compact", "add", "flush"]
    for seq in range(args.ops):
        if args.adds_only:
            kind = "add"
        elif args.crash_at:
            kind = cycle[seq % len(cycle)]
        elif len(versions) > args.max_docs:
            kind = "delete"
        else:
            kind = rng.choices(["add", "upsert", "delete", "compact", "flush"],
                               weights=[40, 25, 20, 8, 7])[0]
        if kind in ("upsert", "delete") and not versions:
            kind = "add"
        op: dict = {"seq": seq, "kind": kind}
        if kind == "add":
            n = rng.randint(1, args.batch)
            op["docs"] = {f"{args.prefix}{args.seed}-{seq}-{j}": 0 for j in range(n)}
        elif kind == "upsert":
            chosen = rng.sample(sorted(versions), min(len(versions), rng.randint(1, args.batch)))
            op["docs"] = {i: versions[i] + 1 for i in chosen}
        elif kind == "delete":
            op["ids"] = rng.sample(sorted(versions), min(len(versions), rng.randint(1, args.batch)))
        _emit("B", json.dumps(op))
        try:
            if "docs" in op:
                docs = op["docs"]
                index.add([doc_text(i, v) for i, v in docs.items()], ids=list(docs),
                          metadatas=[doc_metadata(i, v) for i, v in docs.items()])
                versions.update(docs)
            elif kind == "delete":
                index.delete(op["ids"])
                for i in op["ids"]:
                    del versions[i]
            elif kind == "compact":
                index.compact()
            else:
                index.flush()
        except IndexLockedError:
            _emit("L")
            continue
        _emit("C", seq)
    index.close()
    _emit("END")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("index")
    parser.add_argument("seed", type=int)
    parser.add_argument("--ops", type=int, default=10**9)
    parser.add_argument("--batch", type=int, default=150)
    parser.add_argument("--max-docs", type=int, default=1500)
    parser.add_argument("--prefix", default="t")
    parser.add_argument("--adds-only", action="store_true")
    parser.add_argument("--crash-at", choices=CRASH_POINTS)
    parser.add_argument("--crash-hit", type=int, default=1)
    parser.add_argument("--compact-threshold", type=float, default=0.35)
    parser.add_argument("--checkpoint-rows", type=int, default=2000)
    parser.add_argument("--lock-timeout", type=float, default=30.0)
    parser.add_argument("--document-length", type=int, default=4096,
                        help="the hash encoder's; a small one splits most texts into passages")
    _run(parser.parse_args())


if __name__ == "__main__":
    main()
