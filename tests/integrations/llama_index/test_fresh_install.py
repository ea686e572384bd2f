"""LlamaIndex's sentence splitting works in the workspace as ``uv sync`` installs it.

The other tests here run with a private copy of LlamaIndex's NLTK data (the ``nltk_data_copy``
fixture, for environments installed with hard links). This one runs the documented ingestion
path in a fresh process without that help, as a user's script would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys
from llama_index.core import Document
from llama_index.retrievers.colbridge import ColBERTRetriever

folder, model = sys.argv[1], sys.argv[2]
text = " ".join(f"Sentence {i} says that tardigrades survive being dried out." for i in range(300))
with ColBERTRetriever.from_documents([Document(id_="long", text=text)], folder, model=model,
                                     similarity_top_k=3) as retriever:
    found = retriever.retrieve("tardigrades dried out")
    print(json.dumps({"nodes": retriever.index.count(),
                      "refs": sorted({n.node.ref_doc_id for n in found})}))
"""


def test_default_sentence_splitter_ingests_a_long_text(tmp_path: Path, tiny_model_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "NLTK_DATA"}
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "index"), str(tiny_model_path)],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert run.returncode == 0, (
        "splitting failed; an environment installed before the workspace's link-mode = \"copy\" "
        "needs `uv sync --reinstall-package llama-index-core`:\n" + run.stderr[-3000:]
    )
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["nodes"] > 1  # the default SentenceSplitter (1024 tokens) really split it
    assert out["refs"] == ["long"]
