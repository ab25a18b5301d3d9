"""roomscope's collector: OTLP ingest into DuckDB."""

import importlib.abc
import importlib.machinery
import importlib.util
import sys


class _KnownAbsent(importlib.abc.MetaPathFinder):
    """Answers "not installed" at once for modules known to be missing.

    DuckDB's Python client tries to import pandas on every register/execute; where pandas is
    not installed, each try is a full sys.path search (~20 per group commit, ~5% of the
    writer's time). The answer is the same ImportError, only without the search.
    """

    def __init__(self, names: set[str]):
        self.names = names

    def find_spec(
        self, name: str, path: object, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
    sys.meta_path.insert(0, _KnownAbsent({"pandas"}))
