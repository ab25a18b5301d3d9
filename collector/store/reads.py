"""The store's read surface: what the query library may know of the storage layout.

The query library (``query.library``) reads through DuckDB cursors the store hands out
(:meth:`Store.cursor`, or :func:`open_reader` for a file no collector holds) and builds its
SQL from the names and fragments here, never from the storage modules themselves. SPEC 4's
tables and views (``spans``, ``logs``, ``metric_points``, ``sessions``, ``session_events``)
are public; the names below are the physical layout behind them.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from ..absent_modules import skip_absent
from ..errors import StoreError
from .lake_connect import LakeConfig, connect, make_views, parse_store
from .memory import apply_memory_limit
from .outbox import ENDPOINTS as FORWARD_ENDPOINTS
from .outbox import OUTBOX as FORWARD_OUTBOX
from .schema import (
    ATTRIBUTE_KEYS,
    KEYSET_JOIN,
    RESOURCE_ROWS,
    SCHEMA_VERSION,
    TABLES,
    TS,
    V1_LOGS,
    V1_SPANS,
    storage_table,
)
from .span_archive import (
    LAYOUT_COLUMNS,
    LAYOUT_PREFIX,
    SPAN_ATTRIBUTES,
    SPAN_ROWS,
    SPANS_WITH_LAYOUT_SQL,
    id_number,
    keys_of,
    keyset_of,
    trace_ids_where,
    value_at,
    value_by_position,
    value_of_key,
    values_of,
)

__all__ = [
    "ATTRIBUTE_KEYS",
    "FORWARD_ENDPOINTS",
    "FORWARD_OUTBOX",
    "KEYSETS",
    "KEYSET_JOIN",
    "LAYOUT_COLUMNS",
    "LAYOUT_PREFIX",
    "LOG_ROWS",
    "RESOURCES",
    "RESOURCE_ROWS",
    "SCHEMA_VERSION",
    "SPANS_WITH_LAYOUT_SQL",
    "SPAN_ATTRIBUTES",
    "SPAN_ROWS",
    "TABLES",
    "TS",
    "V1_LOGS",
    "V1_SPANS",
    "LakeConfig",
    "StoreInUse",
    "id_number",
    "keys_of",
    "keyset_of",
    "open_lake_reader",
    "open_reader",
    "parse_store",
    "trace_ids_where",
    "value_at",
    "value_by_position",
    "value_of_key",
    "values_of",
]

LOG_ROWS = storage_table("logs")  # log records, a resource id in place of their attributes
RESOURCES = "resources"  # resource_id → attributes, shared by spans and log records
KEYSETS = "attribute_keysets"  # keyset_id → the keys of a span's attribute values


class StoreInUse(StoreError):
    """The store file is held by another process (a running collector): ``pid``, when DuckDB
    names it."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


def open_reader(path: str, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a store file no collector holds, checked to have this
    roomscope's schema version, with the memory budget ``memory_limit`` (``store.memory_limit``,
    e.g. ``1GiB``). Raises StoreError (StoreInUse when a collector holds it)."""
    if path != ":memory:" and not Path(path).expanduser().is_file():
        raise StoreError(f"store file {path} does not exist")
    skip_absent()
    try:
        con = duckdb.connect(str(Path(path).expanduser()), read_only=True)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            m = re.search(r"\(PID (\d+)\)", str(exc))
            pid = int(m.group(1)) if m else None
            held = f" (process {pid})" if pid else ""
            raise StoreInUse(
                f"store file {path} is in use by a running collector{held}", pid
            ) from None
        raise StoreError(f"cannot open store file {path}: {exc}") from None
    except duckdb.Error as exc:
        raise StoreError(f"cannot open store file {path}: {exc}") from None
    try:
        apply_memory_limit(con, path, memory_limit, read_only=True)
        # On, DuckDB draws a progress bar on stdout for a query of more than 2 s: in the
        # middle of a command's output (an extra line in -o jsonl).
        con.execute("SET enable_progress_bar = false")
        _check_version(con, path)
    except duckdb.Error as exc:
        con.close()
        raise StoreError(f"cannot open store file {path}: {exc}") from None
    except StoreError:
        con.close()
        raise
    return con


def _check_version(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """A read-only store must already have this roomscope's layout (a collector migrates it)."""
    try:
        row = con.execute(
            "SELECT value FROM roomscope_meta WHERE key = 'schema_version'"
        ).fetchone()
    except duckdb.CatalogException:
        return  # not a store at all: the first query says so
    if row is not None and int(row[0]) < SCHEMA_VERSION:
        raise StoreError(
            f"store file {path} has schema version {row[0]}, older than this roomscope's"
            f" ({SCHEMA_VERSION}); start a collector on it once (roomscope serve --db {path})"
            " to upgrade it"
        )


def open_lake_reader(config: LakeConfig, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a lake (any number of collectors may be writing it), where the
    names of this module resolve as in a store file. Raises StoreError."""
    con = connect(config, memory_limit, read_only=True)
    try:
        make_views(con)
        row = con.execute(
            "SELECT value FROM roomscope_meta WHERE key = 'schema_version'"
        ).fetchone()
    except duckdb.Error:
        con.close()
        raise StoreError(
            f"lake {config.catalog} ({config.data_path}) is not a roomscope store yet (start a"
            " collector on it: roomscope serve --store ducklake:...)"
        ) from None
    if row is not None and int(row[0]) != SCHEMA_VERSION:
        con.close()
        raise StoreError(
            f"lake {config.catalog} has schema version {row[0]}; this roomscope reads"
            f" {SCHEMA_VERSION}"
        )
    return con
