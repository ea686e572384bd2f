"""Fixtures shared by the tests of colbridge's core package."""

from __future__ import annotations

import pytest
from colbridge import ColBERTModel


@pytest.fixture(scope="module")
def torch_model(tiny_model_path):
    """The tiny test model on PyTorch: the reference the other backends are compared with."""
    model = ColBERTModel(tiny_model_path, backend="torch", device="cpu", batch_size=3)
    model.load()
    return model
