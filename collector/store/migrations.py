"""Each schema version's steps, frozen: a migration takes a store file from version N-1 to N.

The steps are literal SQL, written out as each version made its tables and views, and never
change: a file may still be at any old version, and what its migrations do must not depend
on today's definitions (collector.store.schema). A change to the layout is a new version with
steps of its own, appended here, plus the change to the definitions in schema.py.

A new file does not run these steps: :func:`migrate` creates it directly at SCHEMA_VERSION
from today's definitions (:func:`~collector.store.layout.latest_sql`) and records that
version, in one transaction. So schema.py alone says what a new file looks like, and the
frozen steps are checked against it rather than against themselves: tests/test_migrations.py
migrates files of every older version, built with these steps, and checks that they end with
the same tables, views, columns (names, types, order) and keys as a new file. A change to
schema.py without a migration, or the other way round, fails there.
"""

from __future__ import annotations

import duckdb

from ..errors import StoreError
from .layout import latest_sql
from .schema import SCHEMA_VERSION
from .statements import transaction

# Version 1: the signals' tables as SPEC 4 described them, and the sessions'.
_V1 = [
    """CREATE TABLE IF NOT EXISTS spans (
  project VARCHAR, room VARCHAR, session_id VARCHAR, trace_id VARCHAR, span_id VARCHAR,
  parent_span_id VARCHAR, trace_state VARCHAR, name VARCHAR, kind VARCHAR, service_name VARCHAR,
  scope_name VARCHAR, scope_version VARCHAR, start_time TIMESTAMP_NS, end_time TIMESTAMP_NS,
  duration_ns BIGINT, status_code VARCHAR, status_message VARCHAR,
  attributes MAP(VARCHAR, VARCHAR), resource_attributes MAP(VARCHAR, VARCHAR),
  events STRUCT(time TIMESTAMP_NS, name VARCHAR, attributes MAP(VARCHAR, VARCHAR),
    dropped_attributes_count UINTEGER)[],
  links STRUCT(trace_id VARCHAR, span_id VARCHAR, trace_state VARCHAR,
    attributes MAP(VARCHAR, VARCHAR), dropped_attributes_count UINTEGER, flags UINTEGER)[],
  flags UINTEGER, dropped_attributes_count UINTEGER, dropped_events_count UINTEGER,
  dropped_links_count UINTEGER, scope_attributes JSON, received_at TIMESTAMP_NS
)""",
    """CREATE TABLE IF NOT EXISTS logs (
  project VARCHAR, room VARCHAR, session_id VARCHAR, time TIMESTAMP_NS,
  observed_time TIMESTAMP_NS, severity_number INTEGER, severity_text VARCHAR, body VARCHAR,
  trace_id VARCHAR, span_id VARCHAR, flags UINTEGER, service_name VARCHAR, scope_name VARCHAR,
  scope_version VARCHAR, event_name VARCHAR, attributes MAP(VARCHAR, VARCHAR),
  resource_attributes MAP(VARCHAR, VARCHAR), dropped_attributes_count UINTEGER,
  received_at TIMESTAMP_NS
)""",
    """CREATE TABLE IF NOT EXISTS metric_points (
  project VARCHAR, room VARCHAR, session_id VARCHAR, name VARCHAR, description VARCHAR,
  unit VARCHAR, type VARCHAR, temporality VARCHAR, is_monotonic BOOLEAN,
  start_time TIMESTAMP_NS, time TIMESTAMP_NS, value DOUBLE, count UBIGINT, sum DOUBLE,
  min DOUBLE, max DOUBLE, bucket_counts UBIGINT[], explicit_bounds DOUBLE[], scale INTEGER,
  zero_count UBIGINT, zero_threshold DOUBLE, positive_offset INTEGER,
  positive_bucket_counts UBIGINT[], negative_offset INTEGER, negative_bucket_counts UBIGINT[],
  quantiles STRUCT(quantile DOUBLE, value DOUBLE)[],
  exemplars STRUCT(time TIMESTAMP_NS, value DOUBLE, trace_id VARCHAR, span_id VARCHAR,
    filtered_attributes MAP(VARCHAR, VARCHAR))[],
  flags UINTEGER, service_name VARCHAR, scope_name VARCHAR, scope_version VARCHAR,
  attributes MAP(VARCHAR, VARCHAR), resource_attributes MAP(VARCHAR, VARCHAR),
  received_at TIMESTAMP_NS
)""",
    """CREATE TABLE IF NOT EXISTS sessions (
  session_id VARCHAR PRIMARY KEY, project VARCHAR, room VARCHAR, source VARCHAR,
  started_at TIMESTAMP_NS, last_seen_at TIMESTAMP_NS, ended_at TIMESTAMP_NS, span_count BIGINT,
  log_count BIGINT, metric_point_count BIGINT, error_count BIGINT, services VARCHAR[]
)""",
    """CREATE TABLE IF NOT EXISTS session_events (
  session_id VARCHAR,
  project VARCHAR,
  room VARCHAR,
  time TIMESTAMP_NS,
  type VARCHAR,
  data JSON
)""",
]

