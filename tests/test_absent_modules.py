"""Every store connection makes imports of pandas fail at once where it is not installed: DuckDB's
Python client tries to import it on every statement, and each try is otherwise a search of all
of sys.path (collector/absent_modules.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from conftest import make_store

from collector.absent_modules import _KnownAbsent
from collector.store.reads import open_reader

pytestmark = pytest.mark.skipif(
    "pandas" in sys.modules or importlib.util.find_spec("pandas") is not None,
    reason="pandas is installed: nothing to skip",
)


def _installed() -> bool:
    return any(isinstance(f, _KnownAbsent) and "pandas" in f.names for f in sys.meta_path)


def _without_finder() -> list:
    return [f for f in sys.meta_path if not isinstance(f, _KnownAbsent)]


@pytest.fixture
def bare_meta_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """sys.meta_path as a process has it before any store connection (restored after)."""
    monkeypatch.setattr(sys, "meta_path", _without_finder())


def test_store_and_reader_connections_answer_pandas_at_once(
    tmp_path: Path, bare_meta_path: None
) -> None:
    db = tmp_path / "store.duckdb"
    store = make_store(db)
    assert not _installed()
    store.open()
    try:
        assert _installed()
        assert isinstance(sys.meta_path[0], _KnownAbsent)  # before any search of sys.path
    finally:
        store.close()
    sys.meta_path[:] = _without_finder()
    con = open_reader(str(db), "256MiB")
    try:
        assert _installed()
        with pytest.raises(ModuleNotFoundError):
            import pandas  # noqa: F401
        assert con.execute("SELECT count(*) FROM spans").fetchone() == (0,)
    finally:
        con.close()
