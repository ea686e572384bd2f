"""Side-by-side benchmark: colbridge's embedded index vs PyLate's Voyager pipeline vs exact MaxSim.

    uv run python tests/benchmarks/bench_scifact.py ../shared/data/scifact

Everything is measured in one run, on this machine, over the same precomputed embeddings
(cached under .colbridge-cache/embeddings the first time; encoding a corpus is the floor for
every method, so it is measured once, on a sample, and extrapolated by token count). Results go
to docs/benchmarks/results.json, the tables between the markers in docs/benchmarks.md, and
docs/benchmarks/recall-latency.png. See docs/benchmarks.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from embeddings import load_or_encode  # noqa: E402
from machine import describe as describe_machine  # noqa: E402

from colbridge import ColBERTModel, EmbeddedIndex, Reranker  # noqa: E402
from colbridge.evaluation import (  # noqa: E402
    agreement_at,
    load_beir,
    peak_rss_mb,
    plot_sweep,
    quality,
    sweep,
)
from colbridge.models.offline import offline_model_path  # noqa: E402
from colbridge.scoring import maxsim_packed  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
ISOLATED = ["uv", "run", "--isolated", "--no-project", "--python",
            f"{sys.version_info.major}.{sys.version_info.minor}"]
# report key -> (pylate_pipeline.py --index, column label, extra packages for its environment)
ANCHORS = {
    "pylate": ("voyager", "PyLate Voyager + retrieve.ColBERT", []),
    "plaid": ("plaid", "PyLate `indexes.PLAID` (fast-plaid, CPU)", []),
    "warp": ("warp", "PyLate `indexes.WARP` (xtr-warp-rs, CPU, 1 thread)",
             ["--with", "xtr-warp-rs==2.1.0.2110"]),
}


def median_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


def exact_search(matrix: np.ndarray, lengths: np.ndarray, ids: list[str], query: np.ndarray,
                 k: int = 100) -> list[str]:
    """Brute force: one matrix product over every token vector, a max per document, a sum."""
    scores = maxsim_packed(query, matrix, lengths)
    top = np.argpartition(-scores, k)[:k]
    return [ids[i] for i in top[np.argsort(-scores[top], kind="stable")]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", default="offline-minilm")
    parser.add_argument("--rerank-queries", type=int, default=5)
    parser.add_argument("--limit-docs", type=int, help="for a quick trial of the script itself")
    parser.add_argument("--limit-queries", type=int)
    parser.add_argument("--anchors", nargs="*", default=list(ANCHORS), choices=list(ANCHORS),
                        help="PyLate indexes to run beside colbridge (default: all)")
    parser.add_argument("--publish-subset", action="store_true",
                        help="with --limit-docs, write the results to docs too (their own section)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".colbridge-cache" / "embeddings",
                        help="where encoded collections are cached")
    parser.add_argument("--skip-llamaindex", action="store_true")
    parser.add_argument("--only-rerank", action="store_true",
                        help="rerun only the reranking comparison and update it in the results")
    args = parser.parse_args()

    model = ColBERTModel(args.model)
    model.load()
    data = load_beir(args.data, "test", limit_docs=args.limit_docs, limit_queries=args.limit_queries)
    emb = load_or_encode(data, model, args.cache)
    documents = emb.documents()
    lengths = emb.lengths.astype(np.int64)
    total_vectors = int(lengths.sum())
    report: dict = {"dataset": data.name, "documents": len(documents), "queries": len(emb.queries),
                    "token_vectors": total_vectors, "model": model.name,
                    "machine": describe_machine(), "encoder": model.backend,
                    "date": time.strftime("%Y-%m-%d")}
    print(f"{data.name}: {len(documents)} docs, {total_vectors:,} token vectors, "
          f"{len(emb.queries)} queries", flush=True)

    if args.only_rerank:
        rerank_only(model, data, emb, args)
        return

    # -- encoding: the floor, measured on a sample in this run --------------------------------
    rng = np.random.default_rng(0)
    size = min(256, len(documents))
    sample = sorted(rng.choice(len(documents), size=size, replace=False).tolist())
    started = time.perf_counter()
    sample_vectors = model.encode_documents([emb.doc_texts[i] for i in sample], show_progress=False)
    sample_seconds = time.perf_counter() - started
    tokens_per_second = sum(len(v) for v in sample_vectors) / sample_seconds
    encode_seconds = total_vectors / tokens_per_second
    report["encode"] = {"sample_documents": len(sample), "sample_seconds": sample_seconds,
                        "estimated_corpus_seconds": encode_seconds,
                        "documents_per_second": len(documents) / encode_seconds}
    print(f"encoding: {len(documents) / encode_seconds:.1f} docs/s -> {encode_seconds:.0f} s "
          "for the corpus", flush=True)

    # -- exact brute force ---------------------------------------------------------------------
    matrix = np.asarray(emb.vectors, dtype=np.float32)
    exact_runs, exact_seconds = {}, []
    for qid, query in zip(emb.query_ids, emb.queries):
        started = time.perf_counter()
        exact_runs[qid] = exact_search(matrix, lengths, emb.doc_ids, query)
        exact_seconds.append(time.perf_counter() - started)
    del matrix
    report["exact_search_p50_ms"] = median_ms(exact_seconds)
    print(f"exact: p50 {median_ms(exact_seconds):.0f} ms", flush=True)

    # -- colbridge -----------------------------------------------------------------------------
    work = Path(tempfile.mkdtemp(prefix="colbridge-bench-"))
    try:
        index = EmbeddedIndex(work / "colbridge", model=model)
        started = time.perf_counter()
        for begin in range(0, len(documents), 512):
            end = begin + 512
            index.add_encoded(documents[begin:end], emb.doc_texts[begin:end],
                              ids=emb.doc_ids[begin:end])
        index.flush()
        build_seconds = time.perf_counter() - started
        ours_runs, ours_seconds = {}, []
        for qid, query in zip(emb.query_ids, emb.queries):
            started = time.perf_counter()
            hits = index.search_encoded(query, k=100)
            ours_seconds.append(time.perf_counter() - started)
            ours_runs[qid] = [h.id for h in hits]
        stats = index.stats()
        report["colbridge"] = {
            "build_seconds": build_seconds,
            "search_p50_ms": median_ms(ours_seconds),
            "search_p95_ms": float(np.percentile(ours_seconds, 95) * 1000),
            "index_bytes": stats["bytes_on_disk"],
            "bytes_per_token_vector": stats["bytes_on_disk"] / total_vectors,
            "files": stats["files"],
            "graph": stats["graph"],
            "search_options": stats["search_options"],
        }
        print(f"colbridge: build {build_seconds:.0f} s, search p50 {median_ms(ours_seconds):.1f} ms",
              flush=True)

        # -- async: 32 concurrent asearch vs 32 sequential search (query encoding included) ------
        texts = list(data.queries.values())[:32]
        started = time.perf_counter()
        for text in texts:
            index.search(text, k=10)
        sequential = time.perf_counter() - started

        async def concurrent() -> float:
            begin = time.perf_counter()
            await asyncio.gather(*(index.asearch(t, k=10) for t in texts))
            return time.perf_counter() - begin

        concurrent_seconds = asyncio.run(concurrent())
        report["async"] = {"queries": len(texts), "sequential_seconds": sequential,
                           "concurrent_seconds": concurrent_seconds,
                           "throughput_ratio": sequential / concurrent_seconds}
        print(f"async: {sequential / concurrent_seconds:.2f}x", flush=True)

        # -- candidate-breadth sweep and plot ----------------------------------------------------
        points = sweep(index, data)
        report["sweep"] = points
        (DOCS / "benchmarks").mkdir(parents=True, exist_ok=True)
        if args.limit_queries or (args.limit_docs and not args.publish_subset):
            plot_path = work / "trial.png"
        else:
            suffix = f"-{len(documents)}docs" if args.limit_docs else ""
            plot_path = DOCS / "benchmarks" / f"recall-latency{suffix}.png"
        report["plot"] = f"benchmarks/{plot_path.name}"
        plot_sweep(points, plot_path,
                   f"{data.name}: {len(documents):,} docs, {len(emb.queries)} queries, {model.name}")
        index.close()

        # -- PyLate's indexes, each in its own isolated environment ------------------------------
        anchor_runs = {}
        for key in args.anchors:
            index_name, label, extra = ANCHORS[key]
            out = work / f"{key}.json"
            command = [*ISOLATED, "--with", "pylate==1.6.0", "--with", "voyager==2.1.0", *extra,
                       "python", str(Path(__file__).parent / "pylate_pipeline.py"), str(emb.folder),
                       str(work / key), str(out), "--index", index_name]
            subprocess.run(command, check=True)
            run = json.loads(out.read_text())
            shutil.rmtree(work / key, ignore_errors=True)
            report[key] = {
                "label": label,
                "build_seconds": run["build_seconds"],
                "search_p50_ms": median_ms(run["query_seconds"]),
                "search_p95_ms": float(np.percentile(run["query_seconds"], 95) * 1000),
                "index_bytes": run["index_bytes"],
                "bytes_per_token_vector": run["index_bytes"] / total_vectors,
                "queries_timed": len(run["query_seconds"]),
            }
            anchor_runs[key] = run["runs"]
            print(f"{key}: build {run['build_seconds']:.0f} s, search p50 "
                  f"{median_ms(run['query_seconds']):.0f} ms", flush=True)

        # -- quality --------------------------------------------------------------------------
        report["quality"] = {
            "exact": {**quality(exact_runs, data.qrels), "agreement@10": 1.0},
            "colbridge": {**quality(ours_runs, data.qrels),
                          "agreement@10": agreement_at(ours_runs, exact_runs)},
        }
        for key, runs in anchor_runs.items():
            common = {q: exact_runs[q] for q in runs}
            report["quality"][key] = {**quality(runs, data.qrels),
                                      "agreement@10": agreement_at(runs, common)}

        # -- reranking 100 candidates per query -----------------------------------------------
        report["rerank"] = rerank_benchmark(model, data, exact_runs, emb, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report["peak_rss_mb"] = peak_rss_mb()
    if args.limit_queries or (args.limit_docs and not args.publish_subset):
        print(render(report))
        print("(a trial on a subset: docs/benchmarks.md is left as it is)")
    else:
        section = f"results-{len(documents)}docs" if args.limit_docs else "results"
        (DOCS / "benchmarks" / f"{section}.json").write_text(json.dumps(report, indent=2))
        write_markdown(report, section)
    print(json.dumps({k: v for k, v in report.items() if k not in ("sweep",)}, indent=2))


def rerank_only(model, data, emb, args) -> None:
    """Rerun the reranking comparison alone and put it into the saved results (the other
    sections keep the figures of the run that made them)."""
    path = DOCS / "benchmarks" / "results.json"
    report = json.loads(path.read_text())
    matrix = np.asarray(emb.vectors, dtype=np.float32)
    lengths = emb.lengths.astype(np.int64)
    exact_runs = {qid: exact_search(matrix, lengths, emb.doc_ids, query)
                  for qid, query in list(zip(emb.query_ids, emb.queries))[: args.rerank_queries]}
    del matrix
    with tempfile.TemporaryDirectory(prefix="colbridge-bench-") as work:
        report["rerank"] = rerank_benchmark(model, data, exact_runs, emb, Path(work), args)
    report["rerank"]["date"] = time.strftime("%Y-%m-%d %H:%M")
    path.write_text(json.dumps(report, indent=2))
    write_markdown(report)
    print(json.dumps(report["rerank"], indent=2))


def rerank_benchmark(model, data, exact_runs, emb, work, args) -> dict:
    from pylate import rank

    texts_by_id = dict(zip(emb.doc_ids, emb.doc_texts))
    tasks = [{"query": data.queries[q], "texts": [texts_by_id[d] for d in exact_runs[q][:100]]}
             for q in list(exact_runs)[: args.rerank_queries]]
    documents = sum(len(t["texts"]) for t in tasks)

    # Reference order: exact MaxSim over freshly encoded candidates (independent of any reranker).
    def reference(task):
        q = model.encode_query(task["query"])
        d = model.encode_documents(task["texts"], show_progress=False)
        scores = [float((q @ v.T).max(1).sum()) for v in d]
        return list(np.argsort(-np.array(scores), kind="stable"))

    references = [reference(t) for t in tasks]

    def agreement(orders):
        return float(np.mean([len(set(o[:10]) & set(r[:10])) / 10 for o, r in zip(orders, references)]))

    # The in-process rerankers take turns task by task, so drift in the machine's speed
    # (other load, thermal) falls on all alike; the encoders are warm (see reference above).
    reranker = Reranker(model)  # no cache: every call encodes its candidates
    # The same with long candidates truncated, as PyLate, the llama-index postprocessor and the
    # reference do: the default splits them into passages, which encodes more text.
    truncating = Reranker(model, long_documents="truncate")
    # PyLate's own path is PyTorch, whatever backend colbridge's model runs on.
    pylate_model = ColBERTModel(args.model, backend="torch").load()
    ours, truncated, pylate_orders = [], [], []
    ours_seconds = truncated_seconds = pylate_seconds = encoder_seconds = 0.0
    for t in tasks:
        # The encoder alone on the same candidates: no reranker that encodes them with this
        # model can beat this rate, whatever it does around the encoder.
        started = time.perf_counter()
        model.encode_documents(t["texts"], show_progress=False)
        encoder_seconds += time.perf_counter() - started

        started = time.perf_counter()
        ours.append([r.index for r in reranker.rerank(t["query"], t["texts"])])
        ours_seconds += time.perf_counter() - started

        started = time.perf_counter()
        truncated.append([r.index for r in truncating.rerank(t["query"], t["texts"])])
        truncated_seconds += time.perf_counter() - started

        started = time.perf_counter()
        q = pylate_model.encode([t["query"]], is_query=True, show_progress_bar=False)
        d = pylate_model.encode(t["texts"], is_query=False, show_progress_bar=False)
        ids = list(range(len(t["texts"])))
        ranked = rank.rerank(documents_ids=[ids], queries_embeddings=q, documents_embeddings=[d])
        pylate_orders.append([int(r["id"]) for r in ranked[0]])
        pylate_seconds += time.perf_counter() - started

    result = {
        "queries": len(tasks), "candidates_per_query": 100,
        "colbridge": {"documents_per_second": documents / ours_seconds, "agreement@10": agreement(ours)},
        "colbridge_truncate": {"documents_per_second": documents / truncated_seconds,
                               "agreement@10": agreement(truncated)},
        "pylate": {"documents_per_second": documents / pylate_seconds,
                   "agreement@10": agreement(pylate_orders)},
        "encoder_only": {"documents_per_second": documents / encoder_seconds},
    }
    if not args.skip_llamaindex:
        tasks_path, out = work / "tasks.json", work / "llamaindex.json"
        tasks_path.write_text(json.dumps(tasks))
        model_dir = (str(offline_model_path()) if model.name == "offline-minilm"
                     else model.name)
        command = [*ISOLATED, "--with", "llama-index-postprocessor-colbert-rerank", "python",
                   str(Path(__file__).parent / "llamaindex_colbert_rerank.py"), model_dir,
                   str(tasks_path), str(out)]
        subprocess.run(command, check=True)
        li = json.loads(out.read_text())
        result["llamaindex"] = {"documents_per_second": li["documents"] / li["seconds"],
                                "agreement@10": agreement(li["orders"])}
    return result


def write_markdown(report: dict, section: str = "results") -> None:
    """Rewrite the text between ``<!-- section:start -->`` and ``<!-- section:end -->`` in
    docs/benchmarks.md (markers for a new section go before "## Against the targets")."""
    path = DOCS / "benchmarks.md"
    text = path.read_text()
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    if start not in text:
        text = text.replace("## Against the targets", f"{start}\n{end}\n\n## Against the targets", 1)
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    path.write_text(head + start + "\n" + render(report) + end + tail)


def render(r: dict) -> str:
    q, e = r["quality"], r["encode"]
    exact_ms = median_ms_from(r)
    encode_s = e["estimated_corpus_seconds"]
    columns = [("colbridge", "colbridge")] + [
        (key, r[key].get("label", ANCHORS[key][1])) for key in ANCHORS if key in r]
    lines = [
        f"Run on {r['date']}, {r['machine']}, model `{r['model']}` "
        f"(encoder `{r.get('encoder', 'not recorded')}`): {r['dataset']}, "
        f"{r['documents']:,} documents, {r['token_vectors']:,} token vectors, {r['queries']} "
        "queries. Medians over all queries; search times exclude query encoding.",
        "",
        "| | " + " | ".join(label for _, label in columns) + " | exact brute force |",
        "| --- |" + " --- |" * (len(columns) + 1),
    ]

    def row(name: str, cell, exact: str) -> None:
        lines.append(f"| {name} | " + " | ".join(cell(key) for key, _ in columns) + f" | {exact} |")

    row("search p50", lambda k: f"{r[k]['search_p50_ms']:.1f} ms", f"{exact_ms:.0f} ms")
    row("search p50 ÷ exact", lambda k: f"{r[k]['search_p50_ms'] / exact_ms:.3f}", "1")
    row("build beyond encoding",
        lambda k: f"{r[k]['build_seconds']:.0f} s ({r[k]['build_seconds'] / encode_s:.2f}× encoding)",
        "0")
    row("bytes per token vector, whole folder", lambda k: f"{r[k]['bytes_per_token_vector']:.0f}", "–")
    for name in ("ndcg@10", "agreement@10"):
        row(name, lambda k, name=name: f"{q[k][name]:.4f}" if k in q else "–",
            f"{q['exact'][name]:.4f}")
    lines += [
        "",
        f"Encoding (the floor for everyone): {e['documents_per_second']:.1f} docs/s, so about "
        f"{e['estimated_corpus_seconds']:.0f} s for the corpus (timed on {e['sample_documents']} "
        "documents in this run, scaled by token count).",
        "",
    ]
    rr = r["rerank"]
    lines += [
        f"| reranking 100 candidates per query ({rr['queries']} queries"
        + (f"; rerun alone with `--only-rerank` on {rr['date']}" if "date" in rr else "")
        + ") | documents/s | agreement@10 with exact MaxSim |",
        "| --- | --- | --- |",
    ]
    for key, label in (("colbridge", "colbridge `Reranker` (long candidates split, the default)"),
                       ("colbridge_truncate", 'colbridge `Reranker(long_documents="truncate")`'),
                       ("pylate", "PyLate encode + `rank.rerank`"),
                       ("llamaindex", "llama-index-postprocessor-colbert-rerank"),
                       ("encoder_only", "the encoder alone, same candidates (a ceiling for any reranker)")):
        if key in rr:
            agreement = rr[key].get("agreement@10")
            lines.append(f"| {label} | {rr[key]['documents_per_second']:.1f} | "
                         f"{'–' if agreement is None else f'{agreement:.3f}'} |")
    a = r["async"]
    lines += [
        "",
        f"Async: {a['queries']} concurrent `asearch` calls took {a['concurrent_seconds']:.2f} s against "
        f"{a['sequential_seconds']:.2f} s for the same {a['queries']} sequential `search` calls "
        f"(query encoding included): **{a['throughput_ratio']:.2f}×** the throughput.",
        "",
        "| token_k = ef / max_candidates | agreement@10 | nDCG@10 | search p50 |",
        "| --- | --- | --- | --- |",
    ]
    for point in r["sweep"]:
        lines.append(f"| {point['token_k']} / {point['max_candidates']} | {point['agreement@10']:.4f} | "
                     f"{point['ndcg@10']:.4f} | {point['search_p50_ms']:.1f} ms |")
    plot = r.get("plot", "benchmarks/recall-latency.png")
    lines += ["", f"![agreement with exact MaxSim against search latency]({plot})", ""]
    return "\n".join(lines) + "\n"


def median_ms_from(report: dict) -> float:
    return report["exact_search_p50_ms"] if "exact_search_p50_ms" in report else float("nan")


if __name__ == "__main__":
    main()