# Version 2: trace_index (trace → the start times of its spans) and span_attribute_keys, both
# filled from the spans there are.
_V2 = [
    "CREATE TABLE IF NOT EXISTS trace_index"
    " (trace_id VARCHAR, first_start TIMESTAMP_NS, last_start TIMESTAMP_NS)",
    "INSERT INTO trace_index SELECT trace_id, min(start_time), max(start_time) FROM spans"
    " WHERE trace_id IS NOT NULL GROUP BY trace_id",
    "CREATE TABLE IF NOT EXISTS span_attribute_keys"
    " (map VARCHAR, key VARCHAR, PRIMARY KEY (map, key))",
    "INSERT OR IGNORE INTO span_attribute_keys"
    " SELECT DISTINCT 'span', unnest(map_keys(attributes)) FROM spans"
    " UNION SELECT DISTINCT 'resource', unnest(map_keys(resource_attributes)) FROM spans",
]

# The spans view of versions 3 to 5, over span_data.
_V3_SPANS_VIEW = """CREATE OR REPLACE VIEW spans AS SELECT s.project, s.room, s.session_id,
  s.trace_id, s.span_id, s.parent_span_id, s.trace_state, s.name, s.kind, s.service_name,
  s.scope_name, s.scope_version, s.start_time,
  make_timestamp_ns(epoch_ns(s.start_time) + s.duration_ns) AS end_time, s.duration_ns,
  s.status_code, s.status_message, map(k.keys, s.attribute_values) AS attributes,
  r.attributes AS resource_attributes, coalesce(s.events, []) AS events,
  coalesce(s.links, []) AS links, s.flags, s.dropped_attributes_count, s.dropped_events_count,
  s.dropped_links_count, s.scope_attributes, s.received_at
FROM span_data s LEFT JOIN resources r ON r.resource_id = s.resource_id
  LEFT JOIN attribute_keysets k ON k.keyset_id = s.attribute_keyset"""

# Version 3: the spans move into span_data (no end_time; the resource as an id into resources;
# the attributes as the id of their keys' list in attribute_keysets plus the list of values),
# behind the spans view. The ids of these rows are DuckDB's hashes (new rows get those of
# collector.columns): either way one id names one set of attributes, one list of keys.
_V3 = [
    """CREATE TABLE IF NOT EXISTS resources (
  resource_id UBIGINT PRIMARY KEY,
  attributes MAP(VARCHAR, VARCHAR)
)""",
    "INSERT INTO resources SELECT hash(resource_attributes), any_value(resource_attributes)"
    " FROM spans GROUP BY hash(resource_attributes)",
    """CREATE TABLE IF NOT EXISTS attribute_keysets (
  keyset_id UBIGINT PRIMARY KEY,
  keys VARCHAR[]
)""",
    "INSERT INTO attribute_keysets SELECT hash(map_keys(attributes)),"
    " any_value(map_keys(attributes)) FROM spans GROUP BY hash(map_keys(attributes))",
    """CREATE TABLE IF NOT EXISTS span_data (
  project VARCHAR, room VARCHAR, session_id VARCHAR, trace_id VARCHAR, span_id VARCHAR,
  parent_span_id VARCHAR, trace_state VARCHAR, name VARCHAR, kind VARCHAR, service_name VARCHAR,
  scope_name VARCHAR, scope_version VARCHAR, start_time TIMESTAMP_NS, duration_ns BIGINT,
  status_code VARCHAR, status_message VARCHAR, attribute_keyset UBIGINT,
  attribute_values VARCHAR[], resource_id UBIGINT,
  events STRUCT(time TIMESTAMP_NS, name VARCHAR, attributes MAP(VARCHAR, VARCHAR),
    dropped_attributes_count UINTEGER)[],
  links STRUCT(trace_id VARCHAR, span_id VARCHAR, trace_state VARCHAR,
    attributes MAP(VARCHAR, VARCHAR), dropped_attributes_count UINTEGER, flags UINTEGER)[],
  flags UINTEGER, dropped_attributes_count UINTEGER, dropped_events_count UINTEGER,
  dropped_links_count UINTEGER, scope_attributes JSON, received_at TIMESTAMP_NS
)""",
    """INSERT INTO span_data SELECT project, room, session_id, trace_id, span_id,
  parent_span_id, trace_state, name, kind, service_name, scope_name, scope_version, start_time,
  duration_ns, status_code, status_message, hash(map_keys(attributes)), map_values(attributes),
  hash(resource_attributes), events, links, flags, dropped_attributes_count,
  dropped_events_count, dropped_links_count, scope_attributes, received_at
FROM spans""",
    "DROP TABLE spans",
    _V3_SPANS_VIEW,
]

