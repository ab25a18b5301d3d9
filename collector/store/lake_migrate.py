"""``roomscope migrate --to ducklake:...``: a store file's contents copied into a new lake.

The file is attached read-only to the lake's connection and each table copied with
``INSERT … SELECT``: a table partitioned by day a slice of time per commit (see
:func:`_parts`), the others in one commit. The tables have the same columns on both sides,
except the spans: a file keeps settled spans in ``span_archive`` (values in columns by keyset
position), a lake keeps every span in ``span_data`` (values as one list), so spans are read
through the file's ``span_rows`` view and their values put back into one list, cut to their
keyset's length.

The lake must hold no records yet: a second run would store everything twice.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from ..errors import StoreError
from .ducklake_store import DuckLakeStore
from .lake_layout import FILE_ROWS, PARTITIONS, SORTED
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


def _parts(con: duckdb.DuckDBPyConnection, table: str, select: str) -> list[str]:
    """``select`` cut into SELECTs of consecutive time, each within one day and of about
    lake_layout.FILE_ROWS rows at most (cut at whole minutes), for a day-partitioned table;
    ``select`` itself for the others. A lake writes one file a partition, buffering its rows
    (one insert of a month of spans would hold them all in memory at once), and each slice,
    sorted by room, becomes one file of the size maintenance's merges make: a slice of time,
    as live ingest's merged files are."""
    if table not in PARTITIONS:
        return [select]
    time = PARTITIONS[table]
    column = ("s." if table == "span_data" else "") + time
    minutes = con.execute(
        f"SELECT date_trunc('minute', {time}) AS m, count(*) FROM ({select})"
        " WHERE m IS NOT NULL GROUP BY m ORDER BY m"
    ).fetchall()
    parts = [f"{select} WHERE {column} IS NULL"]
    first, rows = None, 0
    for i, (minute, n) in enumerate(minutes):
        if first is None:
            first, rows = minute, 0
        rows += n
        last = i + 1 == len(minutes)
        next_minute = None if last else minutes[i + 1][0]
        if last or rows >= FILE_ROWS or next_minute.date() != first.date():
            upper = f" AND {column} < '{next_minute}'::TIMESTAMP" if next_minute else ""
            parts.append(f"{select} WHERE {column} >= '{first}'::TIMESTAMP{upper}")
            first = None
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
        # The lake writes inserts as they come (lake_layout.WRITE_OPTIONS): a sorted table's
        # copy is sorted here, a slice at a time, as maintenance's merges would sort it. The
        # other tables' order does not matter: without keeping it DuckDB streams each copy
        # instead of buffering rows.
        keep = table in SORTED
        con.execute(f"SET preserve_insertion_order = {'true' if keep else 'false'}")
        order = f" ORDER BY {SORTED[table]}" if keep else ""
        parts = _parts(con, table, select)
        copied[table] = sum(_insert(con, table, part + order) for part in parts)
    con.execute("RESET preserve_insertion_order")
    return copied
