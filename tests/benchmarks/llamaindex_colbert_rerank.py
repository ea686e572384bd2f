"""llama-index-postprocessor-colbert-rerank on the same candidates, in an isolated environment.

    uv run --isolated --no-project --with llama-index-postprocessor-colbert-rerank \\
        python tests/benchmarks/llamaindex_colbert_rerank.py MODEL_DIR TASKS.json OUT.json

TASKS.json: ``[{"query": str, "texts": [str, ...]}, ...]``. Writes documents per second and the
order it gives each task's texts (indices into ``texts``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(model_dir: str, tasks_path: Path, out: Path) -> None:
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.colbert_rerank import ColbertRerank

    tasks = json.loads(tasks_path.read_text())
    reranker = ColbertRerank(model=model_dir, tokenizer=model_dir, device="cpu",
                             top_n=len(tasks[0]["texts"]))
    def rerank(task):
        nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=0.0)
                 for i, t in enumerate(task["texts"])]
        ranked = reranker.postprocess_nodes(nodes, QueryBundle(task["query"]))
        return [int(n.node.node_id) for n in ranked]

    rerank(tasks[0])  # warm up, as the in-process rerankers are
    orders, documents = [], 0
    started = time.perf_counter()
    for task in tasks:
        orders.append(rerank(task))
        documents += len(task["texts"])
    seconds = time.perf_counter() - started
    out.write_text(json.dumps({"seconds": seconds, "documents": documents, "orders": orders}))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
