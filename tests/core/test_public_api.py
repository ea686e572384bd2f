"""The public surface is small and deliberate; importing it is cheap."""

from __future__ import annotations

import subprocess
import sys

import colbridge

EXPECTED = [
    "BaseIndex",
    "ColBERTModel",
    "ColbridgeError",
    "DocumentNotFoundError",
    "EmbeddedIndex",
    "Encoder",
    "GraphParams",
    "Hit",
    "IndexCorruptError",
    "IndexLockedError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "InvalidInputError",
    "ModelLoadError",
    "QdrantIndex",
    "RerankResult",
    "Reranker",
    "SearchMode",
    "SearchOptions",
    "StoredDocument",
    "mmr",
]


def test_exports_are_pinned():
    assert sorted(colbridge.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(colbridge, name).__doc__, f"{name} has no docstring"


def test_errors_share_one_base():
    for name in EXPECTED:
        if name.endswith("Error") and name != "ColbridgeError":
            assert issubclass(getattr(colbridge, name), colbridge.ColbridgeError)


def test_import_does_not_load_torch():
    code = "import sys, colbridge; print('torch' in sys.modules, 'pylate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
