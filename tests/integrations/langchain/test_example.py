"""The LangChain RAG example runs end to end (offline) and retrieves the right passages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_langchain_rag_example_runs(offline_model):  # offline_model: the encoder is built & cached
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "langchain_rag.py")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    first, _, second = out.partition("== Chain 2")
    assert "== Chain 1: ColBERTRetriever" in first
    assert "  1. astro-007 (relevance 0." in first
    assert "Answer: The Moon is tidally locked" in first
    bm25_line = next(line for line in first.splitlines() if line.startswith("BM25 candidates:"))
    assert "bio-001" in bm25_line and not bm25_line.startswith("BM25 candidates: bio-001")
    assert "  1. bio-001 (relevance 0." in second  # moved up by ColBERTRerank
    assert second.count("relevance 0.") == 3
    assert "Answer: Tardigrades" in second
