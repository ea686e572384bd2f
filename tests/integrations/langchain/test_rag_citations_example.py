"""The citations example runs offline and every citation quotes its document where it says."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "rag_citations.py"
CITATION = re.compile(r"^  \[(\d)\] (\S+) chars (\d+)-(\d+): (.*)$")
PASSAGE = re.compile(r"(\S+) \(passage (\d+)-(\d+)\)")


def test_the_example_answers_with_citations_that_quote_the_documents(offline_model):
    documents = runpy.run_path(str(EXAMPLE))["DOCUMENTS"]
    env = {**os.environ}
    env.pop("COLBRIDGE_MODEL", None)  # the example's own default: offline-minilm
    run = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                         timeout=280, env=env, cwd=EXAMPLE.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Indexed 5 documents with offline-minilm." in run.stdout
    blocks = run.stdout.split("\nQ: ")[1:]
    assert len(blocks) == 4
    tops = []
    for block in blocks:
        lines = block.splitlines()
        answer = next(line for line in lines if line.startswith("A: "))[3:]
        context = next(line for line in lines if line.startswith("Context: "))
        for doc_id, start, end in PASSAGE.findall(context):
            assert 0 <= int(start) < int(end) <= len(documents[doc_id])
        citations = [m for m in map(CITATION.match, lines) if m]
        assert [int(m.group(1)) for m in citations] == [1, 2]
        for m in citations:
            doc_id, start, end, rendered = m.group(2), int(m.group(3)), int(m.group(4)), m.group(5)
            assert doc_id in context
            for passage in PASSAGE.findall(context):  # a split document is cited in its passage
                if passage[0] == doc_id:
                    assert int(passage[1]) <= start and end <= int(passage[2])
            assert documents[doc_id][start:end] == rendered.replace("**", "")  # quoted exactly
            assert re.search(r"\*\*\w[^*]*\*\*", rendered)  # matched words are marked
        assert answer == citations[0].group(5).replace("**", "")
        tops.append(citations[0].group(2))
    assert tops == ["tea-guide", "kettle-manual", "bread", "kettle-manual"]
    answers = [block.split("\n")[2] for block in blocks]
    assert "descale the kettle" in answers[1] and "sour taste" in answers[2]
    assert "rated voltage" in answers[3]  # the manual's last part: past its first window