# Version 6: span_archive (settled spans, attribute values by position), the span_rows view
# over span_data and span_archive, and the spans view over span_rows. The archive starts
# empty (ranges compacted before stay in span_data, sorted).
_V6_ARCHIVE = [
    """CREATE TABLE IF NOT EXISTS span_archive (
  project VARCHAR, room VARCHAR, session_id VARCHAR, trace_id VARCHAR, span_key UBIGINT,
  span_id VARCHAR, parent_span_id VARCHAR, trace_state VARCHAR, name VARCHAR, kind VARCHAR,
  service_name VARCHAR, scope_name VARCHAR, scope_version VARCHAR, start_time TIMESTAMP_NS,
  duration_ns BIGINT, status_code VARCHAR, status_message VARCHAR, attribute_keyset UBIGINT,
  v1 VARCHAR, v2 VARCHAR, v3 VARCHAR, v4 VARCHAR, v5 VARCHAR, v6 VARCHAR, v7 VARCHAR,
  v8 VARCHAR, v9 VARCHAR, v10 VARCHAR, v11 VARCHAR, v12 VARCHAR, v13 VARCHAR, v14 VARCHAR,
  v15 VARCHAR, v16 VARCHAR, attribute_rest VARCHAR[], resource_id UBIGINT,
  events STRUCT(time TIMESTAMP_NS, name VARCHAR, attributes MAP(VARCHAR, VARCHAR),
    dropped_attributes_count UINTEGER)[],
  links STRUCT(trace_id VARCHAR, span_id VARCHAR, trace_state VARCHAR,
    attributes MAP(VARCHAR, VARCHAR), dropped_attributes_count UINTEGER, flags UINTEGER)[],
  flags UINTEGER, dropped_attributes_count UINTEGER, dropped_events_count UINTEGER,
  dropped_links_count UINTEGER, scope_attributes JSON, received_at TIMESTAMP_NS
)""",
    """CREATE OR REPLACE VIEW span_rows AS SELECT project, room, session_id, trace_id, span_id,
  parent_span_id, trace_state, name, kind, service_name, scope_name, scope_version, start_time,
  duration_ns, status_code, status_message, attribute_keyset, attribute_values, resource_id,
  events, links, flags, dropped_attributes_count, dropped_events_count, dropped_links_count,
  scope_attributes, received_at, NULL::VARCHAR AS v1, NULL::VARCHAR AS v2,
  NULL::VARCHAR AS v3, NULL::VARCHAR AS v4, NULL::VARCHAR AS v5, NULL::VARCHAR AS v6,
  NULL::VARCHAR AS v7, NULL::VARCHAR AS v8, NULL::VARCHAR AS v9, NULL::VARCHAR AS v10,
  NULL::VARCHAR AS v11, NULL::VARCHAR AS v12, NULL::VARCHAR AS v13, NULL::VARCHAR AS v14,
  NULL::VARCHAR AS v15, NULL::VARCHAR AS v16, NULL::VARCHAR[] AS attribute_rest
FROM span_data
UNION ALL SELECT project, room, session_id, trace_id,
  coalesce(span_id, printf('%016x', span_key)) AS span_id, parent_span_id, trace_state, name,
  kind, service_name, scope_name, scope_version, start_time, duration_ns, status_code,
  status_message, attribute_keyset, NULL::VARCHAR[] AS attribute_values, resource_id, events,
  links, flags, dropped_attributes_count, dropped_events_count, dropped_links_count,
  scope_attributes, received_at, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14,
  v15, v16, attribute_rest
FROM span_archive""",
    """CREATE OR REPLACE VIEW spans AS SELECT s.project, s.room, s.session_id, s.trace_id,
  s.span_id, s.parent_span_id, s.trace_state, s.name, s.kind, s.service_name, s.scope_name,
  s.scope_version, s.start_time,
  make_timestamp_ns(epoch_ns(s.start_time) + s.duration_ns) AS end_time, s.duration_ns,
  s.status_code, s.status_message,
  map(k.keys, coalesce(s.attribute_values, list_concat(list_value(s.v1, s.v2, s.v3, s.v4,
    s.v5, s.v6, s.v7, s.v8, s.v9, s.v10, s.v11, s.v12, s.v13, s.v14, s.v15, s.v16),
    coalesce(s.attribute_rest, [])))[1:len(k.keys)]) AS attributes,
  r.attributes AS resource_attributes, coalesce(s.events, []) AS events,
  coalesce(s.links, []) AS links, s.flags, s.dropped_attributes_count, s.dropped_events_count,
  s.dropped_links_count, s.scope_attributes, s.received_at
FROM span_rows s LEFT JOIN resources r ON r.resource_id = s.resource_id
  LEFT JOIN attribute_keysets k ON k.keyset_id = s.attribute_keyset""",
]

