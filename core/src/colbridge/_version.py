"""The package version, in a module of its own so that submodules can read it without
importing the package root (keep it equal to ``version`` in ``core/pyproject.toml``)."""

__version__ = "0.1.0"
