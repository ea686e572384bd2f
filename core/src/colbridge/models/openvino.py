"""The OpenVINO backend: the ONNX export of :mod:`colbridge.models.onnx`, run by OpenVINO.

It reads the very ``model.onnx`` the onnx backend builds and caches (same folder, same key), and
keeps that backend's tokenization and encoding, so PyLate's markers, ``[MASK]`` expansion,
skiplist, projection and normalisation are applied by one piece of code for both runtimes. Only
the graph's execution differs: OpenVINO compiles it for the CPU, in bfloat16 where the CPU computes
it natively (AVX512-BF16 or AMX, listed as ``BF16`` in ``OPTIMIZATION_CAPABILITIES``), in float32
elsewhere. Its vectors agree with PyTorch's closely enough to share an index with them
(docs/benchmarks.md, "Encoder backends").
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from .onnx import _GRAPH, OnnxRuntime, available_cores, ensure_export

_CACHE = ".openvino-cache"  # beside the exports, shared by them
MISSING = ('the openvino backend needs openvino: pip install "colbridge[openvino]", or use '
           'backend="onnx" or backend="torch"')


def cpu_has_bf16() -> bool:
    """Whether OpenVINO computes bfloat16 natively on this CPU (False when it is not installed).

    Where ``/proc/cpuinfo`` can be read (Linux) its flags decide, without importing OpenVINO
    (a third of a second of every start); elsewhere OpenVINO's CPU plugin is asked (its
    ``OPTIMIZATION_CAPABILITIES``). The plugin is asked again when a model is compiled, and
    an answer of no there compiles for float32 (:attr:`OpenVinoRuntime.precision`)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text("ascii", "replace").split())
    except OSError:
        flags = None
    if flags is not None:
        return (bool(flags & {"avx512_bf16", "amx_bf16"})
                and importlib.util.find_spec("openvino") is not None)
    try:
        import openvino as ov
    except ImportError:
        return False
    try:
        return _offers_bf16(ov.Core())
    except Exception:  # a CPU plugin that cannot start: no bf16 to offer
        return False


def _offers_bf16(core: Any) -> bool:
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoRuntime(OnnxRuntime):
    """A loaded export compiled by OpenVINO; tokenization and encoding are :class:`OnnxRuntime`'s.

    ``precision`` is the inference precision it compiled for: ``"bf16"`` or ``"f32"``."""

    precision: str

    def _start(self, folder: Path, threads: int) -> None:
        import openvino as ov

        core = ov.Core()
        self.precision = "bf16" if _offers_bf16(core) else "f32"
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": self.precision,
            # One stream on as many threads as this process may use: the encoder is called
            # by one thread at a time, and more threads than cores only take turns.
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
        }
        # OpenVINO's own cache of compiled graphs, keyed by the graph file and this config:
        # a new process imports the compiled graph instead of compiling it again, which is
        # most of its cold start (measured in docs/benchmarks.md, "Encoder backends").
        cached = {**config, "CACHE_DIR": str(folder.parent / _CACHE)}
        try:
            self._compiled = core.compile_model(str(folder / _GRAPH), "CPU", cached)
        except Exception:  # a cache it cannot write or read (read-only disk): compile without
            self._compiled = core.compile_model(str(folder / _GRAPH), "CPU", config)
        self._request = self._compiled.create_infer_request()

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        # share_outputs=False: the result is a copy, not a view the next call overwrites.
        result = self._request.infer({"input_ids": ids, "attention_mask": mask},
                                     share_inputs=True, share_outputs=False)
        return np.asarray(result[0], dtype=np.float32)


def open_runtime(source: Path) -> OpenVinoRuntime:
    """The ONNX export of the PyLate model folder ``source`` (built first if missing or
    stale), compiled by OpenVINO."""
    try:
        import openvino  # noqa: F401
    except ImportError as e:
        raise ModelLoadError(MISSING) from e
    folder = ensure_export(source, int8=False)
    try:
        return OpenVinoRuntime(folder, threads=available_cores())
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(
            f"OpenVINO could not compile the export in {folder}: {type(e).__name__}: {e}; use "
            "backend='onnx'") from e
