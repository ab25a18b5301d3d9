"""The memory budget of a DuckDB connection (``store.memory_limit``) and where it spills.

DuckDB's default budget is 80% of the machine's RAM, held by its buffer cache as the store
grows; a fixed budget keeps the process's memory bounded. Sorts, joins and grouping that need
more spill to a folder beside the store file (DuckDB makes it when it first spills and removes
it on close); a query that cannot spill fails with an out-of-memory error.

The collector spills to ``<store path>.tmp``. A read-only connection (``--db``: any number of
CLI processes may read one file at once) spills to a folder of its own process,
``<store path>.tmp-<pid>-<random>``: processes sharing one folder would write to and delete
each other's spill files.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import duckdb

ALLOCATOR = {
    "allocator_flush_threshold": "'16MiB'",
    "allocator_bulk_deallocation_flush_threshold": "'32MiB'",
    "allocator_background_threads": "true",
}


def temp_directory(path: str) -> str | None:
    """Where the collector's queries on a store file spill: ``<path>.tmp`` beside it (None in
    memory)."""
    if path == ":memory:":
        return None
    return str(Path(path).expanduser()) + ".tmp"


def reader_temp_directory(path: str) -> str | None:
    """Where a read-only connection to a store file spills: a folder of this process's own,
    ``<path>.tmp-<pid>-<random>`` (None in memory)."""
    shared = temp_directory(path)
    if shared is None:
        return None
    return f"{shared}-{os.getpid()}-{secrets.token_hex(4)}"


def apply_memory_limit(
    con: duckdb.DuckDBPyConnection, path: str, memory_limit: str, read_only: bool = False
) -> None:
    """Give ``con`` (a connection to the store at ``path``) the budget ``memory_limit``, a size
    in DuckDB's syntax (``512MB``, ``1GiB``), and its spill folder (``read_only``: a folder of
    its own, :func:`reader_temp_directory`)."""
    con.execute(f"SET memory_limit = '{_literal(memory_limit)}'")
    # DuckDB's allocator keeps freed memory for reuse, up to 128 MiB per thread and 512 MiB
    # after a bulk free (a checkpoint, a big delete) by default: outside the budget. Hand it
    # back to the system sooner.
    for setting, value in ALLOCATOR.items():
        con.execute(f"SET {setting} = {value}")
    spill = reader_temp_directory(path) if read_only else temp_directory(path)
    if spill is not None:
        con.execute(f"SET temp_directory = '{_literal(spill)}'")


def _literal(text: str) -> str:
    return text.replace("'", "''")
