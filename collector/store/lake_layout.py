"""The tables of a lake and the read views over them, from the file store's definitions.

A lake holds the same tables as a store file (schema.py ``TABLES``, the trace index, the
attribute keys, ``span_archive``), at SCHEMA_VERSION, with two differences DuckLake imposes
or suggests:

- No PRIMARY KEY: DuckLake has no constraints. The shared rows (``resources``,
  ``attribute_keysets``) are keyed by a hash of their content, so two replicas that insert the
  same id insert the same row; the read views keep one row per id (:data:`DISTINCT_ROWS`,
  :data:`FIRST_ROW`), and the maintenance replica deletes the extra copies.
- Partitioning by day of the records' time (never by room: a commit would write a file per
  room) and a sort order for DuckLake's compaction (``merge_adjacent_files``), so that a
  room's spans of a day end up together, as the file store's compaction sorts them.

``span_archive`` stays empty in a lake (DuckLake's own compaction replaces roomscope's);
``span_rows`` is the file store's view without its archive branch.
"""

from __future__ import annotations

import duckdb

from .schema import (
    ATTRIBUTE_KEYS,
    RESOURCE_ROWS,
    SCHEMA_VERSION,
    SPAN_CLUSTERS_SQL,
    TABLES,
    TRACE_INDEX,
    TRACE_INDEX_SQL,
    create_table_sql,
    logs_view_sql,
)
from .span_archive import ARCHIVE, ARCHIVE_SQL, SPAN_ROWS_SQL, SPANS_VIEW_SQL

META = "roomscope_meta"
LEASES = "roomscope_leases"  # in the catalog database itself (PostgreSQL): maintenance's lease

# Shared rows by id: the views keep one row per id. Two replicas inserting an id insert the
# same row, so the small tables' views keep their distinct rows (one scan: each table a
# statement binds costs a round of catalog reads, ~4 ms on PostgreSQL); ``resources`` keeps
# each id's first row by row id (DISTINCT would compare every row's map).
DISTINCT_ROWS = ("attribute_keysets", ATTRIBUTE_KEYS)
FIRST_ROW = {"resources": "resource_id"}  # table → its id column

# Day partitions and compaction sort order per table (DuckLake's ALTER TABLE … SET …).
PARTITIONS = {
    "span_data": "start_time",
    "log_data": "time",
    "metric_points": "time",
    "session_events": "time",
    TRACE_INDEX: "first_start",
}
SORTED = {
    "span_data": "room, start_time",
    "log_data": "room, time",
    "metric_points": "room, name, time",
    TRACE_INDEX: "trace_key",
}


# How the sorted tables' files are written (DuckLake table options, set after the tables
# exist: lake_setup.tune_writes):
# - Inserts as they come. DuckLake sorts every insert by SORTED BY unless ``sort_on_insert``
#   is off and nothing is inlined (with inlining on, 1.5.5 sorts what passes the inliner all
#   the same). An ingest commit is one small file, one row group, which a sort does not let a
#   read skip any better; maintenance's merges sort by SORTED BY whatever these say (an
#   8,192-span insert took 33-37 ms sorted, 28 without).
# - Files of at most ~64 MiB (~1 M spans; DuckLake's default is 512 MiB). A merge joins files
#   next to each other in commit order, so each merged file holds a slice of time, sorted by
#   room within it, as the file store's compaction ranges are: a search of the newest minutes
#   reads the newest slice, not the whole day (a busy day is one sorted file otherwise).
# Each option: (value in the SQL, value as the catalog stores it).
WRITE_OPTIONS = {
    "sort_on_insert": ("false", "false"),
    "data_inlining_row_limit": ("0", "0"),
    "target_file_size": ("'64MiB'", str(64 * 2**20)),
}
FILE_ROWS = 1_000_000  # about the rows of a 64 MiB file: migrate's slices (lake_migrate)


def write_option_statements(con: duckdb.DuckDBPyConnection, catalog: str) -> list[str]:
    """The ``set_option`` calls that give the sorted tables :data:`WRITE_OPTIONS`, for those
    the lake does not have yet (none: nothing to write)."""
    have = {
        (scope_entry, name, value)
        for name, _, value, scope, scope_entry in con.execute(
            f"SELECT * FROM {catalog}.options()"
        ).fetchall()
        if scope == "TABLE"
    }
    return [
        f"CALL {catalog}.set_option('{name}', {sql}, table_name => '{table}')"
        for table in SORTED
        for name, (sql, stored) in WRITE_OPTIONS.items()
        if (f"main.{table}", name, stored) not in have
    ]


def _plain(columns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, sql_type.removesuffix(" PRIMARY KEY")) for name, sql_type in columns]


