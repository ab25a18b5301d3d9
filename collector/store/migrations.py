"""Each schema version's steps: a migration takes a store file from version N-1 to N, and a
new file runs them all (version 1 creates the tables as they were then). The steps of old
versions are frozen here as they were, since a file may still be at any of them."""

from __future__ import annotations

import duckdb

from ..errors import StoreError
from . import span_archive
from .schema import (
    ATTRIBUTE_KEYS,
    ATTRIBUTE_KEYS_SQL,
    SCHEMA_VERSION,
    SPAN_CLUSTERS,
    SPAN_CLUSTERS_SQL,
    TABLES,
    TRACE_INDEX,
    TRACE_INDEX_SQL,
    TRACE_KEY,
    TS,
    V1_LOGS,
    V1_SPANS,
    create_table_sql,
    logs_view_sql,
    spans_view_sql,
)
from .statements import transaction

# SPEC 4's ``spans`` of versions 3 to 5, over span_data (version 6: over span_rows).
SPANS_VIEW_SQL = spans_view_sql("span_data", "map(k.keys, s.attribute_values)")

_V2_TRACE_INDEX_SQL = (
    f"CREATE TABLE IF NOT EXISTS {TRACE_INDEX}"
    f" (trace_id VARCHAR, first_start {TS}, last_start {TS})"
)
_V2_TRACE_INDEX_INSERT = (
    f"INSERT INTO {TRACE_INDEX} SELECT trace_id, min(start_time), max(start_time)"
    " FROM {source} WHERE trace_id IS NOT NULL GROUP BY trace_id"
)
# Rebuilt from the spans, in time order like the rows the writer appends (retention deletes
# the oldest); a NULL room is a group of its own.
_V5_TRACE_INDEX = [
    f"DROP TABLE IF EXISTS {TRACE_INDEX}",
    TRACE_INDEX_SQL,
    f"INSERT INTO {TRACE_INDEX} SELECT {TRACE_KEY.format(c='trace_id')} AS k,"
    " min(start_time), max(start_time), room FROM span_data"
    " WHERE k IS NOT NULL GROUP BY trace_id, room ORDER BY 2",
]

ATTRIBUTE_KEYS_BACKFILL = (
    f"INSERT OR IGNORE INTO {ATTRIBUTE_KEYS}"
    " SELECT DISTINCT 'span', unnest(map_keys(attributes)) FROM spans"
    " UNION SELECT DISTINCT 'resource', unnest(map_keys(resource_attributes)) FROM spans"
)

# The resource and keyset ids of version-2 rows are DuckDB's hashes (new rows get those of
# collector.columns): either way one id names one set of attributes, one list of keys.
_V3_FROM_SPANS = {
    "resource_id": "hash(resource_attributes)",
    "attribute_keyset": "hash(map_keys(attributes))",
    "attribute_values": "map_values(attributes)",
}
_V3_FROM_V2 = [
    create_table_sql("resources"),
    "INSERT INTO resources SELECT hash(resource_attributes), any_value(resource_attributes)"
    " FROM spans GROUP BY hash(resource_attributes)",
    create_table_sql("attribute_keysets"),
    "INSERT INTO attribute_keysets SELECT hash(map_keys(attributes)),"
    " any_value(map_keys(attributes)) FROM spans GROUP BY hash(map_keys(attributes))",
    create_table_sql("span_data"),
    "INSERT INTO span_data SELECT "
    + ", ".join(_V3_FROM_SPANS.get(c, c) for c, _ in TABLES["span_data"])
    + " FROM spans",
    "DROP TABLE spans",
    SPANS_VIEW_SQL,
]

# Version 6 moves the log records into log_data. Their resources get DuckDB's hash as id, as
# version 3 did for the spans' (new rows get collector.columns' ids; one id still names one
# set of attributes).
_V6_LOG_DATA = [
    create_table_sql("log_data"),
    "INSERT INTO resources SELECT hash(resource_attributes) AS id, any_value(resource_attributes)"
    " FROM logs WHERE id NOT IN (SELECT resource_id FROM resources) GROUP BY id",
    "INSERT INTO log_data SELECT "
    + ", ".join(
        "hash(resource_attributes)" if c == "resource_id" else c for c, _ in TABLES["log_data"]
    )
    + " FROM logs ORDER BY time",
    "DROP TABLE logs",
    logs_view_sql(),
]

# Each migration takes the file from version N-1 to N; a new file runs them all (version 1
# creates the tables as they were then).
MIGRATIONS: dict[int, list[str]] = {
    1: [
        create_table_sql(t, {"spans": V1_SPANS, "logs": V1_LOGS}.get(t))
        for t in ("spans", "logs", "metric_points", "sessions", "session_events")
    ],
    2: [
        _V2_TRACE_INDEX_SQL,
        _V2_TRACE_INDEX_INSERT.format(source="spans"),
        ATTRIBUTE_KEYS_SQL,
        ATTRIBUTE_KEYS_BACKFILL,
    ],
    3: _V3_FROM_V2,
    # span_data stores NULL for a span without events or links; the view shows [] again.
    4: [SPANS_VIEW_SQL],
    # trace_index gets the spans' room; span_clusters (collector.compaction) starts empty.
    5: [*_V5_TRACE_INDEX, SPAN_CLUSTERS_SQL],
    # span_archive (settled spans, values by position) and span_rows over both tables; log
    # records in log_data with a resource id, behind the logs view.
    6: [*span_archive.MIGRATION, *_V6_LOG_DATA],
    # span_clusters gets each range's level (collector.archive_merge): 0 for those in
    # span_archive, NULL for those that version 5 sorted in span_data.
    7: [
        f"ALTER TABLE {SPAN_CLUSTERS} ADD COLUMN level INTEGER",
        f"UPDATE {SPAN_CLUSTERS} c SET level = 0 WHERE EXISTS (SELECT 1 FROM"
        f" {span_archive.ARCHIVE} a WHERE a.start_time >= c.first_start"
        " AND a.start_time < c.last_start)",
    ],
}
assert max(MIGRATIONS) == SCHEMA_VERSION


def migrate(con: duckdb.DuckDBPyConnection, path: str) -> int:
    """Bring a store file to SCHEMA_VERSION; returns the version it had (0 for a new file)."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS roomscope_meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
    )
    row = con.execute("SELECT value FROM roomscope_meta WHERE key = 'schema_version'").fetchone()
    found = int(row[0]) if row else 0
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {found}, newer than this roomscope ({SCHEMA_VERSION});"
            " upgrade roomscope"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        with transaction(con):
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute(
                "INSERT OR REPLACE INTO roomscope_meta VALUES ('schema_version', ?)", [str(version)]
            )
    return found