# Version 9's span_rows: version 6's, with span_archive's trace id from its two numbers, and
# the first of them as a last column (NULL for span_data's rows).
_V9_SPAN_ROWS = (
    _V6_ARCHIVE[1]
    .replace(
        "UNION ALL SELECT project, room, session_id, trace_id,",
        "UNION ALL SELECT project, room, session_id,\n"
        "  coalesce(trace_id, printf('%016x%016x', trace_hi, trace_lo)) AS trace_id,",
    )
    .replace(
        "NULL::VARCHAR[] AS attribute_rest\nFROM span_data",
        "NULL::VARCHAR[] AS attribute_rest, NULL::UBIGINT AS trace_hi\nFROM span_data",
    )
    .replace(
        "v15, v16, attribute_rest\nFROM span_archive",
        "v15, v16, attribute_rest, trace_hi\nFROM span_archive",
    )
)
assert _V9_SPAN_ROWS.count("trace_hi") == 3

# Version 10: span_rows gets the ids as numbers, for joins (span_archive.TRACE_NUM, SPAN_NUM).
_V10_HOT_NUMS = (
    "coalesce(TRY_CAST('0x' || trace_id[17:32] AS UBIGINT), hash(trace_id)) AS trace_num,"
    " coalesce(TRY_CAST('0x' || span_id AS UBIGINT), hash(span_id)) AS span_num"
)
_V10_ARCHIVED_NUMS = (
    "coalesce(trace_lo, coalesce(TRY_CAST('0x' || trace_id[17:32] AS UBIGINT),"
    " hash(trace_id))) AS trace_num, coalesce(span_key, coalesce(TRY_CAST('0x' || span_id"
    " AS UBIGINT), hash(span_id))) AS span_num"
)
_V10_SPAN_ROWS = _V9_SPAN_ROWS.replace(
    "NULL::UBIGINT AS trace_hi\nFROM span_data",
    f"NULL::UBIGINT AS trace_hi, {_V10_HOT_NUMS}\nFROM span_data",
).replace(
    "attribute_rest, trace_hi\nFROM span_archive",
    f"attribute_rest, trace_hi, {_V10_ARCHIVED_NUMS}\nFROM span_archive",
)
assert _V10_SPAN_ROWS.count("trace_num") == 2

# Version 6 also moves the log records into log_data, behind the logs view. Their resources
# get DuckDB's hash as id, as version 3 did for the spans' (new rows get collector.columns'
# ids; one id still names one set of attributes).
_V6_LOG_DATA = [
    """CREATE TABLE IF NOT EXISTS log_data (
  project VARCHAR, room VARCHAR, session_id VARCHAR, time TIMESTAMP_NS,
  observed_time TIMESTAMP_NS, severity_number INTEGER, severity_text VARCHAR, body VARCHAR,
  trace_id VARCHAR, span_id VARCHAR, flags UINTEGER, service_name VARCHAR, scope_name VARCHAR,
  scope_version VARCHAR, event_name VARCHAR, attributes MAP(VARCHAR, VARCHAR),
  resource_id UBIGINT, dropped_attributes_count UINTEGER, received_at TIMESTAMP_NS
)""",
    "INSERT INTO resources SELECT hash(resource_attributes) AS id, any_value(resource_attributes)"
    " FROM logs WHERE id NOT IN (SELECT resource_id FROM resources) GROUP BY id",
    """INSERT INTO log_data SELECT project, room, session_id, time, observed_time,
  severity_number, severity_text, body, trace_id, span_id, flags, service_name, scope_name,
  scope_version, event_name, attributes, hash(resource_attributes), dropped_attributes_count,
  received_at
FROM logs ORDER BY time""",
    "DROP TABLE logs",
    """CREATE OR REPLACE VIEW logs AS SELECT l.project, l.room, l.session_id, l.time,
  l.observed_time, l.severity_number, l.severity_text, l.body, l.trace_id, l.span_id, l.flags,
  l.service_name, l.scope_name, l.scope_version, l.event_name, l.attributes,
  r.attributes AS resource_attributes, l.dropped_attributes_count, l.received_at
FROM log_data l LEFT JOIN resources r ON r.resource_id = l.resource_id""",
]

