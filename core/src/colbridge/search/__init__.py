"""The search stage: one pipeline over backend primitives (see ``docs/architecture.md``).

* :mod:`~colbridge.search.backend`: what a backend provides (:class:`SearchBackend`).
* :mod:`~colbridge.search.stage`: the pipeline (:func:`run_search`).
* :mod:`~colbridge.search.fusion`: how hybrid scores are mixed (:class:`Fusion`, by name).
"""

from .backend import Candidates, Pool, SearchBackend
from .fusion import DEFAULT_HYBRID_WEIGHT, Fusion, fusion_named, register_fusion
from .stage import HYBRID_DEPTH, run_search, search_steps, through_plans

__all__ = [
    "DEFAULT_HYBRID_WEIGHT",
    "HYBRID_DEPTH",
    "Candidates",
    "Fusion",
    "Pool",
    "SearchBackend",
    "fusion_named",
    "register_fusion",
    "run_search",
    "search_steps",
    "through_plans",
]
