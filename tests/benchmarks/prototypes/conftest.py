"""The prototypes are benchmark-side code, imported as ``prototypes`` from tests/benchmarks
(as the bench scripts do). Their tests run with ``-m prototype``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.prototype)