MIGRATIONS: dict[int, list[str]] = {
    1: _V1,
    2: _V2,
    3: _V3,
    # span_data stores NULL for a span without events or links; the view shows [] again.
    4: [_V3_SPANS_VIEW],
    # trace_index is keyed by the trace id's first 64 bits and gets the spans' room: rebuilt
    # from the spans, in time order like the rows the writer appends (retention deletes the
    # oldest); a NULL room is a group of its own. span_clusters (maintenance.compaction) starts
    # empty.
    5: [
        "DROP TABLE IF EXISTS trace_index",
        "CREATE TABLE IF NOT EXISTS trace_index"
        " (trace_key UBIGINT, first_start TIMESTAMP_NS, last_start TIMESTAMP_NS, room VARCHAR)",
        "INSERT INTO trace_index SELECT CASE WHEN length(trace_id) >= 16"
        " THEN TRY_CAST('0x' || trace_id[1:16] AS UBIGINT) END AS k,"
        " min(start_time), max(start_time), room FROM span_data"
        " WHERE k IS NOT NULL GROUP BY trace_id, room ORDER BY 2",
        "CREATE TABLE IF NOT EXISTS span_clusters (first_start TIMESTAMP_NS,"
        " last_start TIMESTAMP_NS, spans BIGINT, clustered_at TIMESTAMP_NS)",
    ],
    6: [*_V6_ARCHIVE, *_V6_LOG_DATA],
    # span_clusters gets each range's level (maintenance.archive_merge): 0 for those in
    # span_archive, NULL for those that version 5 sorted in span_data.
    7: [
        "ALTER TABLE span_clusters ADD COLUMN level INTEGER",
        "UPDATE span_clusters c SET level = 0 WHERE EXISTS (SELECT 1 FROM span_archive a"
        " WHERE a.start_time >= c.first_start AND a.start_time < c.last_start)",
    ],
    # The forwarding queue (collector.store.outbox): batches waiting to be sent upstream (their
    # payloads in segment files, collector.store.spool), and each endpoint's progress and
    # counters. Both start empty.
    8: [
        "CREATE TABLE IF NOT EXISTS forward_outbox (seq BIGINT, signal VARCHAR, records BIGINT,"
        " bytes BIGINT, queued_at TIMESTAMP_NS, segment BIGINT, spool_offset BIGINT)",
        "CREATE TABLE IF NOT EXISTS forward_endpoints (endpoint VARCHAR PRIMARY KEY, url VARCHAR,"
        " active BOOLEAN, acked_seq BIGINT, sent_batches BIGINT, sent_records BIGINT,"
        " dropped_batches BIGINT, dropped_records BIGINT, last_error VARCHAR,"
        " last_error_at TIMESTAMP_NS, last_sent_at TIMESTAMP_NS)",
    ],
    # span_archive keeps hex trace ids as two numbers (their first and last 64 bits, last in
    # its columns), trace_id only the others; rows archived before keep theirs in trace_id.
    9: [
        "ALTER TABLE span_archive ADD COLUMN trace_hi UBIGINT",
        "ALTER TABLE span_archive ADD COLUMN trace_lo UBIGINT",
        _V9_SPAN_ROWS,
    ],
    # ... and a view of the resources as stored, for lookups by id (schema.RESOURCE_ROWS).
    10: [_V10_SPAN_ROWS, "CREATE OR REPLACE VIEW resource_rows AS SELECT * FROM resources"],
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
    if found == 0:  # a new file: today's layout at once
        _run(con, SCHEMA_VERSION, latest_sql())
        return 0
    for version in range(found + 1, SCHEMA_VERSION + 1):
        _run(con, version, MIGRATIONS[version])
    return found


def _run(con: duckdb.DuckDBPyConnection, version: int, statements: list[str]) -> None:
    """Run ``statements`` and record ``version``, in one transaction."""
    with transaction(con):
        for statement in statements:
            con.execute(statement)
        con.execute(
            "INSERT OR REPLACE INTO roomscope_meta VALUES ('schema_version', ?)", [str(version)]
        )
