"""The ONNX Runtime backend: a PyLate model's transformer and projection exported to ONNX.

The export runs once per model and recipe, with PyTorch and PyLate, and lands in
``<cache dir>/exports/<folder name>-<recipe>-<key>/``, where ``key`` hashes the model folder's
files and the exporter's settings: changed weights or a new recipe give a new folder, and a
folder is renamed into place only when complete, so a crash never leaves a half-written export
behind. Encoding afterwards needs only ``onnxruntime``, ``tokenizers`` and NumPy.

What PyLate decides stays PyLate's: the export records the tokenizer exactly as PyLate set it
up (its prefix tokens included), the query and document prefix ids, the ``[MASK]`` padding of
queries, the skiplist and the lengths, and the runtime applies them the way
``pylate.models.ColBERT.tokenize`` and ``encode`` do. The exported graph is checked against
PyTorch on batches of mixed lengths before it is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._linalg import l2_normalize
from ..config import cache_dir
from ..errors import ModelLoadError

EXPORT_VERSION = 1
"""Bumped whenever the export recipe changes, so older exports are rebuilt."""

_SPEC = "encoder.json"
_GRAPH = "model.onnx"
_TOKENIZER = "tokenizer.json"
_TORCH_EPS = 1e-12  # the rows are normalised as torch.nn.functional.normalize does
_ACTIVATIONS = ("Gelu", "BiasGelu", "FastGelu", "QuickGelu")
# Mean token-vector cosine with PyTorch that an export must reach on the probe batches.
_MIN_COSINE = {False: 0.9999, True: 0.99}
_PROBES = (
    "ColBERT keeps one vector per token.",
    "a",
    "Late interaction scores every query token against every document token, takes the best "
    "match of each and sums them: it is slower than one vector per text and much better at "
    "finding the passage that answers a precise question, numbers and names included (42, "
    "Paris, BRCA1).",
    "What does MaxSim compute?",
)


@dataclass(frozen=True)
class _Spec:
    """How PyLate tokenizes and filters for this model, as recorded at export time."""

    dimension: int
    query_length: int
    document_length: int
    query_prefix_id: int | None
    document_prefix_id: int | None
    pad_id: int
    truncation_side: str
    do_query_expansion: bool
    attend_to_expansion_tokens: bool
    do_lower_case: bool
    prompt: str
    skiplist: tuple[int, ...]
    int8: bool
    cosine: float


class OnnxRuntime:
    """A loaded export: tokenizer, ONNX Runtime session and PyLate's settings.

    Use :func:`open_runtime`; the encoder (:class:`~colbridge.ColBERTModel`) serialises calls.
    """

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        raw = json.loads((folder / _SPEC).read_text("utf-8"))
        raw["skiplist"] = tuple(raw["skiplist"])
        self.spec = _Spec(**raw)
        self.folder = folder
        self._tokenizer = Tokenizer.from_file(str(folder / _TOKENIZER))
        self._tokenizer.no_padding()
        self._skiplist = np.array(self.spec.skiplist, dtype=np.int64)
        self._start(folder, threads or available_cores())

    def _start(self, folder: Path, threads: int) -> None:
        """Load the graph into the runtime; subclasses for other runtimes replace this and
        :meth:`_run`, and keep the tokenization and encoding."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle worker threads would otherwise spin for a while after each call, taking the
        # cores from the index's own threads (HNSW search, scoring) that run right after.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(folder / _GRAPH), options, providers=["CPUExecutionProvider"])

    # -- tokenization, as pylate.models.ColBERT.tokenize ------------------------------------
    def tokenize(self, texts: list[str], *, is_query: bool, length: int
                 ) -> tuple[list[list[int]], int]:
        """Token ids of each text (prefix inserted, truncated, not padded) and how many texts
        were truncated."""
        spec = self.spec
        prefix = spec.query_prefix_id if is_query else spec.document_prefix_id
        budget = length - 1 if prefix is not None else length
        cleaned = [(spec.prompt + t).strip() for t in texts]
        if spec.do_lower_case:
            cleaned = [t.lower() for t in cleaned]
        self._tokenizer.enable_truncation(budget, strategy="longest_first",
                                          direction=spec.truncation_side)
        encodings = self._tokenizer.encode_batch(cleaned, add_special_tokens=True)
        truncated = sum(bool(e.overflowing) for e in encodings)
        ids = [e.ids for e in encodings]
        if prefix is not None:
            ids = [[*row[:1], prefix, *row[1:]] for row in ids]
        return ids, truncated

    def document_token_spans(self, texts: list[str], *, length: int
                             ) -> list[list[tuple[int, int] | None]]:
        """The character span of each stored vector of each document (see
        :meth:`colbridge.models.Encoder.document_token_spans`)."""
        from ._spans import stored_token_spans

        spec = self.spec
        budget = length - 1 if spec.document_prefix_id is not None else length

        def tokenize(ready: list[str]) -> list[tuple[list[int], list[tuple[int, int]], list[int]]]:
            self._tokenizer.enable_truncation(budget, strategy="longest_first",
                                              direction=spec.truncation_side)
            return [(e.ids, e.offsets, e.special_tokens_mask)
                    for e in self._tokenizer.encode_batch(ready, add_special_tokens=True)]

        return stored_token_spans(texts, spec.prompt, spec.do_lower_case, tokenize,
                                  spec.document_prefix_id, set(spec.skiplist))

    def whole_token_offsets(self, texts: list[str]) -> list[list[tuple[int, int]] | None]:
        """Each text's token offsets, untruncated (see
        :meth:`colbridge.models.Encoder.document_token_offsets`)."""
        from ._spans import whole_token_offsets

        def tokenize(ready: list[str]) -> list[list[tuple[int, int]]]:
            self._tokenizer.no_truncation()
            return [list(e.offsets)
                    for e in self._tokenizer.encode_batch(ready, add_special_tokens=False)]

        return whole_token_offsets(texts, self.spec.prompt, self.spec.do_lower_case, tokenize)

    @property
    def document_extra_tokens(self) -> int:
        """Tokens an encoded document holds besides its text's: [CLS], [SEP], the marker."""
        return 2 + (self.spec.document_prefix_id is not None)

    def _pad(self, rows: list[list[int]], width: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((len(rows), width), self.spec.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def _batch(self, batch_size: int) -> int:
        # Dynamic int8 quantizes activations with one scale per call: in a batch, a text's
        # vectors would depend on its neighbours. One text per call keeps them its own, and
        # measured no slower on CPU than batches of 32 (no padding at all).
        return 1 if self.spec.int8 else batch_size

    # -- encoding, as pylate.models.ColBERT.encode ------------------------------------------
    def encode_queries(self, texts: list[str], *, length: int, batch_size: int
                       ) -> list[np.ndarray]:
        """``(length, dim)`` vectors per query (``(n_tokens, dim)`` without query expansion)."""
        rows, _ = self.tokenize(texts, is_query=True, length=length)
        batch_size = self._batch(batch_size)
        expand = self.spec.do_query_expansion
        out: list[np.ndarray] = []
        for begin in range(0, len(rows), batch_size):
            chunk = rows[begin:begin + batch_size]
            width = length if expand else max(map(len, chunk))
            # Query expansion: PyLate pads every query to query_length with its pad token
            # ([MASK]), masked from attention unless attend_to_expansion_tokens.
            ids, mask = self._pad(chunk, width)
            if expand and self.spec.attend_to_expansion_tokens:
                mask[:] = 1
            vectors = self._run(ids, mask)
            for i in range(len(chunk)):
                keep = slice(None) if expand else mask[i].astype(bool)
                out.append(l2_normalize(vectors[i][keep], eps=_TORCH_EPS))
        return out

    def encode_documents(self, texts: list[str], *, length: int, batch_size: int
                         ) -> tuple[list[np.ndarray], int]:
        """Vectors of the kept tokens of each document, and how many were truncated.

        Documents are batched by token count (longest first), so a batch pads to nearly its
        own length instead of the longest document of an arbitrary batch."""
        rows, truncated = self.tokenize(texts, is_query=False, length=length)
        batch_size = self._batch(batch_size)
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        out: list[np.ndarray | None] = [None] * len(rows)
        for begin in range(0, len(order), batch_size):
            chunk = order[begin:begin + batch_size]
            ids, mask = self._pad([rows[i] for i in chunk], len(rows[chunk[0]]))
            vectors = self._run(ids, mask)
            keep = mask.astype(bool) & ~np.isin(ids, self._skiplist)
            for j, i in enumerate(chunk):
                out[i] = l2_normalize(vectors[j][keep[j]], eps=_TORCH_EPS)
        return out, truncated  # type: ignore[return-value]


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


# -- the export cache ------------------------------------------------------------------------
_export_lock = threading.Lock()


def open_runtime(source: Path, *, int8: bool) -> OnnxRuntime:
    """The export of the PyLate model folder ``source``, built first if missing or stale."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ModelLoadError(
            'the onnx backends need onnxruntime: pip install "colbridge[onnx]", or use '
            'backend="torch"') from e
    return OnnxRuntime(ensure_export(source, int8=int8))


def ensure_export(source: Path, *, int8: bool) -> Path:
    """The folder of the export of ``source`` with this recipe, built first if missing or
    stale (building needs torch, pylate, onnx and onnxruntime; reading it needs neither)."""
    folder = export_folder(source, int8=int8)
    if not (folder / _SPEC).exists():
        from filelock import FileLock

        folder.parent.mkdir(parents=True, exist_ok=True)
        # One export at a time, in this process and across processes sharing the cache.
        with _export_lock, FileLock(folder.parent / f".{folder.name}.lock"):
            if not (folder / _SPEC).exists():
                _export(source, folder, int8=int8)
    return folder


def export_folder(source: Path, *, int8: bool) -> Path:
    """Where the export of ``source`` with this recipe lives (it may not exist yet)."""
    recipe = "onnx-int8" if int8 else "onnx"
    digest = hashlib.blake2b(digest_size=10)
    digest.update(json.dumps(_settings(int8), sort_keys=True).encode())
    digest.update(_content_digest(source).encode())
    return cache_dir() / "exports" / f"{source.name}-{recipe}-{digest.hexdigest()}"


def _content_digest(source: Path) -> str:
    """Hash of the files that make the model's vectors (not its model card or hidden files).

    Reading the weights takes most of a second, which every new process would pay before its
    first query; so the digest is kept in a stamp named after the files' paths, sizes and
    modification times, and read from there while none of them changes."""
    files = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source).as_posix()
        if not (relative.startswith(".") or relative == "README.md"):
            files.append((relative, path))
    listing = [(r, p.stat().st_size, p.stat().st_mtime_ns) for r, p in files]
    stamp_key = hashlib.blake2b(json.dumps([str(source.resolve()), listing]).encode(),
                                digest_size=16).hexdigest()
    stamp = cache_dir() / "exports" / ".stamps" / f"{stamp_key}.txt"
    try:
        return stamp.read_text("ascii").strip()
    except OSError:
        pass
    digest = hashlib.blake2b(digest_size=16)
    for relative, path in files:
        digest.update(relative.encode() + b"\0")
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
    found = digest.hexdigest()
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        scratch = stamp.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(found, "ascii")
        os.replace(scratch, stamp)
    except OSError:  # a read-only cache still works, it only hashes every time
        pass
    return found


def _settings(int8: bool) -> dict[str, Any]:
    return {"version": EXPORT_VERSION, "opset": 17, "attention": "eager", "int8": int8,
            "int8_scheme": "dynamic, per-channel weights, MatMul only, fp32 FFN output and head"}


def _export(source: Path, target: Path, *, int8: bool) -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401  (its optimizer fuses the graph, its session checks it)
        from pylate.models import ColBERT
    except ImportError as e:
        raise ModelLoadError(
            f"exporting to ONNX needs torch, pylate, onnx and onnxruntime: {e}") from e
    from .colbert import _quiet_transformers

    _quiet_transformers()
    try:
        model = ColBERT(model_name_or_path=str(source), device="cpu")
    except Exception as e:
        raise ModelLoadError(
            f"could not load {source} to export it: {type(e).__name__}: {e}") from e
    model.eval()
    if model.tokenizer.padding_side != "right":
        raise ModelLoadError(f"{source} pads on the left; the onnx backends handle right "
                             "padding only: use backend='torch'")
    transformer = model[0].auto_model
    # sdpa attention traces shape-dependent branches into the graph (wrong vectors on
    # batches of mixed lengths); the eager path traces into plain, shape-free operators.
    if hasattr(transformer, "set_attn_implementation"):
        transformer.set_attn_implementation("eager")
    else:  # pragma: no cover - older transformers
        transformer.config._attn_implementation = "eager"

    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    try:
        graph = scratch / _GRAPH
        _trace(model, graph)
        _optimize(graph, transformer.config)
        if int8:
            _quantize(graph)
        model.tokenizer.backend_tokenizer.save(str(scratch / _TOKENIZER))
        spec = _spec_of(model, int8=int8)
        spec["cosine"] = _verify(model, scratch, spec, int8=int8)
        (scratch / _SPEC).write_text(json.dumps(spec, indent=1), "utf-8")
        if target.exists():  # an export that never completed (its spec is written last)
            shutil.rmtree(target)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _trace(model: Any, graph: Path) -> None:
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = model[0]
            self.head = torch.nn.ModuleList(list(model)[1:])

        def forward(self, input_ids, attention_mask):
            features = self.transformer({"input_ids": input_ids, "attention_mask": attention_mask})
            for module in self.head:
                features = module(features)
            return features["token_embeddings"]

    # An example with padding, so the masking path is the one traced.
    example = model.tokenize(list(_PROBES[:2]), is_query=False)
    axes = {0: "batch", 1: "tokens"}
    # The tracer warns about every Python-level branch it meets; the check against PyTorch
    # after the export (see _verify) is what tells whether the graph is right.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Wrapper().eval(), (example["input_ids"], example["attention_mask"]), str(graph),
            input_names=["input_ids", "attention_mask"], output_names=["token_embeddings"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_embeddings": axes},
            opset_version=17, dynamo=False)


def _optimize(graph: Path, config: Any) -> None:
    """Fuse attention, GELU and layer norms (ONNX Runtime's transformer optimizer) for the
    encoder families it knows; others keep the plain graph."""
    kinds = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert",
             "electra": "bert"}
    kind = kinds.get(getattr(config, "model_type", ""))
    if kind is None:
        return
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(graph), model_type=kind, num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size, opt_level=1, use_gpu=False)
    optimized.save_model_to_file(str(graph))


def _quantize(graph: Path) -> None:
    """Dynamic int8: weights per output channel, activations per call.

    Kept in float32, where int8 cost too much accuracy (docs/benchmarks.md has the measured
    recipes): the fused attention, the FFN down-projections (their GELU inputs have outliers
    that one int8 scale per tensor cannot hold) and the ColBERT projection head."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = onnx.load(str(graph), load_external_data=False).graph.node
    producers = {out: node for node in nodes for out in node.output}
    keep_float = [
        node.name for node in nodes if node.op_type == "MatMul" and (
            not node.name.startswith("/transformer/")
            or getattr(producers.get(node.input[0]), "op_type", "") in _ACTIVATIONS)
    ]
    quantized = graph.with_suffix(".int8.onnx")
    quantize_dynamic(str(graph), str(quantized), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"], nodes_to_exclude=keep_float,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    os.replace(quantized, graph)


def _spec_of(model: Any, *, int8: bool) -> dict[str, Any]:
    tokenizer = model.tokenizer
    skip = {int(i) for i in model.skiplist if i is not None}
    return {
        "dimension": int(model.get_sentence_embedding_dimension()),
        "query_length": int(model.query_length),
        "document_length": int(model.document_length),
        "query_prefix_id": model.query_prefix_id,
        "document_prefix_id": model.document_prefix_id,
        "pad_id": int(tokenizer.pad_token_id),
        "truncation_side": str(tokenizer.truncation_side),
        "do_query_expansion": bool(model.do_query_expansion),
        "attend_to_expansion_tokens": bool(model.attend_to_expansion_tokens),
        "do_lower_case": bool(getattr(model[0], "do_lower_case", False)),
        "prompt": model.prompts.get(model.default_prompt_name) or "",
        "skiplist": sorted(skip),
        "int8": int8,
        "cosine": 0.0,
    }


def _verify(model: Any, scratch: Path, spec: dict[str, Any], *, int8: bool) -> float:
    """Mean token cosine between the export and PyTorch on mixed-length batches of queries and
    documents; raises when it is below the recipe's bar."""
    import torch

    (scratch / _SPEC).write_text(json.dumps(spec), "utf-8")
    runtime = OnnxRuntime(scratch)
    cosines = []
    texts = list(_PROBES)
    with torch.inference_mode():
        for is_query in (True, False):
            reference = model.encode(texts, is_query=is_query, batch_size=len(texts))
            if is_query:
                ours = runtime.encode_queries(texts, length=spec["query_length"], batch_size=4)
            else:
                ours, _ = runtime.encode_documents(texts, length=spec["document_length"],
                                                   batch_size=4)
            for ref, got in zip(reference, ours, strict=True):
                ref = np.asarray(ref, dtype=np.float32)
                if ref.shape != got.shape:
                    raise ModelLoadError(
                        f"the ONNX export of {spec} keeps {got.shape} token vectors where PyTorch "
                        f"keeps {ref.shape}: not exporting it")
                cosines.append((ref * got).sum(axis=1))
    cosine = float(np.concatenate(cosines).mean())
    if cosine < _MIN_COSINE[int8]:
        raise ModelLoadError(
            f"the ONNX export ({'int8' if int8 else 'float32'}) agrees with PyTorch only to a mean "
            f"token cosine of {cosine:.4f} (needs {_MIN_COSINE[int8]}): use backend='torch'")
    return cosine