def table_statements() -> list[str]:
    """CREATE TABLE IF NOT EXISTS for every table of a lake (run with ``USE lake``)."""
    return [
        f"CREATE TABLE IF NOT EXISTS {META} (key VARCHAR, value VARCHAR)",
        *(create_table_sql(t, _plain(TABLES[t])) for t in TABLES),
        f"CREATE TABLE IF NOT EXISTS {ATTRIBUTE_KEYS} (map VARCHAR, key VARCHAR)",
        TRACE_INDEX_SQL,
        SPAN_CLUSTERS_SQL,
        ARCHIVE_SQL,
    ]


# What a lake made by an older version needs to reach each later one (run with ``USE lake``;
# span_archive is empty in a lake, so only its columns change).
LAKE_UPGRADES: dict[int, list[str]] = {
    9: [
        "ALTER TABLE span_archive ADD COLUMN trace_hi UBIGINT",
        "ALTER TABLE span_archive ADD COLUMN trace_lo UBIGINT",
    ],
    10: [],  # span_rows' id numbers: the views are each connection's own (view_statements)
}


def upgrade(con: duckdb.DuckDBPyConnection, found: int) -> None:
    """Bring a lake at schema version ``found`` to SCHEMA_VERSION, in the caller's transaction
    (with ``USE lake``)."""
    if found >= SCHEMA_VERSION:
        return
    for version in range(found + 1, SCHEMA_VERSION + 1):
        for statement in LAKE_UPGRADES.get(version, []):
            con.execute(statement)
    con.execute(f"UPDATE {META} SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])


def seed_statistics(con: duckdb.DuckDBPyConnection, catalog: str) -> list[str]:
    """Give every table that never held a row its statistics row, in the caller's transaction
    (with ``USE lake``); returns the tables seeded.

    DuckLake keeps a table's statistics (row count, each column's min and max) from its first
    insert on, and caches them by snapshot; a table that never held a row has none, and every
    query that binds it asks the catalog again, once per column (``metric_points``' 34 round
    trips: ~45 ms added to each listing that looks at metrics, when nobody sends any). A row
    inserted and deleted in one transaction leaves the table empty and its statistics made."""
    meta = f"__ducklake_metadata_{catalog}.public"
    bare = con.execute(
        f"SELECT t.table_name FROM {meta}.ducklake_table t WHERE t.end_snapshot IS NULL"
        f" AND NOT EXISTS (SELECT 1 FROM {meta}.ducklake_table_stats s"
        " WHERE s.table_id = t.table_id)"
    ).fetchall()
    seeded = [name for (name,) in bare if name in lake_tables()]
    for name in seeded:
        con.execute(f"INSERT INTO {name} DEFAULT VALUES")
        con.execute(f"DELETE FROM {name}")
    return seeded


def tuning_statements() -> list[str]:
    """Partitioning and sort order (idempotent; run once when the lake is made)."""
    days = "year({c}), month({c}), day({c})"
    return [
        *(
            f"ALTER TABLE {t} SET PARTITIONED BY ({days.format(c=c)})"
            for t, c in PARTITIONS.items()
        ),
        *(f"ALTER TABLE {t} SET SORTED BY ({order})" for t, order in SORTED.items()),
    ]


def lake_tables() -> list[str]:
    return [META, *TABLES, ATTRIBUTE_KEYS, TRACE_INDEX, "span_clusters", ARCHIVE]


def view_statements(catalog: str) -> list[str]:
    """The in-memory database's views: each lake table under its own name (shared rows once
    per id), then the file store's ``span_rows``, ``spans``, ``logs`` and ``resource_rows``."""
    out = []
    for table in lake_tables():
        source = f"{catalog}.main.{table}"
        if table in DISTINCT_ROWS:
            select = f"SELECT DISTINCT * FROM {source}"
        elif table in FIRST_ROW:
            # The first row of each id by row id, not DISTINCT ON: the aggregate reads the ids
            # alone (DISTINCT ON aggregated every row with its map). Reads of records look
            # their resources up in resource_rows instead (query.library.records.with_resources).
            select = (
                f"SELECT * FROM {source} WHERE rowid IN"
                f" (SELECT min(rowid) FROM {source} GROUP BY {FIRST_ROW[table]})"
            )
        else:
            select = f"SELECT * FROM {source}"
        out.append(f"CREATE OR REPLACE VIEW memory.main.{table} AS {select}")
    # The resources as stored (an id's rows from several replicas), for lookups by id.
    rows = f"SELECT * FROM {catalog}.main.resources"
    rows = f"CREATE OR REPLACE VIEW memory.main.{RESOURCE_ROWS} AS {rows}"
    return [*out, LAKE_SPAN_ROWS_SQL, SPANS_VIEW_SQL, logs_view_sql(), rows]


# A lake's span_rows: span_data alone, with the archive's columns NULL (the file store's view
# without its second branch). DuckLake reads each column's statistics from the catalog when a
# query binds it, one round trip per column and table: the empty archive's ~50 would double
# every span query's planning time.
LAKE_SPAN_ROWS_SQL = SPAN_ROWS_SQL.split(" UNION ALL ")[0]
