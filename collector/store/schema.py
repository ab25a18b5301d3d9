"""The store's tables (SPEC 4) as this version has them, and their Arrow twins.

Column order and types are declared once here: the DDL and the Arrow schemas that the decoder
fills are both derived from :data:`TABLES`, so a batch always lines up with its table. Nothing
else knows the order: the span flatteners make their columns by name and put them in this
order (collector.columns.table_by_name), and the query library reads records by name. A new
file gets this layout at once (collector.store.layout); an older file reaches it through the
frozen steps of collector.store.migrations, which never read these definitions.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 10  # collector.store.migrations takes a file from any older one

MAP = "MAP(VARCHAR, VARCHAR)"
TS = "TIMESTAMP_NS"

# The spans table as versions 1 and 2 stored it (SPEC 4's columns, in its order): the spans
# view's columns.
V1_SPANS: list[tuple[str, str]] = [
    ("project", "VARCHAR"),
    ("room", "VARCHAR"),
    ("session_id", "VARCHAR"),
    ("trace_id", "VARCHAR"),
    ("span_id", "VARCHAR"),
    ("parent_span_id", "VARCHAR"),
    ("trace_state", "VARCHAR"),
    ("name", "VARCHAR"),
    ("kind", "VARCHAR"),
    ("service_name", "VARCHAR"),
    ("scope_name", "VARCHAR"),
    ("scope_version", "VARCHAR"),
    ("start_time", TS),
    ("end_time", TS),
    ("duration_ns", "BIGINT"),
    ("status_code", "VARCHAR"),
    ("status_message", "VARCHAR"),
    ("attributes", MAP),
    ("resource_attributes", MAP),
    (
        "events",
        f"STRUCT(time {TS}, name VARCHAR, attributes {MAP}, dropped_attributes_count UINTEGER)[]",
    ),
    (
        "links",
        f"STRUCT(trace_id VARCHAR, span_id VARCHAR, trace_state VARCHAR, attributes {MAP},"
        " dropped_attributes_count UINTEGER, flags UINTEGER)[]",
    ),
    ("flags", "UINTEGER"),
    ("dropped_attributes_count", "UINTEGER"),
    ("dropped_events_count", "UINTEGER"),
    ("dropped_links_count", "UINTEGER"),
    ("scope_attributes", "JSON"),
    ("received_at", TS),
]

# The logs table as versions 1 to 5 stored it (SPEC 4's columns, in its order): the logs
# view's columns.
V1_LOGS: list[tuple[str, str]] = [
    ("project", "VARCHAR"),
    ("room", "VARCHAR"),
    ("session_id", "VARCHAR"),
    ("time", TS),
    ("observed_time", TS),
    ("severity_number", "INTEGER"),
    ("severity_text", "VARCHAR"),
    ("body", "VARCHAR"),
    ("trace_id", "VARCHAR"),
    ("span_id", "VARCHAR"),
    ("flags", "UINTEGER"),
    ("service_name", "VARCHAR"),
    ("scope_name", "VARCHAR"),
    ("scope_version", "VARCHAR"),
    ("event_name", "VARCHAR"),
    ("attributes", MAP),
    ("resource_attributes", MAP),
    ("dropped_attributes_count", "UINTEGER"),
    ("received_at", TS),
]

# How version 3's span_data stores the spans columns it does not keep as they are (see
# STORAGE_TABLES below); every other column keeps its name, type and place.
_STORED_AS: dict[str, list[tuple[str, str]]] = {
    "end_time": [],  # start_time + duration_ns
    "attributes": [("attribute_keyset", "UBIGINT"), ("attribute_values", "VARCHAR[]")],
    "resource_attributes": [("resource_id", "UBIGINT")],
}

# (column, DuckDB type) in table order.
TABLES: dict[str, list[tuple[str, str]]] = {
    "span_data": [
        column for name, sql_type in V1_SPANS for column in _STORED_AS.get(name, [(name, sql_type)])
    ],
    # Version 6: the logs' resources stored once, as the spans' are (see STORAGE_TABLES).
    "log_data": [
        ("resource_id", "UBIGINT") if name == "resource_attributes" else (name, sql_type)
        for name, sql_type in V1_LOGS
    ],
    "metric_points": [
        ("project", "VARCHAR"),
        ("room", "VARCHAR"),
        ("session_id", "VARCHAR"),
        ("name", "VARCHAR"),
        ("description", "VARCHAR"),
        ("unit", "VARCHAR"),
        ("type", "VARCHAR"),
        ("temporality", "VARCHAR"),
        ("is_monotonic", "BOOLEAN"),
        ("start_time", TS),
        ("time", TS),
        ("value", "DOUBLE"),
        ("count", "UBIGINT"),
        ("sum", "DOUBLE"),
        ("min", "DOUBLE"),
        ("max", "DOUBLE"),
        ("bucket_counts", "UBIGINT[]"),
        ("explicit_bounds", "DOUBLE[]"),
        ("scale", "INTEGER"),
        ("zero_count", "UBIGINT"),
        ("zero_threshold", "DOUBLE"),
        ("positive_offset", "INTEGER"),
        ("positive_bucket_counts", "UBIGINT[]"),
        ("negative_offset", "INTEGER"),
        ("negative_bucket_counts", "UBIGINT[]"),
        ("quantiles", "STRUCT(quantile DOUBLE, value DOUBLE)[]"),
        (
            "exemplars",
            f"STRUCT(time {TS}, value DOUBLE, trace_id VARCHAR, span_id VARCHAR,"
            f" filtered_attributes {MAP})[]",
        ),
        ("flags", "UINTEGER"),
        ("service_name", "VARCHAR"),
        ("scope_name", "VARCHAR"),
        ("scope_version", "VARCHAR"),
        ("attributes", MAP),
        ("resource_attributes", MAP),
        ("received_at", TS),
    ],
    "sessions": [
        ("session_id", "VARCHAR PRIMARY KEY"),
        ("project", "VARCHAR"),
        ("room", "VARCHAR"),
        ("source", "VARCHAR"),
        ("started_at", TS),
        ("last_seen_at", TS),
        ("ended_at", TS),
        ("span_count", "BIGINT"),
        ("log_count", "BIGINT"),
        ("metric_point_count", "BIGINT"),
        ("error_count", "BIGINT"),
        ("services", "VARCHAR[]"),
    ],
    "resources": [
        ("resource_id", "UBIGINT PRIMARY KEY"),
        ("attributes", MAP),
    ],
    "attribute_keysets": [
        ("keyset_id", "UBIGINT PRIMARY KEY"),
        ("keys", "VARCHAR[]"),
    ],
    "session_events": [
        ("session_id", "VARCHAR"),
        ("project", "VARCHAR"),
        ("room", "VARCHAR"),
        ("time", TS),
        ("type", "VARCHAR"),
        ("data", "JSON"),
    ],
}

SIGNAL_TABLES = ("spans", "logs", "metric_points")

# Where each signal's rows are stored (version 3): spans in ``span_data`` behind the ``spans``
# view that SQL users and SPEC 4 see. span_data has no end_time (start + duration); it keeps a
# resource id instead of the resource's attributes, which live once in ``resources``; and its
# attributes as the id of their key list (``attribute_keysets``, one row per distinct list of
# keys, e.g. one per instrumented operation) plus the list of values in the same order. DuckDB
# appends a VARCHAR[] ~1.6x faster than a MAP and the keys are not stored per span. Since
# version 6 log records are in ``log_data`` behind the ``logs`` view, with a resource id too.
STORAGE_TABLES = {"spans": "span_data", "logs": "log_data", "metric_points": "metric_points"}


def storage_table(signal: str) -> str:
    return STORAGE_TABLES.get(signal, signal)


# Shared rows the spans refer to: table → its id column.
SHARED_TABLES = {"resources": "resource_id", "attribute_keysets": "keyset_id"}

# A span row ``s`` joined to its resource ``r`` and its keyset ``k``; a log_data row ``l`` to
# its resource ``r``.
RESOURCE_JOIN = "LEFT JOIN resources {r} ON {r}.resource_id = {s}.resource_id"
# The resources as stored, where one id may have several rows, all the same (a lake's replicas
# each insert a resource they have not seen yet; its ``resources`` view keeps one row an id):
# what a lookup of a few ids reads (query.library.records.with_resources), with the ids as
# constants DuckDB filters the scan on.
RESOURCE_ROWS = "resource_rows"
RESOURCE_ROWS_SQL = f"CREATE OR REPLACE VIEW {RESOURCE_ROWS} AS SELECT * FROM resources"
KEYSET_JOIN = "LEFT JOIN attribute_keysets {k} ON {k}.keyset_id = {s}.attribute_keyset"
SPAN_JOINS = f"{RESOURCE_JOIN} {KEYSET_JOIN}"
LOG_JOINS = RESOURCE_JOIN.format(r="r", s="l")

_MAP_PA = pa.map_(pa.string(), pa.string())
_TS_PA = pa.timestamp("ns")

# Arrow types of the signal tables' columns, in table order; the decoder builds these.
_PA_SCALARS = {
    "VARCHAR": pa.string(),
    "JSON": pa.string(),
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "UINTEGER": pa.uint32(),
    "UBIGINT": pa.uint64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    TS: _TS_PA,
    MAP: _MAP_PA,
    "UBIGINT[]": pa.list_(pa.uint64()),
    "VARCHAR[]": pa.list_(pa.string()),
    "DOUBLE[]": pa.list_(pa.float64()),
}

_PA_NESTED = {
    ("span_data", "events"): pa.list_(
        pa.struct(
            [
                ("time", _TS_PA),
                ("name", pa.string()),
                ("attributes", _MAP_PA),
                ("dropped_attributes_count", pa.uint32()),
            ]
        )
    ),
    ("span_data", "links"): pa.list_(
        pa.struct(
            [
                ("trace_id", pa.string()),
                ("span_id", pa.string()),
                ("trace_state", pa.string()),
                ("attributes", _MAP_PA),
                ("dropped_attributes_count", pa.uint32()),
                ("flags", pa.uint32()),
            ]
        )
    ),
    ("metric_points", "quantiles"): pa.list_(
        pa.struct([("quantile", pa.float64()), ("value", pa.float64())])
    ),
    ("metric_points", "exemplars"): pa.list_(
        pa.struct(
            [
                ("time", _TS_PA),
                ("value", pa.float64()),
                ("trace_id", pa.string()),
                ("span_id", pa.string()),
                ("filtered_attributes", _MAP_PA),
            ]
        )
    ),
}


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema a decoded batch of ``table`` has (signal tables only)."""
    fields = []
    for column, sql_type in TABLES[table]:
        sql_type = sql_type.removesuffix(" PRIMARY KEY")
        pa_type = _PA_NESTED.get((table, column)) or _PA_SCALARS[sql_type]
        fields.append(pa.field(column, pa_type))
    return pa.schema(fields)


