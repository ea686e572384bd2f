"""Scoring kernels run by ONNX Runtime: float16 rows or uint8 codes widened and multiplied at once,
and uint8 codes multiplied as integers for a coarse first pass.

The graphs ship as files in ``colbridge/data/kernels`` so that scoring needs only
``onnxruntime`` (importing the ``onnx`` package costs seconds, which a search must not pay);
:func:`build` is how they were made, and a test checks the files still match it.
"""

from __future__ import annotations

import threading
from importlib import resources
from typing import Any

import numpy as np

GROUP = "maxsim_group"
"""``block (n, w, dim) float16, query_t (dim, q) float32 → scores (n,)``: per document, the
sum over query tokens of the best similarity among its ``w`` rows."""

GROUP_CODES = "maxsim_group_codes"
"""Two graphs in one (one session, so one thread pool and one memory arena: a second session
measured 3 MB more resident memory), each run alone by asking for its output:

* ``block (n, w, dim) float32, query_t (dim, q) float32 → scores (n,)``: :data:`GROUP` over
  8-bit codes widened to float32 (by NumPy: ONNX Runtime's Cast from uint8 measured slower
  than its Cast from float16); with ``query_t`` the query scaled by the codec's per-dimension
  step, the scores are MaxSim less the constant ``sum(query @ offset)`` (see
  ``index.vectors_int8``).
* ``codes (m, v, dim) uint8, query (dim, q) int8, step (q,) float32 → coarse (m,)``: the same
  with the scaled query rounded to 8 bits per token (:func:`coarse_query`), the codes
  multiplied as integers (``MatMulInteger``: VNNI/AMX on x86, several times the float path's
  speed) and only each query token's best dot product widened. The 8-bit query moves scores a
  little (docs/benchmarks.md, "A coarse integer pass"), so they only choose which candidates
  the float path scores again.

The path not asked for is fed a one-row block and costs nothing."""

SIMILARITIES = "similarities"
"""``rows (t, dim) float16, query (q, dim) float32 → (q, t) float32``: ``query @ rows.T``."""

_sessions: dict[str, Any] = {}
_lock = threading.Lock()


def session(name: str) -> Any:
    """The process-wide ONNX Runtime session of a kernel (``run`` is thread-safe)."""
    found = _sessions.get(name)
    if found is None:
        with _lock:
            found = _sessions.get(name)
            if found is None:
                import onnxruntime as ort

                from .models.onnx import available_cores

                options = ort.SessionOptions()
                options.intra_op_num_threads = available_cores()
                options.inter_op_num_threads = 1
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                graph = (resources.files("colbridge") / "data" / "kernels" / f"{name}.onnx")
                found = ort.InferenceSession(graph.read_bytes(), options,
                                             providers=["CPUExecutionProvider"])
                _sessions[name] = found
    return found


def maxsim_group(block: np.ndarray, query_t: np.ndarray) -> np.ndarray:
    """Scores of a ``(n, w, dim)`` float16 block of padded documents against ``query_t``."""
    return session(GROUP).run(None, {"block": block, "query_t": query_t})[0]


def maxsim_group_codes(block: np.ndarray, query_t: np.ndarray) -> np.ndarray:
    """Scores of a ``(n, w, dim)`` uint8 block of padded documents' codes against ``query_t``."""
    wide = block.astype(np.float32)
    dim, tokens = query_t.shape
    return session(GROUP_CODES).run(["scores"], {
        "block": wide, "query_t": query_t, "codes": np.zeros((1, 1, dim), np.uint8),
        "query": np.zeros((dim, tokens), np.int8), "step": np.ones(tokens, np.float32)})[0]


def maxsim_group_codes_coarse(block: np.ndarray, query: tuple[np.ndarray, np.ndarray]
                               ) -> np.ndarray:
    """Coarse scores of a ``(n, w, dim)`` uint8 block of codes against a query given by
    :func:`coarse_query`."""
    rounded, step = query
    dim, tokens = rounded.shape
    return session(GROUP_CODES).run(["coarse"], {
        "codes": block, "query": rounded, "step": step,
        "block": np.zeros((1, 1, dim), np.float32),
        "query_t": np.zeros((dim, tokens), np.float32)})[0]


