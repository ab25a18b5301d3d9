"""Answering "not installed" at once for modules known to be missing (pandas).

DuckDB's Python client tries to import pandas on every register/execute; where pandas is not
installed, each try is a full sys.path search: ~20 per group commit (~5% of the writer's time),
~8 per span search (2-5 ms of a cold query, tests/benchmarks/query.py). The answer is the same
ImportError, only without the search. Installed wherever the store package opens a connection
(:func:`skip_absent`), never by importing a module.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys


class _KnownAbsent(importlib.abc.MetaPathFinder):
    def __init__(self, names: set[str]):
        self.names = names

    def find_spec(
        self, name: str, path: object, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def skip_absent(name: str = "pandas") -> None:
    """Make imports of ``name`` fail at once when it is not installed (idempotent)."""
    if any(isinstance(f, _KnownAbsent) and name in f.names for f in sys.meta_path):
        return
    if name in sys.modules or importlib.util.find_spec(name) is not None:
        return
    sys.meta_path.insert(0, _KnownAbsent({name}))
