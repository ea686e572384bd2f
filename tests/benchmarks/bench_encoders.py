"""Encoder backends side by side: speed, quality against PyTorch, end-to-end search, cold start.

    uv run python tests/benchmarks/bench_encoders.py ../shared/data/scifact

One run, one process, on this machine. Speed figures alternate the backends round by round
(documents, single queries, batches of 32 queries, reranking 100 candidates, search), so drift
in the machine's load falls on all of them alike; PyLate's encode + ``rank.rerank`` takes part
in the same alternation and llama-index-postprocessor-colbert-rerank runs on the same candidates
in an isolated environment. Quality is measured on a SciFact subset that keeps every judged
document of every test query (``--docs``): mean token-vector cosine with PyTorch's vectors,
exact-MaxSim nDCG@10 and agreement of the top 10 with the PyTorch-encoded exact ranking, also
for queries of one backend against documents of another (one index, two backends). Cold start
is ``colbridge search`` as a new process on a built index. Results go to
docs/benchmarks/encoders.json and between the ``encoders`` markers in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from colbridge import ColBERTModel, EmbeddedIndex, Reranker
from colbridge.evaluation import agreement_at, load_beir, quality
from colbridge.scoring import maxsim_many
from machine import describe as describe_machine

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino")
FAST = ("onnx", "openvino")  # the CPU defaults, now or before: their cold start is measured
ISOLATED = ["uv", "run", "--isolated", "--no-project", "--python",
            f"{sys.version_info.major}.{sys.version_info.minor}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", default="offline-minilm")
    parser.add_argument("--docs", type=int, default=400, help="subset size for quality")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rerank-queries", type=int, default=2)
    parser.add_argument("--skip-llamaindex", action="store_true")
    parser.add_argument("--trial", action="store_true", help="small run; docs left as they are")
    args = parser.parse_args()

    models = {b: ColBERTModel(args.model, backend=b, device="cpu" if b == "torch" else None)
              for b in BACKENDS}
    for model in models.values():
        model.load()
        model.encode_documents(["warm up the encoder"])
        model.encode_query("warm up")
    data = load_beir(args.data, "test", limit_docs=args.docs if not args.trial else 40,
                     limit_queries=None if not args.trial else 8)
    query_ids, query_texts = list(data.queries), list(data.queries.values())
    report: dict = {"dataset": data.name, "model": args.model, "documents": len(data.doc_ids),
                    "queries": len(query_texts),
                    "machine": describe_machine(),
                    "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"{data.name} subset: {len(data.doc_ids)} docs, {len(query_texts)} queries", flush=True)

    # -- quality: every backend encodes the subset ---------------------------------------------
    encoded, encode_seconds = {}, {}
    for backend, model in models.items():
        started = time.perf_counter()
        docs = model.encode_documents(data.doc_texts, show_progress=False)
        encode_seconds[backend] = time.perf_counter() - started
        encoded[backend] = (docs, model.encode_queries(query_texts))
        print(f"{backend}: encoded the subset in {encode_seconds[backend]:.0f} s", flush=True)
    ref_docs, ref_queries = encoded["torch"]
    exact = {b: exact_runs(q, d, query_ids, data.doc_ids) for b, (d, q) in encoded.items()}
    report["quality"] = {}
    for backend, (docs, queries) in encoded.items():
        mixed = exact_runs(queries, ref_docs, query_ids, data.doc_ids)
        report["quality"][backend] = {
            "document_cosine": mean_cosine(docs, ref_docs),
            "query_cosine": mean_cosine(queries, ref_queries),
            "ndcg@10": quality(exact[backend], data.qrels)["ndcg@10"],
            "agreement@10": agreement_at(exact[backend], exact["torch"]),
            "agreement@10_queries_on_torch_documents": agreement_at(mixed, exact["torch"]),
            "subset_encode_seconds": encode_seconds[backend],
        }
        print(backend, report["quality"][backend], flush=True)

    # -- speed, alternating -----------------------------------------------------------------------
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data.doc_texts)).tolist()
    rounds = args.rounds if not args.trial else 1
    doc_seconds = {b: 0.0 for b in models}
    doc_count = 0
    single = {b: [] for b in models}
    batch_seconds = {b: 0.0 for b in models}
    for r in range(rounds):
        chunk = [data.doc_texts[i] for i in order[r * 32:(r + 1) * 32]]
        doc_count += len(chunk)
        for backend, model in models.items():
            started = time.perf_counter()
            model.encode_documents(chunk, show_progress=False)
            doc_seconds[backend] += time.perf_counter() - started
        for text in query_texts[r * 20:(r + 1) * 20]:
            for backend, model in models.items():
                started = time.perf_counter()
                model.encode_query(text)
                single[backend].append(time.perf_counter() - started)
        for backend, model in models.items():
            started = time.perf_counter()
            model.encode_queries(query_texts[r * 32:(r + 1) * 32])
            batch_seconds[backend] += time.perf_counter() - started
    report["speed"] = {b: {"documents_per_second": doc_count / doc_seconds[b],
                           "query_p50_ms": 1000 * statistics.median(single[b]),
                           "batch32_queries_per_second": 32 * rounds / batch_seconds[b]}
                       for b in models}
    print(json.dumps(report["speed"], indent=1), flush=True)

    # -- reranking 100 candidates -----------------------------------------------------------------
    tasks = []
    for qid in query_ids[: args.rerank_queries if not args.trial else 1]:
        top = exact["torch"][qid][:100]
        tasks.append({"query": data.queries[qid],
                      "texts": [data.doc_texts[data.doc_ids.index(d)] for d in top]})
    report["rerank"] = rerank(models, tasks, args)
    print(json.dumps(report["rerank"], indent=1), flush=True)

    with tempfile.TemporaryDirectory(prefix="colbridge-encoders-") as work:
        # -- end-to-end search (encode + search), one index per backend --------------------------
        indexes = {}
        for backend, model in models.items():
            index = EmbeddedIndex(Path(work) / backend, model=model)
            index.add_encoded(encoded[backend][0], data.doc_texts, ids=data.doc_ids)
            index.flush()
            indexes[backend] = index
        search = {b: [] for b in models}
        for text in query_texts[: 60 if not args.trial else 5]:
            for backend, index in indexes.items():
                started = time.perf_counter()
                index.search(text, k=10)
                search[backend].append(time.perf_counter() - started)
        for index in indexes.values():
            index.close()
        report["search"] = {b: {"p50_ms": 1000 * statistics.median(s)} for b, s in search.items()}
        print(json.dumps(report["search"], indent=1), flush=True)

        # -- cold start: a new process searching the index built above -------------------------
        walls = {b: [] for b in ("torch", *FAST)}  # the CPU defaults against torch
        cpu = {b: [] for b in walls}
        # As an installed colbridge runs: with its bytecode cached. A run with
        # PYTHONDONTWRITEBYTECODE=1 in a venv that uv installed (uv writes no bytecode) compiles
        # every module it imports, every time: 2.5x the cold start (docs/benchmarks.md).
        environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        for round_ in range(1 + (3 if not args.trial else 1)):
            for backend in walls:
                env = {**environ, "COLBRIDGE_BACKEND": backend}
                before = _children_cpu()
                started = time.perf_counter()
                subprocess.run(["colbridge", "search", query_texts[0], "--index",
                                str(Path(work) / "onnx"), "-k", "3"], check=True, env=env,
                               capture_output=True)
                if round_:  # the first round writes the bytecode cache
                    walls[backend].append(time.perf_counter() - started)
                    cpu[backend].append(_children_cpu() - before)
        probe = ("import sys, colbridge.cli as c; from colbridge import EmbeddedIndex;"
                 f"i = EmbeddedIndex({str(Path(work) / 'onnx')!r}, create=False);"
                 "i.search('probe', k=3); print('torch' in sys.modules, 'pylate' in sys.modules)")
        report["cold_start"] = {b: {"wall_s": statistics.median(w), "runs": w,
                                    "cpu_s": statistics.median(cpu[b])}
                                for b, w in walls.items()}
        for backend in FAST:
            imported = subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                      text=True, check=True,
                                      env={**os.environ, "COLBRIDGE_BACKEND": backend})
            report["cold_start"][backend]["imports_torch_pylate"] = imported.stdout.split()
        print(json.dumps(report["cold_start"], indent=1), flush=True)

    if args.trial:
        print("(a trial: docs left as they are)")
        print(json.dumps(report, indent=1))
        return
    (DOCS / "benchmarks").mkdir(parents=True, exist_ok=True)
    (DOCS / "benchmarks" / "encoders.json").write_text(json.dumps(report, indent=2))
    write_markdown(report)
    print(render(report))


def _children_cpu() -> float:
    """CPU seconds (user + system) used by finished child processes so far: on a machine
    shared with other work, wall time mostly measures the wait for a core."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def exact_runs(queries, docs, query_ids, doc_ids, k: int = 100) -> dict[str, list[str]]:
    runs = {}
    for qid, query in zip(query_ids, queries, strict=True):
        scores = maxsim_many(query, docs)
        runs[qid] = [doc_ids[i] for i in np.argsort(-scores, kind="stable")[:k]]
    return runs