MAX_COARSE_DIMENSION = 65_536
"""The widest codes :data:`GROUP_CODES`'s coarse path scores without overflowing its int32 dots
(255 · 127 · dim < 2**31)."""


def coarse_query(query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ``(q, dim)`` float query as ``(rounded, step)`` for :data:`GROUP_CODES`'s coarse path:
    ``query[t] ≈ step[t] * rounded[:, t]``, ``rounded`` ``(dim, q)`` int8 in [-127, 127],
    within ``step[t] / 2``."""
    query = np.asarray(query, dtype=np.float32)
    largest = np.abs(query).max(axis=1)
    step = (np.where(largest > 0, largest, 1.0) / 127).astype(np.float32)
    rounded = np.clip(np.rint(query / step[:, None]), -127, 127).astype(np.int8)
    return np.ascontiguousarray(rounded.T), step


def similarities(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``query @ rows.T`` in float32 for float16 ``rows``."""
    return session(SIMILARITIES).run(None, {"rows": rows, "query": query})[0]


def build() -> dict[str, bytes]:
    """Serialise every graph (needs the ``onnx`` package)."""
    from onnx import TensorProto, helper

    def model(graph: Any) -> bytes:
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                  producer_name="colbridge")
        proto.ir_version = 8
        return proto.SerializeToString(deterministic=True)

    def group(name: str, block_type: int) -> Any:
        widen = ([helper.make_node("Cast", ["block"], ["wide"], to=TensorProto.FLOAT)]
                 if block_type != TensorProto.FLOAT else [])
        return helper.make_graph(
            [*widen,
             helper.make_node("MatMul", ["wide" if widen else "block", "query_t"], ["sims"]),
             helper.make_node("ReduceMax", ["sims"], ["best"], axes=[1], keepdims=0),
             helper.make_node("ReduceSum", ["best", "last_axis"], ["scores"], keepdims=0)],
            name,
            [helper.make_tensor_value_info("block", block_type, ["n", "w", "dim"]),
             helper.make_tensor_value_info("query_t", TensorProto.FLOAT, ["dim", "q"])],
            [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n"])],
            initializer=[helper.make_tensor("last_axis", TensorProto.INT64, [1], [1])])

    codes = group(GROUP_CODES, TensorProto.FLOAT)
    codes.node.extend([
        helper.make_node("MatMulInteger", ["codes", "query"], ["dots"]),
        helper.make_node("ReduceMax", ["dots"], ["dots_best"], axes=[1], keepdims=0),
        helper.make_node("Cast", ["dots_best"], ["dots_wide"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["dots_wide", "step"], ["dots_scaled"]),
        helper.make_node("ReduceSum", ["dots_scaled", "last_axis"], ["coarse"], keepdims=0)])
    codes.input.extend([
        helper.make_tensor_value_info("codes", TensorProto.UINT8, ["m", "v", "dim"]),
        helper.make_tensor_value_info("query", TensorProto.INT8, ["dim", "q"]),
        helper.make_tensor_value_info("step", TensorProto.FLOAT, ["q"])])
    codes.output.append(helper.make_tensor_value_info("coarse", TensorProto.FLOAT, ["m"]))

    sims = helper.make_graph(
        [helper.make_node("Cast", ["rows"], ["wide"], to=TensorProto.FLOAT),
         helper.make_node("Gemm", ["query", "wide"], ["out"], transB=1)],
        SIMILARITIES,
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT16, ["t", "dim"]),
         helper.make_tensor_value_info("query", TensorProto.FLOAT, ["q", "dim"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["q", "t"])])
    return {GROUP: model(group(GROUP, TensorProto.FLOAT16)),
            GROUP_CODES: model(codes),
            SIMILARITIES: model(sims)}
