"""Scale benchmark (issue #15): the embedded index, with its default settings, on SciFact and on
synthetic collections made from SciFact's real token vectors.

    uv run python tests/benchmarks/bench_scale.py ../shared/data/scifact --limit-docs 5183 \\
        --sizes real 10000 50000

(docs/benchmarks.md, "At scale", has the published command: all 5,183 SciFact documents as the
source, which keeps the synthetic collections' tops about as crowded as the real one's.)

``real`` is the SciFact collection itself (``--limit-docs`` of it: every judged document, filled
up with others); a number is a synthetic collection of that many documents. Synthetic documents
(see :func:`synthesize`) are built from runs of consecutive token vectors of ``--spans`` random
real documents, each vector perturbed by Gaussian noise and renormalised, with lengths drawn
from the real documents'. Each collection's exact-MaxSim score profile (top-1, top-10, median,
the gap at rank 10) is reported, to show that exact MaxSim behaves alike on real and synthetic
collections. The queries are SciFact's real test queries, so only agreement with exact MaxSim
is measured on synthetic collections (there are no judgements).

For each collection: exact MaxSim over the float16 vectors (the reference, computed for all
queries in one pass, and its time per query, one query at a time, on the first five), the time
to build an :class:`~colbridge.EmbeddedIndex` from the vectors (``add_encoded`` in batches,
then ``flush``), the folder's bytes per token vector (and the
graph's share), resident memory (VmRSS, RssAnon and RssFile from /proc, in a fresh process,
after opening and after every query has been searched) per token vector, search p50/p95, and
agreement with the exact top 10. Settings are the defaults; ``--graph KEY=VALUE`` (GraphParams),
``--search KEY=VALUE`` (SearchOptions) and ``--index KEY=VALUE`` (other constructor options,
such as a ``codec`` where the index has one) change them; ``--curve`` searches again with
broader settings (``--curve max_candidates=1024 token_k=256,ef=256,max_candidates=1024``) in
the same process, for the trade of time against agreement at each size. The last step
projects folder size and resident memory to 1 M and 10 M documents (a straight line through
the measured collections, bytes against token vectors) and plots them with search time
(``--plot``).

``--kmeans-rounds N`` builds the graph's k-means items with N rounds instead of the index's
own number (one), to compare them; the report records the number used.

``--diagnose`` also splits the loss of agreement into its sources for the index's settings and
each ``--curve`` one (see :func:`diagnose`: the codec's ceiling, the exact top 10's recall
among the first stage's and among the scored candidates, and a tie-tolerant agreement), into
each collection's ``diagnosis`` and the rendered table.

Embeddings are cached under ``--cache`` (default ~/.cache/colbridge/bench); synthetic vectors
are written there as ``.npy`` files and deleted after their collection, and the index folders
go to a scratch folder there (about 0.5 GB per 10k synthetic documents, vectors and index
together: 200k documents need about 20 GB). Prints JSON lines and writes ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[2]
_CHUNK_TOKENS = 1 << 19
_TIMED_EXACT_QUERIES = 5


def synthesize(vectors: np.ndarray, lengths: np.ndarray, n_docs: int, *, spans: int = 3,
               noise: float = 0.15, seed: int = 0, out: Path | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """``n_docs`` documents of float16 token vectors from the real ``vectors``.

    Each document takes a length from the real ``lengths``, splits it into ``spans`` runs, and
    fills each run with consecutive token vectors of a random real document (from a random
    start, wrapping around), so neighbouring tokens stay as correlated as in real text. Every
    vector gets Gaussian noise of norm about ``noise`` and is renormalised. ``out`` makes the
    result a memory-mapped ``.npy`` file there (for collections larger than RAM).
    """
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    dim = vectors.shape[1]
    new_lengths = rng.choice(lengths, size=n_docs)
    total = int(new_lengths.sum())
    if out is None:
        result = np.empty((total, dim), dtype=np.float16)
    else:
        result = np.lib.format.open_memmap(out, mode="w+", dtype=np.float16, shape=(total, dim))
    row = 0
    for begin in range(0, n_docs, 4096):
        block = new_lengths[begin:begin + 4096]
        pieces = []
        for length in block.tolist():
            cuts = np.sort(rng.choice(np.arange(1, length), size=min(spans, length) - 1,
                                      replace=False)) if length > 1 else np.zeros(0, np.int64)
            for run in np.diff(np.concatenate(([0], cuts, [length]))).tolist():
                source = int(rng.integers(len(lengths)))
                offset = int(rng.integers(lengths[source]))
                picks = starts[source] + (offset + np.arange(run)) % lengths[source]
                pieces.append(picks)
        rows = np.concatenate(pieces)
        x = vectors[rows].astype(np.float32)
        x += rng.standard_normal(x.shape, dtype=np.float32) * (noise / np.sqrt(dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        result[row:row + len(x)] = x
        row += len(x)
    if out is not None:
        result.flush()
    return result, new_lengths


def exact_scores(query: np.ndarray, vectors: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Exact MaxSim of ``query`` over every document, in chunks of about 0.5 M token vectors."""
    from colbridge.scoring import maxsim_packed

    ends = np.cumsum(lengths)
    out = np.empty(len(lengths), dtype=np.float32)
    doc, row = 0, 0
    while doc < len(lengths):
        stop = max(int(np.searchsorted(ends, row + _CHUNK_TOKENS, side="right")), doc + 1)
        out[doc:stop] = maxsim_packed(query, np.asarray(vectors[row:ends[stop - 1]]),
                                      lengths[doc:stop])
        doc, row = stop, int(ends[stop - 1])
    return out


