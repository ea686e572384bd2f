"""The ``colbridge`` command line: demo, index, search, info, check, backup, recover, migrate."""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import (
    ColbridgeError,
    IndexNotFoundError,
    InvalidInputError,
    ModelLoadError,
)
from .passages import LongDocuments
from .search.fusion import DEFAULT_HYBRID_WEIGHT

app = typer.Typer(
    help="ColBERT late-interaction retrieval and reranking: index files, search them, try the demo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

IndexOption = Annotated[Path, typer.Option("--index", "-i", help="Index folder.")]
ModelOption = Annotated[
    Optional[str],
    typer.Option("--model", "-m", help="Hub id, model folder or 'offline-minilm'. An existing "
                 "index defaults to the model that built it; a new one to COLBRIDGE_MODEL or "
                 "the default model."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LongDocumentsOption = Annotated[Optional[LongDocuments], typer.Option(
    "--long-documents", help="Texts longer than the model's document length: split into "
    "passages (default for a new index), truncate, or error. An existing index keeps its own.")]


class Mode(str, Enum):
    colbert = "colbert"
    bm25 = "bm25"
    hybrid = "hybrid"


class EvalMode(str, Enum):
    colbert = "colbert"
    bm25 = "bm25"
    hybrid = "hybrid"
    all = "all"


def _fail(message: object) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


_CLI_OFFLINE_HINT = (
    "To work offline, build new indexes with the offline stand-in, --model offline-minilm or "
    "COLBRIDGE_MODEL=offline-minilm (lower quality), or with a model folder: --model "
    "/path/to/model. An existing index always needs the model that built it."
)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the library's errors (user mistakes, bad folders) into one line and exit code 1."""
    try:
        yield
    except ModelLoadError as e:
        from .models.colbert import OFFLINE_HINT

        # The library's advice is written for Python callers; give the flags instead.
        _fail(str(e).replace(OFFLINE_HINT, _CLI_OFFLINE_HINT))
    except ColbridgeError as e:
        _fail(e)
    except KeyboardInterrupt:
        _fail("interrupted")


def _require_index(path: Path) -> None:
    """The one message of every command that reads an index, for a folder that holds none."""
    if path.is_dir():
        if any(path.iterdir()):
            return  # files there: the index's own checks say what is wrong with them
        state = "the folder is empty"
    elif path.exists():
        return  # not a folder: the index's own checks say so
    else:
        state = "the folder does not exist"
    raise IndexNotFoundError(
        f"no colbridge index at {path}: {state} (build one with "
        f"`colbridge index FILES --index {path}`)"
    )


def _open_index(path: Path, model: str | None):
    from .index import EmbeddedIndex

    _require_index(path)
    return EmbeddedIndex(path, model=model, create=False)


def _count_or_zero(index: Any) -> int:
    """Documents in ``index``; 0 when no index exists there yet (its first add creates it)."""
    try:
        return index.count()
    except IndexNotFoundError:
        return 0


def _snippet(text: str, width: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _marked(text: str, spans: list[tuple[int, int]], terminal: bool, margin: int = 24) -> str:
    """Rich markup of ``text`` from a little before its first span to a little after its
    last, whitespace flattened, with ``spans`` marked: bold in a terminal, ``**`` otherwise."""
    from rich.markup import escape

    if not spans:
        return escape(_snippet(text))
    opening, closing = ("[bold yellow]", "[/]") if terminal else ("**", "**")
    begin = max(0, min(start for start, _ in spans) - margin)
    finish = min(len(text), max(end for _, end in spans) + margin)
    pieces = ["…" if begin else ""]
    at = begin
    for start, end in sorted(spans):
        pieces += [escape(text[at:start]), opening, escape(text[start:end]), closing]
        at = end
    pieces += [escape(text[at:finish]), "…" if finish < len(text) else ""]
    return re.sub(r"\s+", " ", "".join(pieces)).strip()


def _passage_label(passage: tuple[int, int] | None, terminal: bool) -> str:
    """Rich markup naming a hit's best passage by its character span (dim in a terminal,
    ``passage START-END:`` otherwise), or nothing for a document indexed whole."""
    if passage is None:
        return ""
    start, end = passage
    return f"[dim]passage {start}-{end}[/] " if terminal else f"passage {start}-{end}: "


# -- demo --------------------------------------------------------------------------------------
@app.command()
def demo(
    model: ModelOption = None,
    k: Annotated[int, typer.Option("-k", help="Hits shown per query.")] = 3,
) -> None:
    """Index the bundled sample corpus in a temporary folder and run a few queries."""
    from .config import OFFLINE_MODEL, default_model_name
    from .index import EmbeddedIndex
    from .models import ColBERTModel

    with _user_errors():
        data = resources.files("colbridge") / "data"
        corpus = [json.loads(line) for line in
                  (data / "sample_corpus.jsonl").read_text("utf-8").splitlines() if line.strip()]
        queries = json.loads((data / "demo_queries.json").read_text("utf-8"))

        explicit = model or os.environ.get("COLBRIDGE_MODEL", "").strip()
        name = model or default_model_name()
        encoder = ColBERTModel(name)
        try:
            with err.status(f"Loading {name} …"):
                encoder.load()
        except ModelLoadError as e:
            if explicit:
                raise
            err.print(f"[yellow]{name} is not available here ({_first_sentence(e)}); "
                      f"running on the offline stand-in {OFFLINE_MODEL} (lower quality).[/]",
                      highlight=False)
            encoder = ColBERTModel(OFFLINE_MODEL)
            with err.status(f"Loading {OFFLINE_MODEL} …"):
                encoder.load()

        with tempfile.TemporaryDirectory(prefix="colbridge-demo-") as folder:
            index = EmbeddedIndex(Path(folder) / "index", model=encoder)
            started = time.perf_counter()
            _add_with_progress(index, [d["text"] for d in corpus], [d["id"] for d in corpus],
                               [d.get("metadata") or {} for d in corpus])
            build_seconds = time.perf_counter() - started
            out.print(f"Indexed [bold]{len(corpus)}[/] passages with [bold]{encoder.name}[/] "
                      f"(backend {encoder.backend}) in "
                      f"{build_seconds:.1f} s ({index.stats()['token_vectors']:,} token vectors).\n")

            latencies, correct = [], 0
            table = Table(title="colbridge demo: ColBERT search over the sample corpus",
                          show_lines=True, expand=True)
            table.add_column("query", ratio=3)
            table.add_column("#", justify="right", width=2)
            table.add_column("id", no_wrap=True)
            table.add_column("score", justify="right", width=5)
            table.add_column("passage", ratio=4, no_wrap=True, overflow="ellipsis")
            for q in queries:
                started = time.perf_counter()
                hits = index.search(q["query"], k=k, filter=q.get("filter"))
                latencies.append((time.perf_counter() - started) * 1000)
                correct += bool(hits) and hits[0].id == q["expected_id"]
                label = q["query"] + (f"\nfilter: {json.dumps(q['filter'])}" if q.get("filter") else "")
                for rank, hit in enumerate(hits, start=1):
                    mark = " ✓" if hit.id == q["expected_id"] else ""
                    table.add_row(label if rank == 1 else "", str(rank), hit.id + mark,
                                  f"{hit.normalized_score:.3f}", _snippet(hit.text, 200))
            index.close()
        out.print(table)
        out.print(f"Top hit is the expected passage for [bold]{correct}/{len(queries)}[/] queries. "
                  f"Query latency (encode + search): median {statistics.median(latencies):.0f} ms, "
                  f"max {max(latencies):.0f} ms. Scores are normalised MaxSim in [0, 1].")


def _first_sentence(error: Exception) -> str:
    return str(error).split(". ")[0].rstrip(".")


def _add_with_progress(index: Any, texts: list[str], ids: list[str],
                       metadatas: list[dict[str, Any]], chunk: int = 64,
                       pool_factor: int = 1) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as progress:
        task = progress.add_task("Encoding and indexing", total=len(texts))
        for begin in range(0, len(texts), chunk):
            end = begin + chunk
            index.add(texts[begin:end], ids=ids[begin:end], metadatas=metadatas[begin:end],
                      pool_factor=pool_factor, show_progress=False)
            progress.advance(task, len(texts[begin:end]))


# -- index ------------------------------------------------------------------------------------
@app.command("index")
def index_command(
    paths: Annotated[list[Path], typer.Argument(help="Text/markdown files, folders of them, or JSONL "
                                                     "files ({'id', 'text', 'metadata'} per line).")],
    index: IndexOption,
    model: ModelOption = None,
    pool_factor: Annotated[int, typer.Option(help="Token pooling: 2 stores about half the vectors.")] = 1,
    long_documents: LongDocumentsOption = None,
) -> None:
    """Add documents to an index (created if the folder is missing); existing ids are replaced."""
    from .index import EmbeddedIndex
    from .ingest import read_records

    with _user_errors():
        if pool_factor < 1:
            raise InvalidInputError(f"--pool-factor must be at least 1, got {pool_factor}")
        records = list(read_records(paths))
        if not records:
            raise InvalidInputError("no documents found in the given paths")
        seen: set[str] = set()
        for record in records:
            if record.id in seen:
                raise InvalidInputError(f"the id {record.id!r} occurs twice in the input")
            seen.add(record.id)
        started = time.perf_counter()
        with EmbeddedIndex(index, model=model, long_documents=long_documents) as target:
            before = _count_or_zero(target)
            _add_with_progress(target, [r.text for r in records], [r.id for r in records],
                               [r.metadata for r in records], chunk=256,
                               pool_factor=pool_factor)
            target.flush()
            stats = target.stats()
        seconds = time.perf_counter() - started
        replaced = before + len(records) - stats["documents"]
        out.print(
            f"Indexed {len(records):,} documents ({replaced:,} replaced) into {index} in "
            f"{seconds:.1f} s ({len(records) / max(seconds, 1e-9):.1f} docs/s). The index holds "
            f"{stats['documents']:,} documents, {stats['token_vectors']:,} token vectors, "
            f"{stats['bytes_on_disk'] / 1e6:.1f} MB.",
            highlight=False,
        )


# -- search -----------------------------------------------------------------------------------
@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The query text.")],
    index: IndexOption,
    k: Annotated[int, typer.Option("-k", help="Number of hits.")] = 10,
    filter: Annotated[Optional[str], typer.Option(
        "--filter", "-f", help='Metadata filter as JSON, e.g. \'{"year": {"$gte": 2000}}\'.')] = None,
    mode: Annotated[Mode, typer.Option(
        help="colbert (MaxSim), bm25 (lexical) or hybrid (both, fused).")] = Mode.colbert,
    hybrid_weight: Annotated[float, typer.Option(
        help="Hybrid mode: share of the ColBERT score, 0 to 1.")] = DEFAULT_HYBRID_WEIGHT,
    model: ModelOption = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Mark where each hit matched (its highlights).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Search an index."""
    with _user_errors():
        spec = None
        if filter:
            try:
                spec = json.loads(filter)
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"--filter is not valid JSON: {e.msg}") from e
            except RecursionError:  # json gives up on very deep nesting this way
                raise InvalidInputError("--filter is nested too deeply to read") from None
        with _open_index(index, model) as target:
            load_seconds = None
            if mode != Mode.bm25:  # load first, so that the search time is the search alone
                started = time.perf_counter()
                target.model.load()
                load_seconds = time.perf_counter() - started
            started = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                hits = target.search(query, k=k, filter=spec, mode=mode.value,
                                     hybrid_weight=hybrid_weight, explain=explain)
            timing = f"search {(time.perf_counter() - started) * 1000:.0f} ms"
        if load_seconds is not None:
            timing += f", model loaded in {load_seconds:.1f} s"
        for warning in caught:  # e.g. a filter field that no document has
            err.print(f"[yellow]warning:[/] {warning.message}", highlight=False, soft_wrap=True)
        if as_json:
            print(json.dumps([{"id": h.id, "score": h.score, "normalized_score": h.normalized_score,
                               "text": h.text, "metadata": h.metadata,
                               **({"highlights": h.highlights, "passage": h.passage}
                                  if explain else {})} for h in hits],
                             ensure_ascii=False, indent=2))
            return
        table = Table(title=f"{len(hits)} hits for {query!r} ({mode.value}: {timing})")
        for column in ("#", "id", "score", "text", "metadata"):
            table.add_column(column, overflow="fold")
        for rank, hit in enumerate(hits, start=1):
            text = (_passage_label(hit.passage, out.is_terminal)
                    + _marked(hit.text, hit.highlights, out.is_terminal) if explain
                    else _snippet(hit.text))
            table.add_row(str(rank), hit.id, f"{hit.normalized_score:.3f}", text,
                          json.dumps(hit.metadata, ensure_ascii=False) if hit.metadata else "")
        out.print(table)


# -- eval -------------------------------------------------------------------------------------
@app.command("eval")
def eval_command(
    data_dir: Annotated[Path, typer.Argument(help="A BEIR folder: corpus.jsonl, queries.jsonl, "
                                                  "qrels/<split>.tsv.")],
    index: Annotated[Optional[Path], typer.Option(
        "--index", "-i", help="Index folder to build, or to reuse if it already holds the corpus "
                              "(default: a temporary folder).")] = None,
    model: ModelOption = None,
    split: Annotated[str, typer.Option(help="Which qrels file to use.")] = "test",
    limit_docs: Annotated[Optional[int], typer.Option(
        help="Index at most this many documents (judged ones first).")] = None,
    limit_queries: Annotated[Optional[int], typer.Option(help="Run at most this many queries.")] = None,
    plot: Annotated[Optional[Path], typer.Option(
        help="Save a PNG of agreement with exact MaxSim against latency as the candidate "
             "breadth varies.")] = None,
    mode: Annotated[EvalMode, typer.Option(
        help="Search mode(s) to compare side by side (ColBERT is always measured in detail).")
    ] = EvalMode.all,
    document_length: Annotated[Optional[int], typer.Option(
        help="Tokens per encoded document or passage (default: the model's).")] = None,
    long_documents: LongDocumentsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Measure quality, latency, build cost and size on a BEIR-format collection."""
    from .evaluation import build_index, evaluate, load_beir, plot_sweep, sweep
    from .index import EmbeddedIndex

    with _user_errors():
        data = load_beir(data_dir, split, limit_docs=limit_docs, limit_queries=limit_queries)
        with contextlib.ExitStack() as stack:
            folder = index or Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="colbridge-eval-"))) / "index"
            encoder: Any = model
            if document_length is not None:
                from .models import ColBERTModel

                if document_length < 8:
                    raise InvalidInputError(
                        f"--document-length must be at least 8, got {document_length}")
                encoder = ColBERTModel(model, document_length=document_length)
            target = stack.enter_context(EmbeddedIndex(folder, model=encoder,
                                                       long_documents=long_documents))
            build = None
            if _count_or_zero(target) == 0:
                build = _build_with_progress(target, data, build_index)
            elif target.count() != len(data.doc_ids):
                raise InvalidInputError(
                    f"{folder} holds {target.count()} documents, the collection "
                    f"{len(data.doc_ids)}: pass an empty or matching --index")
            target.model.load()
            modes = ("colbert", "bm25", "hybrid") if mode == EvalMode.all else (mode.value,)
            report = evaluate(target, data, build=build, modes=modes)
            if plot:
                report["sweep"] = sweep(target, data)
                plot_sweep(report["sweep"], plot, f"{data.name}: {len(data.doc_ids)} docs, "
                           f"{len(data.queries)} queries, {target.model.name}")
        if as_json:
            print(json.dumps(report, indent=2))
            return
        _print_report(report, plot)


def _build_with_progress(target: Any, data: Any, build_index: Any) -> dict[str, float]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as progress:
        task = progress.add_task("Encoding and indexing", total=len(data.doc_ids))
        return build_index(target, data, progress=lambda n: progress.advance(task, n))


def _print_report(report: dict[str, Any], plot: Path | None) -> None:
    table = Table(title=f"colbridge eval: {report['dataset']} ({report['documents']:,} documents, "
                        f"{report['queries']:,} queries, {report['model']}, backend "
                        f"{report.get('backend', '?')}, document length "
                        f"{report.get('document_length', '?')}, long documents "
                        f"{report.get('long_documents', '?')})", show_header=False)
    q, lat, size = report["quality"], report["latency_ms"], report["size"]
    rows = [
        ("nDCG@10", f"{q['ndcg@10']:.4f} (exact MaxSim {q['exact_ndcg@10']:.4f})"),
        ("recall@10 / @100", f"{q['recall@10']:.4f} / {q['recall@100']:.4f}"),
        ("MRR@10", f"{q['mrr@10']:.4f}"),
        ("agreement with exact top-10", f"{q['agreement@10']:.4f}"),
        ("query encoding p50 / p95", f"{lat['encode_p50']:.1f} / {lat['encode_p95']:.1f} ms"),
        ("search p50 / p95", f"{lat['search_p50']:.1f} / {lat['search_p95']:.1f} ms "
                             f"(exact brute force p50 {lat['exact_search_p50']:.1f} ms)"),
    ]
    if report["build_s"]:
        b = report["build_s"]
        rows.append(("build: encoding / indexing", f"{b['encode_s']:.1f} s / {b['index_s']:.1f} s"))
    rows += [
        ("index size", f"{size['bytes'] / 1e6:.1f} MB ({size['bytes_per_document']:.0f} B/document, "
                       f"{size['bytes_per_token_vector']:.0f} B/token vector; lexical part "
                       f"{size.get('lexical_bytes', 0) / 1e6:.1f} MB)"),
        ("peak memory", f"{report['peak_rss_mb']:.0f} MB"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
    if report.get("modes"):
        modes = Table(title="search modes (search latency excludes query encoding)")
        for column in ("mode", "nDCG@10", "recall@10", "recall@100", "MRR@10", "search p50 / p95"):
            modes.add_column(column, justify="left" if column == "mode" else "right")
        for name, m in report["modes"].items():
            modes.add_row(name, f"{m['ndcg@10']:.4f}", f"{m['recall@10']:.4f}",
                          f"{m['recall@100']:.4f}", f"{m['mrr@10']:.4f}",
                          f"{m['search_p50_ms']:.1f} / {m['search_p95_ms']:.1f} ms")
        out.print(modes)
    if plot:
        out.print(f"Plot saved to {plot}.")


# -- check ------------------------------------------------------------------------------------
@app.command()
def check(
    index: IndexOption,
    repair: Annotated[bool, typer.Option(
        "--repair", help="Rebuild a damaged graph from the stored vectors and delete leftovers.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check an index folder's consistency (exit code 0: clean, 1: problems)."""
    from dataclasses import asdict

    from .check import check_index

    with _user_errors():
        _require_index(index)
        report = check_index(index, repair=repair)
    if as_json:
        print(json.dumps({**asdict(report), "path": str(report.path), "ok": report.ok}, indent=2,
                         ensure_ascii=False))
    else:
        for line in report.repaired:
            out.print(f"[green]repaired:[/] {line}", highlight=False)
        for line in report.notes:
            out.print(f"note: {line}", highlight=False)
        for line in report.problems:
            err.print(f"[bold red]problem:[/] {line}", highlight=False, soft_wrap=True)
        if report.ok:
            out.print(f"{index}: ok ({report.documents:,} documents, {report.vector_rows:,} token "
                      "vectors)", highlight=False)
        elif report.repairable:
            err.print("Run `colbridge check --repair` to fix these (it rebuilds caches and drops "
                      "unusable passage layouts; no document is lost).", highlight=False)
        elif not repair:
            err.print("`--repair` cannot fix this: restore a backup, or save the readable "
                      f"documents into a new index with `colbridge recover --from {index} --to "
                      "NEW_FOLDER`.", highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


# -- info -------------------------------------------------------------------------------------
@app.command()
def info(index: IndexOption, as_json: JsonOption = False) -> None:
    """Describe an index: model, sizes, settings."""
    from .index.manifest import Manifest

    with _user_errors():
        _require_index(index)
        manifest = Manifest.read(index)
        from .index import EmbeddedIndex
        from .models import ColBERTModel

        # Reading the index needs no encoder: name a model object without loading its weights.
        target = EmbeddedIndex(index, model=ColBERTModel(manifest.model.name), create=False)
        with target:
            stats = target.stats()
        if as_json:
            print(json.dumps(stats, indent=2))
            return
        table = Table(title=f"colbridge index {index}", show_header=False)
        for key, value in stats.items():
            if key != "files":
                table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
        out.print(table)


@app.command()
def compact(
    index: IndexOption,
    codec: Annotated[Optional[str], typer.Option(
        help="Store the token vectors with this codec from now on: int8 (one byte per value) "
             "or float16 (exact). Converts an older float16 folder with --codec int8.")] = None,
    retrain: Annotated[bool, typer.Option(
        help="Fit the int8 codec's range again to the stored vectors.")] = False,
) -> None:
    """Rewrite an index's vectors and graph without deleted rows (no re-encoding)."""
    from .index import EmbeddedIndex
    from .index.manifest import Manifest
    from .models import ColBERTModel

    with _user_errors():
        _require_index(index)
        started = time.perf_counter()
        name = Manifest.read(index).model.name  # compaction needs no encoder weights
        with EmbeddedIndex(index, model=ColBERTModel(name), create=False) as target:
            target.compact(codec=codec, retrain=retrain)
            stats = target.stats()
        out.print(f"Compacted {index}: {stats['token_vectors']:,} token vectors stored as "
                  f"{stats['codec']}, {stats['bytes_on_disk'] / 1e6:.1f} MB on disk, in "
                  f"{time.perf_counter() - started:.1f} s.", highlight=False)


# -- backup and recover -------------------------------------------------------------------------
@app.command()
def backup(
    destination: Annotated[Path, typer.Argument(help="A new folder for the copy.")],
    index: IndexOption,
) -> None:
    """Copy an index safely while it is in use (writers wait; readers go on)."""
    from .index import EmbeddedIndex
    from .index.manifest import Manifest
    from .models import ColBERTModel

    with _user_errors():
        started = time.perf_counter()
        name = Manifest.read(index).model.name  # the copy needs no encoder weights
        with EmbeddedIndex(index, model=ColBERTModel(name), create=False) as source:
            copy = source.backup(destination)
            documents = source.count()
        size = sum(f.stat().st_size for f in copy.rglob("*") if f.is_file())
        out.print(f"Backed up {documents:,} documents ({size / 1e6:.1f} MB) from {index} to "
                  f"{copy} in {time.perf_counter() - started:.1f} s.", highlight=False)


@app.command()
def recover(
    source: Annotated[Path, typer.Option("--from", help="The damaged index folder (only read).")],
    destination: Annotated[Path, typer.Option(
        "--to", help="A new folder for the recovered index.")],
) -> None:
    """Save a damaged index's readable documents into a new index (stored vectors, no encoding).

    For damage that `check --repair` cannot fix, when there is no backup to restore.
    """
    from .backup import recover_index

    with _user_errors():
        result = recover_index(source, destination)
    out.print(f"Recovered {result.recovered:,} documents into {result.path}.", highlight=False)
    for line in result.lost:
        err.print(f"[yellow]lost:[/] {line}", highlight=False)
    if result.lost_ids:
        shown = ", ".join(result.lost_ids[:10])
        more = f" and {len(result.lost_ids) - 10:,} more" if len(result.lost_ids) > 10 else ""
        err.print(f"lost ids: {shown}{more}", highlight=False, soft_wrap=True)
    if result.lost:
        err.print(f"Check the result with `colbridge check --index {result.path}`; re-add the "
                  "lost documents from their sources.", highlight=False)


# -- migrate ----------------------------------------------------------------------------------
@app.command("migrate")
def migrate_command(
    source: Annotated[Path, typer.Option("--from", help="The embedded index folder to copy.")],
    target: Annotated[str, typer.Option(
        "--to", help="qdrant://HOST:PORT/COLLECTION, qdrants://HOST:PORT/COLLECTION (HTTPS) or "
                     "qdrant+local:///DIR/COLLECTION (Qdrant's local mode in DIR).")],
    api_key: Annotated[Optional[str], typer.Option(
        envvar="QDRANT_API_KEY", help="API key of the Qdrant server.")] = None,
    batch_size: Annotated[int, typer.Option(help="Documents per request.")] = 256,
    long_documents: Annotated[Optional[LongDocuments], typer.Option(
        "--long-documents", help="What a new collection does with long texts it is given "
        "later (default: the source's setting). Passages are copied as passages.")] = None,
    storage: Annotated[Optional[str], typer.Option(
        "--storage", help="How a new collection stores token vectors: turbo8 (default) or "
        "float16 (for a Qdrant server without TurboQuant storage).")] = None,
) -> None:
    """Copy an embedded index into a Qdrant collection (its stored vectors: no re-encoding).

    Ids the collection already holds are skipped, so an interrupted run resumes when repeated.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from .index.qdrant import import_qdrant
    from .migrate import migrate_index

    with _user_errors():
        try:
            import_qdrant()
        except ImportError as e:
            _fail(e)
        started = time.perf_counter()
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err, transient=True) as progress:
            task = progress.add_task("Copying to Qdrant", total=None)
            result = migrate_index(
                source, target, api_key=api_key, batch_size=batch_size,
                long_documents=long_documents, storage=storage,
                progress=lambda done, total: progress.update(task, completed=done, total=total))
        out.print(
            f"Copied {result.copied:,} documents to {target} in "
            f"{time.perf_counter() - started:.1f} s ({result.skipped:,} of {result.total:,} were "
            "there already).",
            highlight=False,
        )


def main() -> None:  # pragma: no cover - console entry point
    app()