def mean_cosine(ours: list[np.ndarray], reference: list[np.ndarray]) -> float:
    return float(np.concatenate([(a * b).sum(axis=1) for a, b in zip(ours, reference,
                                                                      strict=True)]).mean())


def rerank(models, tasks, args) -> dict:
    """Each backend's ``Reranker`` and PyLate's encode + ``rank.rerank``, task by task."""
    from pylate import rank

    rerankers = {b: Reranker(m) for b, m in models.items()}
    pylate_model = models["torch"].load()
    seconds = {**{b: 0.0 for b in models}, "pylate": 0.0}
    documents = 0
    for task in tasks:
        documents += len(task["texts"])
        for backend, reranker in rerankers.items():
            started = time.perf_counter()
            reranker.rerank(task["query"], task["texts"])
            seconds[backend] += time.perf_counter() - started
        started = time.perf_counter()
        q = pylate_model.encode([task["query"]], is_query=True, show_progress_bar=False)
        d = pylate_model.encode(task["texts"], is_query=False, show_progress_bar=False)
        rank.rerank(documents_ids=[list(range(len(d)))], queries_embeddings=q,
                    documents_embeddings=[d])
        seconds["pylate"] += time.perf_counter() - started
    result = {k: {"documents_per_second": documents / s} for k, s in seconds.items()}
    if not args.skip_llamaindex:
        with tempfile.TemporaryDirectory() as work:
            tasks_path, out = Path(work) / "tasks.json", Path(work) / "out.json"
            tasks_path.write_text(json.dumps(tasks))
            model_dir = str(models["torch"]._model_folder())
            command = [*ISOLATED, "--with", "llama-index-postprocessor-colbert-rerank", "python",
                       str(Path(__file__).parent / "llamaindex_colbert_rerank.py"), model_dir,
                       str(tasks_path), str(out)]
            subprocess.run(command, check=True)
            li = json.loads(out.read_text())
        result["llamaindex"] = {"documents_per_second": li["documents"] / li["seconds"]}
    result["queries"] = len(tasks)
    return result


