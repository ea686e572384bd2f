"""ColBERT encoders."""

from .base import Encoder
from .colbert import ColBERTModel, pick_device

__all__ = ["ColBERTModel", "Encoder", "pick_device"]
