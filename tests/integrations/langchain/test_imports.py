"""The package's public surface is exactly the three adapter classes."""

from __future__ import annotations

from pathlib import Path

import langchain_colbridge


def test_public_names():
    assert sorted(langchain_colbridge.__all__) == [
        "ColBERTRerank", "ColBERTRetriever", "ColBERTVectorStore"]
    for name in langchain_colbridge.__all__:
        assert getattr(langchain_colbridge, name).__doc__


def test_package_is_typed():
    assert (Path(langchain_colbridge.__file__).parent / "py.typed").exists()