def exact_scores_all(queries: np.ndarray, vectors: np.ndarray, lengths: np.ndarray,
                     chunk_tokens: int = 1 << 16) -> np.ndarray:
    """Exact MaxSim of every query over every document, ``(queries, documents)``: each chunk of
    token vectors is read and widened once for all queries (one product with every query token
    stacked), which is what makes a 200k-document reference affordable here."""
    from colbridge.scoring import token_similarities

    n_queries, q_tokens, _ = queries.shape
    stacked = np.ascontiguousarray(queries.reshape(n_queries * q_tokens, -1), dtype=np.float32)
    ends = np.cumsum(lengths)
    out = np.empty((n_queries, len(lengths)), dtype=np.float32)
    doc, row = 0, 0
    while doc < len(lengths):
        stop = max(int(np.searchsorted(ends, row + chunk_tokens, side="right")), doc + 1)
        sims = token_similarities(stacked, np.asarray(vectors[row:ends[stop - 1]]))
        starts = np.concatenate(([0], np.cumsum(lengths[doc:stop - 1])))
        best = np.maximum.reduceat(sims, starts, axis=1)  # (queries * q_tokens, documents)
        out[:, doc:stop] = best.reshape(n_queries, q_tokens, -1).sum(axis=1)
        doc, row = stop, int(ends[stop - 1])
    return out


def score_profile(scores: list[np.ndarray], query_tokens: int) -> dict:
    """How exact MaxSim spreads over a collection: per query, the top-1, top-10 and median
    scores (divided by the query length) and the relative gap between ranks 10 and 11."""
    top1, top10, median, gap = [], [], [], []
    for s in scores:
        ordered = np.sort(s)[::-1]
        top1.append(ordered[0] / query_tokens)
        top10.append(ordered[9] / query_tokens)
        median.append(np.median(ordered) / query_tokens)
        gap.append((ordered[9] - ordered[10]) / ordered[9])
    return {"top1_mean": float(np.mean(top1)), "top10_mean": float(np.mean(top10)),
            "median_mean": float(np.mean(median)), "gap10_11_median": float(np.median(gap)),
            "gap10_11_share_below_1e-3": float(np.mean(np.array(gap) < 1e-3))}


