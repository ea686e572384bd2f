"""The LlamaIndex example runs offline and finds the expected sources."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "llamaindex_query_engine.py"
SOURCE = re.compile(r"^\s+(\d)\. (\S+)\s+rerank\s+(-?[\d.]+)\s+retrieval\s+(-?[\d.]+)\s")


def test_example_runs_offline() -> None:
    env = {**os.environ}
    env.pop("COLBRIDGE_MODEL", None)  # the example's own default: offline-minilm
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=280, env=env,
        cwd=EXAMPLE.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "Indexed 122 documents as 122 nodes with offline-minilm." in out

    blocks = out.split("\nQ: ")[1:]
    assert len(blocks) == 3
    tops = []
    for block in blocks:
        sources = [SOURCE.match(line) for line in block.splitlines()]
        sources = [m for m in sources if m]
        assert [int(m.group(1)) for m in sources] == [1, 2, 3]
        scores = [float(m.group(3)) for m in sources]
        assert scores == sorted(scores, reverse=True)
        tops.append(sources[0].group(2))
    assert tops == ["astro-007", "cook-001", "phys-005"]
    # the filtered question only shows cooking passages
    cooking = [m.group(2) for m in map(SOURCE.match, blocks[1].splitlines()) if m]
    assert all(i.startswith("cook-") for i in cooking)
