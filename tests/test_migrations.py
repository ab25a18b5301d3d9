"""Frozen migrations: an old file, built with the literal steps of its version, migrates to the
layout of a new file (which the store creates from today's definitions, not from the steps).

A file of every version 1 … SCHEMA_VERSION holds spans (attributes, events, links), log
records, metric points, sessions and session events written at version 1; once a store opens
it, its tables, views, columns (name, type, place) and keys equal a new store's, and every row
reads back through the ``spans`` and ``logs`` views as version 1 stored it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from conftest import make_store, read_store

from collector.store.migrations import MIGRATIONS
from collector.store.schema import SCHEMA_VERSION
from query.library.traces import get_trace

NOW = 1_700_000_000_000_000_000
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"

# Each frozen version's steps, whitespace aside: changing what an old version does breaks the
# files already at the versions after it. Change the layout with a new version instead.
FROZEN = {
    1: "91036d4ca2d5ad75",
    2: "02a9beb1a4672961",
    3: "02d86ee71a7b3f59",
    4: "85464d975878b476",
    5: "2f2e0812486b6e6f",
    6: "9f6ceeaf38ebc1af",
    7: "bd223f3f8411d838",
    8: "f9ff526057967fd9",
}

# The layout of a store file: its tables and views with their columns, and its keys.
LAYOUT = {
    "columns": "SELECT table_name, column_index, column_name, data_type, is_nullable,"
    " column_default FROM duckdb_columns()"
    " WHERE database_name = current_database() AND schema_name = 'main' ORDER BY ALL",
    "tables": "SELECT table_name FROM duckdb_tables()"
    " WHERE database_name = current_database() AND schema_name = 'main' ORDER BY ALL",
    "views": "SELECT view_name FROM duckdb_views()"
    " WHERE database_name = current_database() AND schema_name = 'main' AND NOT internal"
    " ORDER BY ALL",
    "constraints": "SELECT table_name, constraint_type, constraint_column_names"
    " FROM duckdb_constraints() WHERE database_name = current_database()"
    " AND schema_name = 'main' ORDER BY ALL",
}

RESOURCE = {"service.name": "checkout", "host.name": "box-1"}
EVENT = {
    "time": datetime(2023, 11, 14, 22, 13, 20, 10),
    "name": "exception",
    "attributes": {"exception.type": "ValueError"},
    "dropped_attributes_count": 0,
}
LINK = {
    "trace_id": OTHER_TRACE,
    "span_id": "00f067aa0ba902b7",
    "trace_state": "",
    "attributes": {"link.kind": "follows"},
    "dropped_attributes_count": 1,
    "flags": 1,
}


def _span(span_id, parent, room, offset, attributes, events, links, trace=TRACE):
    start, duration = NOW + offset, 1_000 + offset
    return [
        "shop", room, "sess-1", trace, span_id, parent, "", f"op-{span_id[-2:]}",
        "SPAN_KIND_SERVER", "checkout", "otel.scope", "1.0", start, start + duration, duration,
        "STATUS_CODE_ERROR" if events else "STATUS_CODE_UNSET", "", attributes, RESOURCE,
        events, links, 1, 0, 0, 0, '{"scope.attr": "x"}', NOW + 5_000,
    ]  # fmt: skip


SPANS = [
    _span("00000000000000a1", None, "kitchen", 0, {"http.method": "GET", "user": "u1"}, [], []),
    _span("00000000000000a2", "00000000000000a1", "kitchen", 7, {"db": "pg"}, [EVENT], [LINK]),
    _span("00000000000000a3", "00000000000000a1", "lobby", 9, {}, [], []),
    _span("00000000000000b1", None, None, 20, {"http.method": "POST"}, [], [], OTHER_TRACE),
]
LOGS = [
    [
        "shop", "kitchen", "sess-1", NOW + 3, NOW + 4, 17, "ERROR", "payment failed", TRACE,
        "00000000000000a2", 1, "checkout", "otel.scope", "1.0", "payment.failure",
        {"order": "42"}, RESOURCE, 0, NOW + 5_000,
    ],
    [
        "shop", "lobby", None, NOW + 1, NOW + 2, 9, "INFO", "hello", None, None, 0, "greeter",
        "", "", None, {}, {"service.name": "greeter"}, 2, NOW + 5_000,
    ],
]  # fmt: skip

# What version 1's tables held, read back (through the spans and logs views once they are),
# timestamps in ns.
READS = {
    "spans": "SELECT * REPLACE (epoch_ns(start_time) AS start_time, epoch_ns(end_time) AS"
    " end_time, epoch_ns(received_at) AS received_at) FROM spans ORDER BY span_id",
    "logs": "SELECT * REPLACE (epoch_ns(time) AS time, epoch_ns(observed_time) AS"
    " observed_time, epoch_ns(received_at) AS received_at) FROM logs ORDER BY time",
    "metric_points": "SELECT * REPLACE (epoch_ns(time) AS time, epoch_ns(received_at) AS"
    " received_at) FROM metric_points ORDER BY name",
    "sessions": "SELECT * REPLACE (epoch_ns(started_at) AS started_at, epoch_ns(last_seen_at)"
    " AS last_seen_at) FROM sessions",
    "session_events": "SELECT * REPLACE (epoch_ns(time) AS time) FROM session_events ORDER BY time",
}


def _ts(n: int) -> str:
    return f"make_timestamp_ns({n})"


def write_version_1_rows(con: duckdb.DuckDBPyConnection) -> None:
    """A few rows of every table that version 1 has, as its collector wrote them."""
    ts = {"start_time", "end_time", "received_at", "time", "observed_time"}
    for table, rows in (("spans", SPANS), ("logs", LOGS)):
        columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
        values = ", ".join("make_timestamp_ns(?)" if c in ts else "?" for c in columns)
        con.executemany(f"INSERT INTO {table} VALUES ({values})", rows)
    con.execute(
        "INSERT INTO metric_points (project, room, session_id, name, unit, type, is_monotonic,"
        " time, value, count, sum, bucket_counts, explicit_bounds, service_name, attributes,"
        " resource_attributes, received_at) VALUES"
        f" ('shop', 'kitchen', 'sess-1', 'requests', '1', 'sum', true, {_ts(NOW)}, 3.0, NULL,"
        " NULL, NULL, NULL, 'checkout', MAP {'route': '/pay'}, MAP {'service.name': 'checkout'},"
        f" {_ts(NOW + 5_000)}),"
        f" ('shop', 'kitchen', 'sess-1', 'latency', 'ms', 'histogram', NULL, {_ts(NOW)}, NULL,"
        " 4, 10.5, [1, 2, 1], [1.0, 5.0], 'checkout', MAP {}, MAP {'service.name': 'checkout'},"
        f" {_ts(NOW + 5_000)})"
    )
    con.execute(
        "INSERT INTO sessions VALUES ('sess-1', 'shop', 'kitchen', 'attribute',"
        f" {_ts(NOW)}, {_ts(NOW + 20)}, NULL, 4, 2, 2, 1, ['checkout', 'greeter'])"
    )
    con.execute(
        f"INSERT INTO session_events VALUES ('sess-1', 'shop', 'kitchen', {_ts(NOW)}, 'started',"
        f" '{{\"source\": \"attribute\"}}'), ('sess-1', 'shop', 'kitchen', {_ts(NOW + 20)},"
        " 'error', '{\"span_id\": \"00000000000000a2\"}')"
    )


def old_file(path: Path, version: int) -> dict[str, list[tuple]]:
    """A store file at ``version``: version 1's tables (from its frozen SQL) with rows, then
    the steps of versions 2 … ``version``. Returns what READS read at version 1."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE roomscope_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    for statement in MIGRATIONS[1]:
        con.execute(statement)
    write_version_1_rows(con)
    rows = {name: con.execute(sql).fetchall() for name, sql in READS.items()}
    for v in range(2, version + 1):
        for statement in MIGRATIONS[v]:
            con.execute(statement)
    con.execute("INSERT INTO roomscope_meta VALUES ('schema_version', ?)", [str(version)])
    con.close()
    return rows


