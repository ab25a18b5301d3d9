"""``roomscope migrate --to ducklake:...``: a store file's contents copied into a new lake.

The file is attached read-only to the lake's connection and each table copied with one
``INSERT … SELECT`` (one DuckLake commit a table: large Parquet files, written as DuckDB
streams the rows). The tables have the same columns on both sides, except the spans: a file
keeps settled spans in ``span_archive`` (values in columns by keyset position), a lake keeps
every span in ``span_data`` (values as one list), so spans are read through the file's
``span_rows`` view and their values put back into one list, cut to their keyset's length.

The lake must hold no records yet: a second run would store everything twice.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from ..errors import StoreError
from .ducklake_store import DuckLakeStore
from .lake_layout import PARTITIONS, SORTED
from .schema import ATTRIBUTE_KEYS, SCHEMA_VERSION, TABLES, TRACE_INDEX
from .span_archive import POSITIONS, REST, SPAN_ROWS

SOURCE = "migrate_source"
# Tables copied as they are (span_data is built from span_rows; span_archive, span_clusters
# and roomscope_meta are the file's own bookkeeping).
COPIED = [
    "resources",
    "attribute_keysets",
    ATTRIBUTE_KEYS,
    "sessions",
    "session_events",
    "log_data",
    "metric_points",
    TRACE_INDEX,
]
SIGNALS = ("span_data", "log_data", "metric_points", "sessions")


def _span_select() -> str:
    """span_data's columns from the file's span_rows ``s`` and its keyset ``k``."""
    values = (
        "coalesce(s.attribute_values, list_concat(list_value("
        + ", ".join(f"s.v{i}" for i in range(1, POSITIONS + 1))
        + f"), coalesce(s.{REST}, []))[1:len(k.keys)])"
    )
    columns = [
        values if name == "attribute_values" else f"s.{name}" for name, _ in TABLES["span_data"]
    ]
    return (
        f"SELECT {', '.join(columns)} FROM {SOURCE}.main.{SPAN_ROWS} s"
        f" LEFT JOIN {SOURCE}.main.attribute_keysets k ON k.keyset_id = s.attribute_keyset"
    )


def copy_to_lake(path: str, store: DuckLakeStore) -> dict[str, int]:
    """Copy the store file ``path`` (no collector may hold it) into ``store``'s lake, which
    must hold no records yet; returns the rows copied per table. Raises StoreError."""
    if not Path(path).expanduser().is_file():
        raise StoreError(f"store file {path} does not exist")
    store.open()
    try:
        con = store.con
        for table in SIGNALS:
            row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
            if row and row[0]:
                raise StoreError(
                    f"lake {store.location} already holds records ({table}): migrate into a new"
                    " lake (a second copy would store everything twice)"
                )
        literal = str(Path(path).expanduser()).replace("'", "''")
        try:
            con.execute(f"ATTACH '{literal}' AS {SOURCE} (READ_ONLY)")
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store file {path}: {exc}") from None
        try:
            return _copy(con, path)
        finally:
            con.execute(f"DETACH {SOURCE}")
    finally:
        store.close()


def _day_parts(con: duckdb.DuckDBPyConnection, table: str, select: str) -> list[str]:
    """``select`` cut into one SELECT per day of a day-partitioned table (a lake writes one
    file a partition, each buffering its rows: one insert of a month of spans would hold them
    all in memory at once), or ``select`` itself for the others."""
    if table not in PARTITIONS:
        return [select]
    column = ("s." if table == "span_data" else "") + PARTITIONS[table]
    days = con.execute(
        f"SELECT DISTINCT date_trunc('day', {PARTITIONS[table]}) AS d FROM ({select}) ORDER BY d"
    ).fetchall()
    parts = [f"{select} WHERE {column} IS NULL"]
    for (day,) in days:
        if day is not None:
            parts.append(
                f"{select} WHERE {column} >= '{day}'::TIMESTAMP"
                f" AND {column} < '{day}'::TIMESTAMP + INTERVAL 1 DAY"
            )
    return parts


def _insert(con: duckdb.DuckDBPyConnection, table: str, select: str) -> int:
    """One commit: the rows of ``select`` into ``table``; how many."""
    con.begin()
    try:
        done = con.execute(f"INSERT INTO {table} {select}").fetchone()
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return int(done[0]) if done else 0


def _copy(con: duckdb.DuckDBPyConnection, path: str) -> dict[str, int]:
    row = con.execute(
        f"SELECT value FROM {SOURCE}.main.roomscope_meta WHERE key = 'schema_version'"
    ).fetchone()
    if row is None or int(row[0]) != SCHEMA_VERSION:
        raise StoreError(
            f"store file {path} has schema version {row[0] if row else 'none'}, not"
            f" {SCHEMA_VERSION}: start a collector on it once (roomscope serve --db {path})"
        )
    copied: dict[str, int] = {}
    statements = [(t, f"SELECT * FROM {SOURCE}.main.{t}") for t in COPIED]
    statements.append(("span_data", _span_select()))
    for table, select in statements:
        # The lake writes inserts as they come (lake_layout.INSERT_OPTIONS): a sorted table's
        # copy is sorted here, a day at a time, so that each day's file is sorted as
        # maintenance's merges would sort it. The other tables' order does not matter: without
        # keeping it DuckDB streams each copy instead of buffering rows.
        keep = table in SORTED
        con.execute(f"SET preserve_insertion_order = {'true' if keep else 'false'}")
        order = f" ORDER BY {SORTED[table]}" if keep else ""
        parts = _day_parts(con, table, select)
        copied[table] = sum(_insert(con, table, part + order) for part in parts)
    con.execute("RESET preserve_insertion_order")
    return copied
