"""Fusion rules: the default min-max rule, the registry, and the one default weight."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from colbridge import EmbeddedIndex, InvalidInputError, QdrantIndex
from colbridge.search import DEFAULT_HYBRID_WEIGHT, Fusion, fusion_named, register_fusion


def test_minmax_normalises_each_signal_then_mixes():
    colbert = np.array([10.0, 12.0, 14.0])
    bm25 = np.array([0.0, 3.0, 1.5])
    fused = fusion_named("minmax").fuse(colbert, bm25, 0.25)
    np.testing.assert_allclose(fused, 0.25 * np.array([0, 0.5, 1]) + 0.75 * np.array([0, 1, 0.5]))
    assert fused.min() >= 0 and fused.max() <= 1


def test_minmax_gives_a_constant_signal_full_or_no_weight():
    rule = fusion_named("minmax")
    np.testing.assert_allclose(rule.fuse(np.array([3.0]), np.array([0.0]), 0.5), [0.5])
    np.testing.assert_allclose(rule.fuse(np.array([1.0, 2.0]), np.array([4.0, 4.0]), 0.5),
                               [0.5, 1.0])
    assert len(rule.fuse(np.zeros(0), np.zeros(0), 0.5)) == 0


def test_unknown_and_malformed_rules_are_refused():
    with pytest.raises(InvalidInputError, match="minmax"):
        fusion_named("rrf-nonexistent")
    with pytest.raises(TypeError):
        register_fusion(object())  # type: ignore[arg-type]

    class Nameless:
        name = ""

        def fuse(self, colbert, lexical, weight):
            return colbert

    with pytest.raises(TypeError):
        register_fusion(Nameless())
    assert isinstance(fusion_named("minmax"), Fusion)


@pytest.mark.parametrize("method", ["search", "asearch", "search_encoded", "asearch_encoded"])
@pytest.mark.parametrize("backend", [EmbeddedIndex, QdrantIndex])
def test_every_search_defaults_to_the_one_hybrid_weight(backend, method):
    default = inspect.signature(getattr(backend, method)).parameters["hybrid_weight"].default
    assert default == DEFAULT_HYBRID_WEIGHT == 0.5
