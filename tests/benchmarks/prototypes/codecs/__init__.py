"""Prototype codecs for stored token vectors (issue #15's groundwork, docs/compression.md),
registered by the name their saved description carries. Not shipped: the embedded index stores
int8 codes (``colbridge.index.vectors_int8``); these stay to reproduce the measurements that
chose it.
"""

from __future__ import annotations

from pathlib import Path

from colbridge.errors import IndexCorruptError, InvalidInputError

from .residual import ResidualCodec, read_params

CODECS: dict[str, type[ResidualCodec]] = {ResidualCodec.name: ResidualCodec}


def codec_class(name: str) -> type[ResidualCodec]:
    """The codec registered as ``name``; InvalidInputError naming the known ones otherwise."""
    try:
        return CODECS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(CODECS))
        raise InvalidInputError(f"unknown codec {name!r}; known: {known}") from None


def load_codec(folder: str | Path, stem: str = "codec") -> ResidualCodec:
    """Load whichever registered codec ``<stem>.json`` in ``folder`` names."""
    name = read_params(Path(folder), stem).get("codec")
    if name not in CODECS:
        raise IndexCorruptError(f"{Path(folder) / stem}.json names codec {name!r}, which this "
                                f"colbridge does not know (known: {', '.join(sorted(CODECS))})")
    return CODECS[name].load(folder, stem)


__all__ = ["CODECS", "ResidualCodec", "codec_class", "load_codec"]