ARROW_SCHEMAS: dict[str, pa.Schema] = {
    t: arrow_schema(storage_table(t)) for t in (*SIGNAL_TABLES, *SHARED_TABLES)
}


def spans_view_sql(source: str, attributes: str) -> str:
    """SPEC 4's ``spans`` view over the span rows of ``source`` (alias ``s``): end_time,
    ``attributes`` (SQL over ``s`` and its keyset ``k``) and resource_attributes put back,
    columns in SPEC order. Ad-hoc SQL reads it; the query library reads the rows and joins the
    resources of those it returns only (a join before ORDER BY … LIMIT would join every match)."""
    return f"CREATE OR REPLACE VIEW spans AS {spans_select_sql(source, attributes)}"


def spans_select_sql(source: str, attributes: str, extra: str = "") -> str:
    """The SELECT of :func:`spans_view_sql`, with ``extra`` columns (SQL over ``s``, ``r``,
    ``k``, each with its alias) after SPEC 4's."""
    derived = {
        "end_time": "make_timestamp_ns(epoch_ns(s.start_time) + s.duration_ns)",
        "attributes": attributes,
        "resource_attributes": "r.attributes",
        # Spans without events or links store NULL there (collector.columns.sparse_list).
        "events": "coalesce(s.events, [])",
        "links": "coalesce(s.links, [])",
    }
    columns = ", ".join(f"{derived[c]} AS {c}" if c in derived else f"s.{c}" for c, _ in V1_SPANS)
    joins = SPAN_JOINS.format(s="s", r="r", k="k")
    return f"SELECT {columns}{', ' + extra if extra else ''} FROM {source} s {joins}"