def vm_status() -> dict[str, int]:
    """This process's VmRSS, RssAnon and RssFile in bytes, from /proc/self/status."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1]) * 1024
    if "VmRSS" not in out:
        raise RuntimeError("no VmRSS in /proc/self/status")
    return out


def recorded_encoder(name: str, dimension: int, query_length: int, document_length: int):
    """An encoder known by name and shape only: the benchmark's vectors are pre-encoded."""
    from colbridge.models.base import Encoder

    class Recorded(Encoder):
        @property
        def dimension(self) -> int:
            return dimension

        @property
        def query_length(self) -> int:
            return query_length

        @property
        def document_length(self) -> int:
            return document_length

        def _encode(self, texts, *, is_query, pool_factor=1, show_progress=False):
            raise RuntimeError("bench_scale indexes and searches pre-encoded vectors only")

    return Recorded(name=name)


def parse_settings(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs; values are JSON where they parse as JSON, else strings."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def index_options(args) -> dict:
    from colbridge.index.embedded import SearchOptions
    from colbridge.index.manifest import GraphParams

    options = dict(args.index)
    if args.graph:
        options["graph"] = GraphParams(**args.graph)
    if args.search:
        options["search_options"] = SearchOptions(**args.search)
    return options


def probe(folder: Path, queries_file: Path, shape: list[int], settings: dict,
          curve: list[dict]) -> dict:
    """Run in a fresh process: open the index, search every query, report RSS and times; then
    search every query again with each of the ``curve`` settings (after the RSS readings, so
    they count the index's own settings only)."""
    from colbridge import EmbeddedIndex  # imported before the first reading
    from colbridge.index.embedded import SearchOptions

    queries = np.load(queries_file, allow_pickle=False)
    model = recorded_encoder(*shape)
    options = {"search_options": SearchOptions(**settings)} if settings else {}
    before = vm_status()
    index = EmbeddedIndex(folder, model=model, create=False, **options)
    opened = vm_status()
    seconds, runs = [], []
    for q in queries:
        started = time.perf_counter()
        hits = index.search_encoded(q, k=10)
        seconds.append(time.perf_counter() - started)
        runs.append([int(h.id) for h in hits])
    searched = vm_status()
    curve_runs = []
    for extra in curve:
        options = {**settings, **extra}
        timed, found = [], []
        for q in queries:
            started = time.perf_counter()
            hits = index.search_encoded(q, k=10, **options)
            timed.append(time.perf_counter() - started)
            found.append([int(h.id) for h in hits])
        curve_runs.append({"settings": options, "seconds": timed, "runs": found})
    graph_items = index.stats()["graph_items"]
    index.close()
    return {"before": before, "opened": opened, "searched": searched, "seconds": seconds,
            "runs": runs, "graph_items": graph_items, "curve": curve_runs}


TIE_TOLERANCE = 1e-3
"""A hit counts as right for the tie-tolerant agreement when its exact score is at least the
exact 10th score times ``1 - TIE_TOLERANCE``."""


def diagnose(index, queries: np.ndarray, exact: list[np.ndarray], settings: list[dict]) -> dict:
    """Where agreement with the exact (float16) top 10 is lost, on the same queries.

    * ``codec_ceiling``: exact MaxSim over every document's vectors as the index stores them
      (decoded codes), against the float16 top 10: what a search with unlimited breadth could
      reach; also ``codec_ceiling_tie_tolerant``.
    * per search setting (the index's own, then each ``--curve`` one), from a traced search
      (``_traced_search``, the search pipeline itself): ``first_stage_recall`` (share of the
      exact top 10 among the graph's candidates, before the pre-ranking cut),
      ``scored_recall`` (among the ``max_candidates`` scored exactly), ``agreement@10`` (the
      hits) and ``agreement@10_tie_tolerant`` (a hit is right when its exact score is within
      ``TIE_TOLERANCE`` of the exact 10th score or above), and the mean candidate counts.

    Collection positions are the benchmark's ids (``str(position)``).
    """
    from colbridge.index.embedded import _traced_search

    snap = index._fresh_snapshot()
    live = snap.live
    ids = index._store.fetch_by_doc_nos(live.tolist())
    position_of_no = np.full(int(live.max()) + 1, -1, np.int64)
    position_of_no[live] = [int(ids[n][0]) for n in live.tolist()]
    order = np.argsort(position_of_no[live], kind="stable")
    by_position = live[order]
    starts, counts = snap.starts[by_position], snap.counts[by_position]
    if not (np.array_equal(position_of_no[by_position], np.arange(len(live)))
            and np.array_equal(starts, np.concatenate(([0], np.cumsum(counts)[:-1])))):
        raise AssertionError("the index's rows are not the collection's, in order")
    stored = exact_scores_all(queries, snap.vectors, counts)
    reference = [np.argsort(-s, kind="stable")[:10] for s in exact]
    tenth = [np.sort(s)[-10] for s in exact]

    def agreement(found: list[np.ndarray]) -> tuple[float, float]:
        plain = [len(set(f.tolist()) & set(r.tolist())) / 10
                 for f, r in zip(found, reference, strict=True)]
        tolerant = [float(np.sum(s[f] >= t * (1 - TIE_TOLERANCE))) / 10
                    for f, s, t in zip(found, exact, tenth, strict=True)]
        return float(np.mean(plain)), float(np.mean(tolerant))

    def recall(kept: list[np.ndarray | None]) -> float:
        return float(np.mean([1.0 if k is None else float(np.isin(r, k).sum()) / 10
                              for k, r in zip(kept, reference, strict=True)]))

    ceiling, ceiling_tolerant = agreement([np.argsort(-s, kind="stable")[:10] for s in stored])
    out = {"tie_tolerance": TIE_TOLERANCE, "codec_ceiling": ceiling,
           "codec_ceiling_tie_tolerant": ceiling_tolerant, "settings": []}
    for setting in settings:
        first, scored, hits = [], [], []
        for q in queries:
            trace = _traced_search(index, q, 10, **setting)
            first.append(None if trace["first_stage"] is None
                         else position_of_no[trace["first_stage"]])
            scored.append(position_of_no[trace["scored"]])
            hits.append(np.array([int(h) for h in trace["hits"]], np.int64))
        plain, tolerant = agreement(hits)
        out["settings"].append({
            "settings": setting, "first_stage_recall": recall(first),
            "scored_recall": recall(scored), "agreement@10": plain,
            "agreement@10_tie_tolerant": tolerant,
            "first_stage_candidates_mean": float(np.mean([len(f) for f in first
                                                          if f is not None] or [0])),
            "scored_mean": float(np.mean([len(s) for s in scored]))})
    return out


def folder_sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def measure(name: str, vectors: np.ndarray, lengths: np.ndarray, queries: np.ndarray,
            texts: list[str] | None, args, work: Path) -> dict:
    from colbridge import EmbeddedIndex

    n_tokens = int(lengths.sum())
    print(f"{name}: {len(lengths):,} documents, {n_tokens:,} token vectors; load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    # The reference for every query in one pass; exact search's latency (one query at a time,
    # as a user would run it) is timed on the first few queries.
    exact = list(exact_scores_all(queries, vectors, lengths))
    exact_seconds = []
    for q, reference_scores in zip(queries[:_TIMED_EXACT_QUERIES], exact, strict=False):
        started = time.perf_counter()
        one = exact_scores(q, vectors, lengths)
        exact_seconds.append(time.perf_counter() - started)
        if not np.allclose(one, reference_scores, atol=1e-3):
            raise AssertionError("batched and one-query exact MaxSim disagree")
    reference = [np.argsort(-s, kind="stable")[:10] for s in exact]
    shape = [f"bench-{name}", vectors.shape[1], queries.shape[1], int(lengths.max())]
    folder = work / f"embedded-{name}"
    options = index_options(args)
    index = EmbeddedIndex(folder, model=recorded_encoder(*shape), **options)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    started = time.perf_counter()
    for begin in range(0, len(lengths), args.batch):
        stop = min(begin + args.batch, len(lengths))
        docs = [np.asarray(vectors[s:s + n], dtype=np.float32)
                for s, n in zip(starts[begin:stop], lengths[begin:stop], strict=True)]
        index.add_encoded(docs, texts[begin:stop] if texts else
                          [f"synthetic document {i}" for i in range(begin, stop)],
                          ids=[str(i) for i in range(begin, stop)])
    index.flush()
    build_seconds = time.perf_counter() - started
    manifest = json.loads((folder / "manifest.json").read_text())
    diagnosis = (diagnose(index, queries, exact, [args.search, *args.curve])
                 if args.diagnose else None)
    index.close()
    sizes = folder_sizes(folder)
    queries_file = work / "queries.npy"
    np.save(queries_file, queries)
    out = subprocess.run(
        [sys.executable, __file__, "--probe", str(folder), str(queries_file), json.dumps(shape),
         json.dumps(args.search), json.dumps(args.curve)],
        check=True, capture_output=True, text=True).stdout
    probed = json.loads(out.strip().splitlines()[-1])

    def per_token(after: str) -> dict[str, float]:
        return {k: (probed[after][k] - probed["before"][k]) / n_tokens for k in probed["before"]}

    def agreement_of(runs: list[list[int]]) -> float:
        return float(np.mean([len(set(f) & set(r.tolist())) / 10
                              for f, r in zip(runs, reference, strict=True)]))

    agreement = agreement_of(probed["runs"])
    row = {
        "collection": name, "documents": len(lengths), "token_vectors": n_tokens,
        "queries": len(queries), "graph": manifest["graph"], "codec": manifest.get("codec"),
        "index_options": {k: str(v) for k, v in options.items()},
        "graph_items": probed["graph_items"],
        "exact_p50_ms": float(np.median(exact_seconds) * 1000),
        "score_profile": score_profile(exact, queries.shape[1]),
        "build_seconds": build_seconds,
        "folder_bytes": sum(sizes.values()),
        "folder_bytes_per_token": sum(sizes.values()) / n_tokens,
        "graph_file_bytes_per_token": sum(v for k, v in sizes.items() if k.startswith("graph-"))
        / n_tokens,
        "vector_file_bytes_per_token": sum(v for k, v in sizes.items()
                                           if k.startswith("vectors-")) / n_tokens,
        "rss_after_open_bytes": probed["opened"]["VmRSS"] - probed["before"]["VmRSS"],
        "rss_after_searches_bytes": probed["searched"]["VmRSS"] - probed["before"]["VmRSS"],
        "rss_after_open_bytes_per_token": per_token("opened"),
        "rss_after_searches_bytes_per_token": per_token("searched"),
        "search_p50_ms": float(np.median(probed["seconds"]) * 1000),
        "search_p95_ms": float(np.percentile(probed["seconds"], 95) * 1000),
        "agreement@10": agreement,
        "curve": [{"settings": c["settings"], "agreement@10": agreement_of(c["runs"]),
                   "search_p50_ms": float(np.median(c["seconds"]) * 1000)}
                  for c in probed["curve"]],
    }
    row["search_p50_over_exact_p50"] = row["search_p50_ms"] / row["exact_p50_ms"]
    if diagnosis is not None:
        row["diagnosis"] = diagnosis
    print(json.dumps(row), flush=True)
    if not args.keep:
        shutil.rmtree(folder)
    return row


def project(rows: list[dict], documents: int) -> dict:
    """Folder bytes and resident memory at ``documents``, from a straight line (least squares)
    through the measured collections' bytes against token vectors, at their mean document
    length; search p50 from the growth between the two largest collections (a power law)."""
    synthetic = [r for r in rows if r["collection"] != "real"] or rows
    tokens = np.array([r["token_vectors"] for r in synthetic], dtype=np.float64)
    per_doc = float(tokens.sum() / sum(r["documents"] for r in synthetic))
    target = documents * per_doc
    out = {"documents": documents, "token_vectors": target, "from": [r["collection"] for r in
                                                                     synthetic]}
    for key in ("folder_bytes", "rss_after_open_bytes", "rss_after_searches_bytes"):
        values = np.array([r[key] for r in synthetic], dtype=np.float64)
        if len(values) > 1:
            slope, offset = np.polyfit(tokens, values, 1)
        else:
            slope, offset = values[0] / tokens[0], 0.0
        out[key] = float(offset + slope * target)
        out[f"{key}_per_token_slope"] = float(slope)
    if len(synthetic) > 1:
        (t0, p0), (t1, p1) = [(r["token_vectors"], r["search_p50_ms"]) for r in synthetic[-2:]]
        exponent = float(np.log(p1 / p0) / np.log(t1 / t0))
        out["search_p50_growth_exponent"] = exponent
        # A p50 that fell as the collection grew is machine noise, not a trend to extend.
        out["search_p50_ms"] = float(p1 * (target / t1) ** exponent) if exponent > 0 else None
    return out


def plot(report: dict, path: Path) -> None:
    """Folder size, resident memory and search p50 against collection size (measured points
    and the projections), as an SVG."""
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    rows = report["collections"]
    tokens = [r["token_vectors"] for r in rows]
    projected = report["projections"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("folder_bytes", "folder"), ("rss_after_open_bytes", "resident after open"),
                       ("rss_after_searches_bytes", "resident after the searches")):
        line, = left.plot(tokens, [r[key] / 1e9 for r in rows], "o-", label=label)
        left.plot([tokens[-1]] + [p["token_vectors"] for p in projected],
                  [rows[-1][key] / 1e9] + [p[key] / 1e9 for p in projected], "--",
                  color=line.get_color(), label=f"{label}, projected")
    left.set(xscale="log", yscale="log", xlabel="token vectors", ylabel="GB",
             title="Size")
    left.legend(fontsize=8)
    right.plot(tokens, [r["search_p50_ms"] for r in rows], "o-", label="search p50")
    right.plot(tokens, [r["exact_p50_ms"] for r in rows], "s:", label="exact MaxSim p50")
    right.set(xscale="log", yscale="log", xlabel="token vectors", ylabel="ms",
              title="Time per query")
    right.legend(fontsize=8)
    fig.suptitle("EmbeddedIndex, default settings (docs/benchmarks.md, 'At scale')", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)


def diagnosis_lines(rows: list[dict], line) -> list[str]:
    """The ``--diagnose`` rows of the table (none when no collection was diagnosed)."""
    if not any("diagnosis" in r for r in rows):
        return []

    def cell(r: dict, text) -> str:
        return text(r["diagnosis"]) if "diagnosis" in r else "-"

    out = [line("*codec ceiling*: exact MaxSim over the stored codes, agreement "
                "(tie-tolerant)",
                [cell(r, lambda d: f"{d['codec_ceiling']:.3f} "
                      f"({d['codec_ceiling_tie_tolerant']:.3f})") for r in rows])]
    settings = max((r["diagnosis"]["settings"] for r in rows if "diagnosis" in r), key=len)
    for i, s in enumerate(settings):
        label = ", ".join(f"{k}={v}" for k, v in s["settings"].items()) or "the defaults"
        out.append(line(
            f"*{label}*: exact top 10 among first-stage / scored candidates; agreement "
            "(tie-tolerant)",
            [cell(r, lambda d, i=i: "-" if len(d["settings"]) <= i else
                  "{first_stage_recall:.3f} / {scored_recall:.3f}; {agreement@10:.3f} "
                  "({agreement@10_tie_tolerant:.3f})".format(**d["settings"][i]))
             for r in rows]))
    return out


def render(report: dict) -> str:
    """The Markdown tables of a report (what ``--render`` puts between the markers)."""
    rows = report["collections"]

    def line(label: str, cells: list[str]) -> str:
        return f"| {label} | " + " | ".join(cells) + " |"

    def per_token(r: dict, when: str) -> str:
        parts = r[f"rss_after_{when}_bytes_per_token"]
        return (f"{parts['VmRSS']:.0f} ({parts['RssAnon']:.0f} + {parts['RssFile']:.0f})")

    out = [line("", [r["collection"] for r in rows]),
           line("---", ["---"] * len(rows)),
           line("documents", [f"{r['documents']:,}" for r in rows]),
           line("token vectors", [f"{r['token_vectors']:,}" for r in rows]),
           line("graph", [f"pool {r['graph']['pool']}, {r['graph'].get('pooling', 'similar')}, "
                          f"{r['graph_items']:,} items" for r in rows]),
           line("token codec", [str(r["codec"]) for r in rows]),
           line("build s (add_encoded + flush)", [f"{r['build_seconds']:.0f}" for r in rows]),
           line("folder, B/token (graph file)",
                [f"{r['folder_bytes_per_token']:.0f} ({r['graph_file_bytes_per_token']:.1f})"
                 for r in rows]),
           line("RSS after open, B/token (anon + file)", [per_token(r, "open") for r in rows]),
           line(f"RSS after {rows[0]['queries']} searches, B/token (anon + file)",
                [per_token(r, "searches") for r in rows]),
           line("RSS after the searches, MB",
                [f"{r['rss_after_searches_bytes'] / 1e6:.0f}" for r in rows]),
           line("search p50 / p95 ms",
                [f"{r['search_p50_ms']:.0f} / {r['search_p95_ms']:.0f}" for r in rows]),
           line("exact MaxSim p50 ms (same run)", [f"{r['exact_p50_ms']:.0f}" for r in rows]),
           line("search p50 ÷ exact p50", [f"{r['search_p50_over_exact_p50']:.3f}"
                                           for r in rows]),
           line("**agreement with the exact top 10**", [f"**{r['agreement@10']:.3f}**"
                                                       for r in rows]),
           *[line("agreement / p50 ms with " + ", ".join(f"{k}={v}" for k, v in
                                                           c["settings"].items()),
                  [f"{r['curve'][i]['agreement@10']:.3f} / {r['curve'][i]['search_p50_ms']:.0f}"
                   if len(r.get("curve", [])) > i else "-" for r in rows])
             for i, c in enumerate(max((r.get("curve", []) for r in rows), key=len))],
           *diagnosis_lines(rows, line),
           line("exact scores: top 1 / top 10 / median ÷ query tokens",
                ["{top1_mean:.3f} / {top10_mean:.3f} / {median_mean:.3f}".format(
                    **r["score_profile"]) for r in rows]),
           line("gap between ranks 10 and 11: median, share < 0.1%",
                ["{:.2%}, {:.2f}".format(r["score_profile"]["gap10_11_median"],
                                         r["score_profile"]["gap10_11_share_below_1e-3"])
                 for r in rows]),
           "",
           f"Load average {report['load_average_at_start']:.1f} at the start, "
           f"{report['load_average_at_end']:.1f} at the end; "
           f"{report.get('machine', str(report['cpus']) + ' CPU cores')}.",
           "",
           "Projected (not measured), from a straight line through the synthetic collections' "
           "bytes against token vectors, and search p50 from its growth between the two "
           "largest (none where it did not grow):",
           "",
           "| documents | token vectors | folder GB | RSS after open GB | RSS after the "
           "searches GB | search p50 ms |",
           "| --- | --- | --- | --- | --- | --- |"]
    for proj in report["projections"]:
        p50 = proj.get("search_p50_ms")
        out.append(f"| {proj['documents']:,} | {proj['token_vectors'] / 1e6:,.0f} M | "
                   f"{proj['folder_bytes'] / 1e9:,.1f} | {proj['rss_after_open_bytes'] / 1e9:,.1f} "
                   f"| {proj['rss_after_searches_bytes'] / 1e9:,.1f} | "
                   f"{'-' if p50 is None else f'{p50:,.0f}'} |")
    out += ["", "![Folder size, resident memory and search time against collection size]"
                "(benchmarks/scale.svg)"]
    return "\n".join(out)


def write_between_markers(markdown: Path, text: str) -> None:
    start, end = "<!-- scale:start -->", "<!-- scale:end -->"
    page = markdown.read_text()
    before, rest = page.split(start, 1)
    _, after = rest.split(end, 1)
    markdown.write_text(f"{before}{start}\n{text}\n{end}{after}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        print(json.dumps(probe(Path(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4]),
                               json.loads(sys.argv[5]), json.loads(sys.argv[6]))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--render":  # REPORT.json PAGE.md [PLOT.svg]
        report_path = Path(sys.argv[2])
        report = json.loads(report_path.read_text())
        report["projections"] = [project(report["collections"], n)
                                 for n in (1_000_000, 10_000_000)]
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        write_between_markers(Path(sys.argv[3]), render(report))
        if len(sys.argv) > 4:
            plot(report, Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--limit-docs", type=int, default=1500)
    parser.add_argument("--sizes", nargs="+", default=["real", "10000"],
                        help="'real' and/or synthetic document counts (10000 50000 200000)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--batch", type=int, default=512, help="documents per add_encoded")
    parser.add_argument("--graph", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--search", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--index", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--curve", nargs="*", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                        help="further search settings, each searched with every query in the "
                             "same process after the default's readings (agreement, p50)")
    parser.add_argument("--kmeans-rounds", type=int, default=None,
                        help="rounds of k-means for the graph's items (default: the index's)")
    parser.add_argument("--spans", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the index folders")
    parser.add_argument("--diagnose", action="store_true",
                        help="also split the loss of agreement into its sources (see diagnose)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/colbridge/bench")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "docs" / "benchmarks" / "scale.json")
    parser.add_argument("--plot", type=Path, default=None, help="write the plot (SVG) here")
    args = parser.parse_args()
    args.graph, args.search = parse_settings(args.graph), parse_settings(args.search)
    args.index = parse_settings(args.index)
    args.curve = [parse_settings(setting.split(",")) for setting in args.curve]

    from colbridge import ColBERTModel
    from colbridge.evaluation import load_beir
    from colbridge.index import graph
    from embeddings import load_or_encode
    from machine import describe as describe_machine

    if args.kmeans_rounds is not None:  # a benchmark's knob, not an index option
        graph._KMEANS_ROUNDS = args.kmeans_rounds

    data = load_beir(args.data, "test", limit_docs=args.limit_docs)
    model = ColBERTModel("offline-minilm", backend="onnx")
    emb = load_or_encode(data, model, args.cache)
    real = np.asarray(emb.vectors)
    lengths = emb.lengths.astype(np.int64)
    queries = emb.queries[:args.queries]
    report = {"dataset": data.name, "source_documents": len(lengths), "cpus": os.cpu_count(),
              "machine": describe_machine(), "load_average_at_start": os.getloadavg()[0],
              "spans": args.spans, "noise": args.noise, "kmeans_rounds": graph._KMEANS_ROUNDS,
              "command": " ".join(sys.argv[1:]), "collections": []}
    work = Path(tempfile.mkdtemp(prefix="colbridge-scale-", dir=args.cache))
    try:
        for size in args.sizes:
            if size == "real":
                row = measure("real", real, lengths, queries, emb.doc_texts, args, work)
            else:
                n = int(size)
                path = work / f"synthetic-{data.name}-{len(lengths)}-{n}-{args.seed}.npy"
                synthetic, synthetic_lengths = synthesize(
                    real, lengths, n, spans=args.spans, noise=args.noise, seed=args.seed,
                    out=path)
                row = measure(f"synthetic-{n}", synthetic, synthetic_lengths, queries, None,
                              args, work)
                del synthetic
                path.unlink()
            report["collections"].append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["projections"] = [project(report["collections"], n) for n in (1_000_000, 10_000_000)]
    for p in report["projections"]:
        print(json.dumps(p), flush=True)
    report["load_average_at_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(report, args.plot)


if __name__ == "__main__":
    main()
