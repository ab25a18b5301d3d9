"""The memory budget of a DuckDB connection (``store.memory_limit``) and where it spills.

DuckDB's default budget is 80% of the machine's RAM, held by its buffer cache as the store
grows; a fixed budget keeps the process's memory bounded. Sorts, joins and grouping that need
more spill to ``<store path>.tmp`` (DuckDB makes the folder when it first spills and removes
it on close); a query that cannot spill fails with an out-of-memory error.
"""

from __future__ import annotations

from pathlib import Path

import duckdb


def temp_directory(path: str) -> str | None:
    """Where a store file's queries spill: ``<path>.tmp`` beside it (None in memory)."""
    if path == ":memory:":
        return None
    return str(Path(path).expanduser()) + ".tmp"


def apply_memory_limit(con: duckdb.DuckDBPyConnection, path: str, memory_limit: str) -> None:
    """Give ``con`` (a connection to the store at ``path``) the budget ``memory_limit``, a size
    in DuckDB's syntax (``512MB``, ``1GiB``), and its spill folder."""
    con.execute(f"SET memory_limit = '{_literal(memory_limit)}'")
    spill = temp_directory(path)
    if spill is not None:
        con.execute(f"SET temp_directory = '{_literal(spill)}'")


def _literal(text: str) -> str:
    return text.replace("'", "''")