def logs_view_sql() -> str:
    """SPEC 4's ``logs`` view (version 6): log_data with resource_attributes put back."""
    columns = ", ".join(
        "r.attributes AS resource_attributes" if c == "resource_attributes" else f"l.{c}"
        for c, _ in V1_LOGS
    )
    return f"CREATE OR REPLACE VIEW logs AS SELECT {columns} FROM log_data l {LOG_JOINS}"


def create_table_sql(table: str, columns: list[tuple[str, str]] | None = None) -> str:
    cols = ",\n  ".join(f"{name} {sql_type}" for name, sql_type in columns or TABLES[table])
    return f"CREATE TABLE IF NOT EXISTS {table} (\n  {cols}\n)"


# trace → the start times its spans cover, one row per trace and room per commit (version 5;
# version 2 had no room and the whole hex trace_id). A lookup by trace id reads this small
# table, then only the spans' row groups of those times (zone maps on time-ordered data) and
# rooms (zone maps on the settled ranges that maintenance.compaction sorted by room),
# instead of every trace_id of the store. The trace is keyed by the first 64 bits of its id
# (TRACE_KEY): scanning 1 M integers takes 4.8 ms against 16.9 for 1 M hex strings, in 8
# bytes instead of ~18; two traces sharing them only widen the window, the spans are still read
# by their whole id. Maintained by DuckDBStore.write (rows of
# collector.columns.trace_index_rows, appended by position: keep the column order); retention
# deletes its old rows with the spans.
TRACE_INDEX = "trace_index"
TRACE_INDEX_SQL = (
    f"CREATE TABLE IF NOT EXISTS {TRACE_INDEX}"
    f" (trace_key UBIGINT, first_start {TS}, last_start {TS}, room VARCHAR)"
)
# The key of a hex trace id, as collector.columns.trace_keys computes it.
TRACE_KEY = "CASE WHEN length({c}) >= 16 THEN TRY_CAST('0x' || {c}[1:16] AS UBIGINT) END"

