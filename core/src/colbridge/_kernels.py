"""Scoring kernels run by ONNX Runtime: float16 rows widened and multiplied at once, uint8 codes
multiplied as integers.

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
"""``block (n, w, dim) uint8, query_hi (dim, q) int8, query_lo (dim, q) int8, step (q,)
float32 → scores (n,)``: :data:`GROUP` over 8-bit codes, in integers. The query (scaled by the
codec's per-dimension step) is given as 16-bit integers ``256 * hi + lo`` times a per-token
``step`` (:func:`query_halves`); two integer products (``MatMulInteger``, VNNI on x86) give
each row's exact integer dot product with it, and the best row per query token is taken before
anything is widened. With that query, the scores are MaxSim less the constant
``sum(query @ offset)`` (see ``index.vectors_int8``), to within the 16-bit rounding of the
query (about 3e-5 of its largest value)."""

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


def maxsim_group_codes(block: np.ndarray, halves: tuple[np.ndarray, np.ndarray, np.ndarray]
                       ) -> np.ndarray:
    """Scores of a ``(n, w, dim)`` uint8 block of padded documents' codes against a query
    split by :func:`query_halves`."""
    hi, lo, step = halves
    return session(GROUP_CODES).run(
        None, {"block": block, "query_hi": hi, "query_lo": lo, "step": step})[0]


_HALF = 256
MAX_CODE_DIMENSION = 256
"""The widest codes :data:`GROUP_CODES` scores without overflowing its int32 dot products."""
_MAX_HI = 127  # 256 * 127 + 127 = 32,639: the largest value whose two halves fit int8


def query_halves(query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``(q, dim)`` float query as ``(hi, lo, step)`` for :data:`GROUP_CODES`: ``query[t]``
    is ``step[t] * (256 * hi[:, t] + lo[:, t])`` to within ``step[t] / 2``, with ``hi`` and ``lo``
    ``(dim, q)`` int8 and ``lo`` in [-128, 127]."""
    query = np.asarray(query, dtype=np.float64)
    largest = np.abs(query).max(axis=1)
    # Rounded to float32 first: the step the graph multiplies by is the one the query was
    # divided by.
    step = (np.where(largest > 0, largest, 1.0) / (_HALF * _MAX_HI + _MAX_HI)).astype(np.float32)
    limit = _HALF * _MAX_HI + _MAX_HI
    whole = np.clip(np.rint(query / step[:, None].astype(np.float64)), -limit, limit
                    ).astype(np.int64)
    hi = (whole + _HALF // 2) // _HALF  # floor division: lo = whole - 256 * hi lies in [-128, 127]
    lo = whole - _HALF * hi
    return (np.ascontiguousarray(hi.T, dtype=np.int8), np.ascontiguousarray(lo.T, dtype=np.int8),
            step)


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

    group = helper.make_graph(
        [helper.make_node("Cast", ["block"], ["wide"], to=TensorProto.FLOAT),
         helper.make_node("MatMul", ["wide", "query_t"], ["sims"]),
         helper.make_node("ReduceMax", ["sims"], ["best"], axes=[1], keepdims=0),
         helper.make_node("ReduceSum", ["best", "last_axis"], ["scores"], keepdims=0)],
        GROUP,
        [helper.make_tensor_value_info("block", TensorProto.FLOAT16, ["n", "w", "dim"]),
         helper.make_tensor_value_info("query_t", TensorProto.FLOAT, ["dim", "q"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n"])],
        initializer=[helper.make_tensor("last_axis", TensorProto.INT64, [1], [1])])

    # The integer dots stay inside int32 up to MAX_CODE_DIMENSION (255 * 32,640 * dim < 2**31).
    codes = helper.make_graph(
        [helper.make_node("MatMulInteger", ["block", "query_hi"], ["dot_hi"]),
         helper.make_node("MatMulInteger", ["block", "query_lo"], ["dot_lo"]),
         helper.make_node("Mul", ["dot_hi", "half"], ["dot_hi_scaled"]),
         helper.make_node("Add", ["dot_hi_scaled", "dot_lo"], ["dots"]),
         helper.make_node("ReduceMax", ["dots"], ["best"], axes=[1], keepdims=0),
         helper.make_node("Cast", ["best"], ["best_wide"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["best_wide", "step"], ["best_scaled"]),
         helper.make_node("ReduceSum", ["best_scaled", "last_axis"], ["scores"], keepdims=0)],
        GROUP_CODES,
        [helper.make_tensor_value_info("block", TensorProto.UINT8, ["n", "w", "dim"]),
         helper.make_tensor_value_info("query_hi", TensorProto.INT8, ["dim", "q"]),
         helper.make_tensor_value_info("query_lo", TensorProto.INT8, ["dim", "q"]),
         helper.make_tensor_value_info("step", TensorProto.FLOAT, ["q"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n"])],
        initializer=[helper.make_tensor("last_axis", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("half", TensorProto.INT32, [], [_HALF])])

    sims = helper.make_graph(
        [helper.make_node("Cast", ["rows"], ["wide"], to=TensorProto.FLOAT),
         helper.make_node("Gemm", ["query", "wide"], ["out"], transB=1)],
        SIMILARITIES,
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT16, ["t", "dim"]),
         helper.make_tensor_value_info("query", TensorProto.FLOAT, ["q", "dim"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["q", "t"])])
    return {GROUP: model(group),
            GROUP_CODES: model(codes),
            SIMILARITIES: model(sims)}
