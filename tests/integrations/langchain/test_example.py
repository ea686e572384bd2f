"""The LangChain RAG example runs end to end (offline) and retrieves the right passages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


# Runs the example as a script, then reports whether it imported langchain-community.
CHILD = ("import runpy, sys\n"
         "runpy.run_path(sys.argv[1], run_name='__main__')\n"
         "print('langchain_community imported:', 'langchain_community' in sys.modules)\n")


def test_langchain_rag_example_runs(offline_model):  # offline_model: the encoder is built & cached
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT / "examples" / "langchain_rag.py")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    # langchain-community (home of LangChain's BM25Retriever) is being sunset: not used here.
    assert "langchain_community imported: False" in out
    first, _, second = out.partition("== Chain 2")
    assert "== Chain 1: ColBERTRetriever" in first
    assert "  1. astro-007 (relevance 0." in first
    assert "Answer: The Moon is tidally locked" in first
    bm25_line = next(line for line in first.splitlines() if line.startswith("BM25 candidates:"))
    assert "bio-001" in bm25_line and len(bm25_line.split(",")) == 8
    assert "  1. bio-001 (relevance 0." in second  # ColBERTRerank's score, not BM25's
    assert second.count("relevance 0.") == 3
    assert "Answer: Tardigrades" in second


def test_the_langchain_docs_use_no_sunset_package():
    for page in ("langchain.md", "index.md", "quickstart.md"):
        assert "langchain_community" not in (ROOT / "docs" / page).read_text("utf-8"), page
    assert "langchain_community" not in (ROOT / "README.md").read_text("utf-8")