# Ranges of start_time [first_start, last_start) whose spans maintenance.compaction sorted by
# room (version 5: rewritten in span_data; since version 6: moved into span_archive). Version
# 7 adds ``level``: 0 for a range that a move made, n + 1 for one that maintenance.archive_merge
# made of ranges of level n, NULL for a range of version 5 (left in span_data, never merged).
SPAN_CLUSTERS = "span_clusters"
SPAN_CLUSTERS_SQL = (
    f"CREATE TABLE IF NOT EXISTS {SPAN_CLUSTERS}"
    f" (first_start {TS}, last_start {TS}, spans BIGINT, clustered_at {TS}, level INTEGER)"
)

# The attribute keys that occur in spans, per map ('span' or 'resource') (version 2). A search
# on ``--attrs K=V`` skips a map lookup on every row when K never occurs in that map: decoding
# MAP values is the costly part of a scan. Maintained by DuckDBStore.write (keys it has not seen
# yet); retention leaves it, so it may hold keys no span has any more (only costs a lookup).
ATTRIBUTE_KEYS = "span_attribute_keys"
_PK = "PRIMARY KEY (map, key)"
ATTRIBUTE_KEYS_SQL = (
    f"CREATE TABLE IF NOT EXISTS {ATTRIBUTE_KEYS} (map VARCHAR, key VARCHAR, {_PK})"
)
ATTRIBUTE_KEYS_INSERT = f"INSERT OR IGNORE INTO {ATTRIBUTE_KEYS} VALUES (?, ?)"
ATTRIBUTE_KEYS_LOAD = f"SELECT map, key FROM {ATTRIBUTE_KEYS}"
