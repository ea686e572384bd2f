"""Benchmark figures live in docs/benchmarks.md, where a run updates them; docstrings point there.

A timing, a speed-up or a measured score in a docstring goes stale without anyone noticing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import colbridge

TIMES = "\u00d7"  # the multiplication sign of "3\u00d7 faster"
FIGURE = re.compile(r"\d+(?:\.\d+)?\s?(?:ms\b|%|" + TIMES + r")|\b0\.\d{2,}\b")
"""A time in ms, a percentage, a ratio, or a measured share or score (0.991)."""

# Owned by the TokenStore / folder-layout work of issue #14 (engineer h2), which rewrites these
# docstrings; remove an entry once its figures have moved to docs/benchmarks.md.
PENDING: set[str] = set()


def _docstrings(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            yield node.lineno, node.value.value


def test_docstrings_carry_no_benchmark_figures():
    package = Path(colbridge.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package).as_posix()
        if name in PENDING:
            continue
        for line, text in _docstrings(path):
            found += [f"{name}:{line}: {m.group(0)!r}" for m in FIGURE.finditer(text)]
    assert not found, "move to docs/benchmarks.md and point there:\n" + "\n".join(found)


def test_the_pattern_finds_figures():
    for text in ("in 36 ms instead of 120", f"about 3{TIMES} faster", "25% faster", "keeps 0.991"):
        assert FIGURE.search(text), text
    assert not FIGURE.search("hybrid weight 0.5, k <= 0, format_version 1")
