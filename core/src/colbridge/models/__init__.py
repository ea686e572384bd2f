"""ColBERT encoders."""

from .colbert import ColBERTModel, pick_device

__all__ = ["ColBERTModel", "pick_device"]
