"""Fusion: how a hybrid search mixes each candidate's MaxSim and BM25 scores into one.

A rule is a :class:`Fusion`, registered by name with :func:`register_fusion`; the search stage
looks it up with :func:`fusion_named`. Adding a rule is one new module that defines a class and
registers an instance. ``docs/hybrid.md`` says why min-max fusion is the default.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import InvalidInputError
from ..scoring import fuse_scores

DEFAULT_HYBRID_WEIGHT = 0.5
"""Share of the ColBERT score in a hybrid score (the rest is BM25's)."""

DEFAULT_FUSION = "minmax"


@runtime_checkable
class Fusion(Protocol):
    """A rule that turns two scores per candidate into one."""

    name: str

    def fuse(self, colbert: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
        """Fused scores of candidates scored both ways.

        Args:
            colbert: ``(n,)`` exact MaxSim of each candidate.
            lexical: ``(n,)`` BM25 score of each candidate, 0 where it shares no term.
            weight: the share of ColBERT, in [0, 1].

        Returns:
            ``(n,)`` scores, higher is better; equal ones are ordered by MaxSim.
        """
        ...


class MinMaxFusion:
    """Min-max normalise each signal over the candidates, then mix them linearly
    (:func:`colbridge.scoring.fuse_scores`). Every result is in [0, 1]."""

    name = "minmax"

    def fuse(self, colbert: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
        return fuse_scores(colbert, lexical, weight)


_FUSIONS: dict[str, Fusion] = {}


def register_fusion(rule: Fusion) -> Fusion:
    """Make ``rule`` available under ``rule.name`` (replacing a rule of that name)."""
    if not isinstance(rule, Fusion) or not isinstance(rule.name, str) or not rule.name:
        raise TypeError(f"a fusion rule needs a non-empty name and a fuse() method, got {rule!r}")
    _FUSIONS[rule.name] = rule
    return rule


def fusion_named(name: str) -> Fusion:
    """The registered rule called ``name``."""
    try:
        return _FUSIONS[name]
    except KeyError:
        raise InvalidInputError(
            f"no fusion rule named {name!r}; registered: {sorted(_FUSIONS)}") from None


register_fusion(MinMaxFusion())