def write_markdown(report: dict) -> None:
    path = DOCS / "benchmarks.md"
    text = path.read_text()
    start, end = "<!-- encoders:start -->", "<!-- encoders:end -->"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    path.write_text(head + start + "\n" + render(report) + end + tail)


def render(r: dict) -> str:
    s, q, rr, se, cs = r["speed"], r["quality"], r["rerank"], r["search"], r["cold_start"]

    def x(a: float, b: float) -> str:
        return f"{a / b:.2f}×"  # noqa: RUF001

    def row(label: str, cell) -> str:
        return f"| {label} | " + " | ".join(cell(b) for b in BACKENDS) + " |"

    def rate(table: dict, key: str, digits: int = 1):
        base = table["torch"][key]
        return lambda b: f"{table[b][key]:.{digits}f} ({x(table[b][key], base)})"

    li = rr.get("llamaindex")
    fast = [b for b in FAST if b in cs] or ["onnx-int8"]  # older runs measured fewer
    lines = [
        f"Run on {r['date']}, {r['machine']} (shared with other work), model `{r['model']}`, "
        f"SciFact subset of {r['documents']} documents (every judged document of the "
        f"{r['queries']} test queries). Ratios are against `torch`.",
        "",
        row("", lambda b: f"`{b}`"),
        "| --- |" + " --- |" * len(BACKENDS),
        row("documents/s", rate(s, "documents_per_second")),
        row("single-query encoding p50", lambda b: (
            f"{s[b]['query_p50_ms']:.1f} ms "
            f"({x(s['torch']['query_p50_ms'], s[b]['query_p50_ms'])} faster)")),
        row("batch of 32 queries, queries/s", rate(s, "batch32_queries_per_second", 0)),
        row(f"reranking 100 candidates, documents/s ({rr['queries']} queries)",
            rate(rr, "documents_per_second")),
        row("search p50, query encoding included", lambda b: (
            f"{se[b]['p50_ms']:.1f} ms ({x(se[b]['p50_ms'], se['torch']['p50_ms'])} the time)")),
        row("mean token cosine with torch, documents / queries", lambda b: (
            f"{q[b]['document_cosine']:.4f} / {q[b]['query_cosine']:.4f}")),
        row("exact-MaxSim nDCG@10 on the subset", lambda b: f"{q[b]['ndcg@10']:.4f}"),
        row("agreement@10 with the torch-encoded exact ranking",
            lambda b: f"{q[b]['agreement@10']:.3f}"),
        row("the same, this backend's queries on torch's documents",
            lambda b: f"{q[b]['agreement@10_queries_on_torch_documents']:.3f}"),
        "",
        "Reranking the same candidates, documents/s: PyLate encode + `rank.rerank` "
        f"{rr['pylate']['documents_per_second']:.1f}"
        + (f", llama-index-postprocessor-colbert-rerank {li['documents_per_second']:.1f} "
           "(" + ", ".join(f"`{b}` reranks at "
                           f"{x(rr[b]['documents_per_second'], li['documents_per_second'])}"
                           for b in ("onnx-int8", "openvino") if b in rr) + " its rate)"
           if li else "") + ".",
        "",
        f"Cold start, `colbridge search \"…\" --index DIR` as a new process (median of "
        f"{len(cs['torch']['runs'])}): `torch` {cs['torch']['wall_s']:.1f} s wall"
        + (f" ({cs['torch']['cpu_s']:.1f} s CPU)" if "cpu_s" in cs["torch"] else "")
        + "".join(f", `{b}` {cs[b]['wall_s']:.1f} s wall"
                  + (f" ({cs[b]['cpu_s']:.1f} s CPU)" if "cpu_s" in cs[b] else "") for b in fast)
        + "; torch / pylate imported on the query path: "
        + ", ".join(f"`{b}` {' / '.join(cs[b]['imports_torch_pylate'])}" for b in fast) + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