def layout(db: Path) -> dict[str, list[tuple]]:
    return {name: read_store(db, sql) for name, sql in LAYOUT.items()}


@pytest.fixture(scope="module")
def fresh_layout(tmp_path_factory) -> dict[str, list[tuple]]:
    db = tmp_path_factory.mktemp("fresh") / "fresh.duckdb"
    store = make_store(db)
    store.open()
    store.close()
    assert read_store(db, "SELECT value FROM roomscope_meta") == [(str(SCHEMA_VERSION),)]
    return layout(db)


def test_migrations_run_from_version_1_to_the_schema_version_as_literal_sql():
    assert list(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))
    for steps in MIGRATIONS.values():
        assert isinstance(steps, list) and steps
        assert all(isinstance(s, str) and s.strip() for s in steps)


def test_the_steps_of_old_versions_never_change():
    for version, digest in FROZEN.items():
        text = ";".join(" ".join(s.split()) for s in MIGRATIONS[version])
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == digest, (
            f"version {version}'s migration changed; add a version instead"
        )


def test_a_new_store_has_every_table_and_view(fresh_layout):
    assert [t for (t,) in fresh_layout["tables"]] == sorted(
        [
            "attribute_keysets", "forward_endpoints", "forward_outbox", "log_data",
            "metric_points", "resources", "roomscope_meta",
            "session_events", "sessions", "span_archive", "span_attribute_keys",
            "span_clusters", "span_data", "trace_index",
        ]
    )  # fmt: skip
    assert [v for (v,) in fresh_layout["views"]] == ["logs", "resource_rows", "span_rows", "spans"]


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_a_file_of_any_version_migrates_to_the_layout_of_a_new_store(
    tmp_path, fresh_layout, version
):
    db = tmp_path / f"v{version}.duckdb"
    before = old_file(db, version)
    store = make_store(db)
    store.open()
    con = store.cursor()
    try:
        assert {s["span_id"] for s in get_trace(con, TRACE)} == {s[4] for s in SPANS[:3]}
    finally:
        con.close()
        store.close()
    assert read_store(db, "SELECT value FROM roomscope_meta") == [(str(SCHEMA_VERSION),)]
    assert layout(db) == fresh_layout
    assert {name: read_store(db, sql) for name, sql in READS.items()} == before
    assert len(before["spans"]) == len(SPANS) and len(before["logs"]) == len(LOGS)
    # The tables that versions 2 and 5 filled from the spans there were.
    index = "SELECT trace_key IS NOT NULL, room FROM trace_index ORDER BY first_start"
    assert read_store(db, index) == [(True, "kitchen"), (True, "lobby"), (True, None)]
    keys = "SELECT map, key FROM span_attribute_keys ORDER BY ALL"
    assert read_store(db, keys) == [
        ("resource", "host.name"),
        ("resource", "service.name"),
        ("span", "db"),
        ("span", "http.method"),
        ("span", "user"),
    ]
