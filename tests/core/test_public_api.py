"""The public surface is small and deliberate; importing it is cheap."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import colbridge

EXPECTED = [
    "BackendError",
    "BaseIndex",
    "ColBERTModel",
    "ColbridgeError",
    "DocumentNotFoundError",
    "DocumentTooLongError",
    "EmbeddedIndex",
    "Encoder",
    "GraphParams",
    "Hit",
    "IndexClosedError",
    "IndexCorruptError",
    "IndexLockedError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "InvalidInputError",
    "LongDocuments",
    "ModelLoadError",
    "Passage",
    "QdrantIndex",
    "RerankResult",
    "Reranker",
    "SearchMode",
    "SearchOptions",
    "StoredDocument",
    "TokenMatch",
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


def test_the_version_has_a_module_of_its_own_and_matches_the_package():
    from colbridge._version import __version__

    pyproject = (Path(__file__).parents[2] / "core" / "pyproject.toml").read_text()
    declared = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert declared and colbridge.__version__ == __version__ == declared.group(1)


def test_no_module_imports_from_the_package_root():
    """Submodules depend on each other, never on names of ``colbridge/__init__``."""
    package = Path(colbridge.__file__).parent
    submodules = {p.stem for p in package.glob("*.py")} | {p.parent.name
                                                          for p in package.glob("*/__init__.py")}
    upward = []
    for path in package.rglob("*.py"):
        depth = len(path.relative_to(package).parts)  # 1 for colbridge/x.py
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            from_root = isinstance(node, ast.ImportFrom) and (
                (node.level == depth and not node.module) or node.module == "colbridge")
            if from_root and any(alias.name not in submodules for alias in node.names):
                upward.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not upward, f"imports from the package root: {upward}"


def test_new_error_types_are_caught_by_the_old_except_clauses():
    assert issubclass(colbridge.IndexClosedError, colbridge.InvalidInputError)
    assert issubclass(colbridge.BackendError, colbridge.ColbridgeError)
