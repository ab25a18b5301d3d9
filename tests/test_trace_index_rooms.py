"""Schema version 5: ``trace_index`` keeps each trace's rooms, so a trace read also filters
span_data on them (old ranges sorted by room: zone maps skip the other rooms' row groups).

Covers: the decoder's rows per (trace, room), a NULL room as a group of its own; the rows a
store written through the write path holds; ``roomscope trace`` on a trace spanning two rooms
and on one with a room-less span; the read being narrowed to the index's rooms; and the 4 → 5
migration (trace_index rebuilt with rooms, span_clusters created).
"""

from __future__ import annotations

import json
import time

import duckdb
import pyarrow as pa
from click.testing import CliRunner
from conftest import make_store, read_store
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_factory import trace_request
from test_span_storage import write

from collector.columns import trace_index_rows, trace_keys
from collector.store.migrations import MIGRATIONS
from collector.store.schema import SCHEMA_VERSION, TRACE_KEY
from query.cli import main
from query.library.traces import get_trace

NOW = time.time_ns()
TRACE = "5e" * 16
KEY = int(TRACE[:16], 16)  # trace_index.trace_key: the first 64 bits of the id
A, B = "a1" * 16, "b2" * 8 + "ff" * 8


def one_trace_in_rooms(*rooms: str | None, seed: int = 0) -> ExportTraceServiceRequest:
    """One request: 4 spans of trace TRACE from a resource per room (None: no room attribute),
    interleaved in time (1 ms apart in a room, each room 0.25 ms after the previous one), so the
    trace's time window alone does not tell the rooms' spans apart."""
    req = ExportTraceServiceRequest()
    for i, room in enumerate(rooms):
        part = trace_request(4, room=room, start_ns=NOW - 10**9 + i * 250_000, seed=seed + i)
        for span in part.resource_spans[0].scope_spans[0].spans:
            span.trace_id = bytes.fromhex(TRACE)
        req.resource_spans.extend(part.resource_spans)
    return req


def span_ids(req: ExportTraceServiceRequest) -> list[str]:
    return sorted(
        sp.span_id.hex() for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans
    )


def cli_trace(db, trace_id: str) -> list[dict]:
    result = CliRunner().invoke(main, ["--db", str(db), "trace", trace_id, "-o", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["spans"]


def test_trace_index_rows_has_one_row_per_trace_and_room():
    ts = pa.timestamp("ns")
    spans = pa.table(
        {
            "trace_id": [A, A, B, None, A, B, A, B],
            "room": ["x", "y", None, "x", "x", "y", None, None],
            "start_time": pa.array([50, 30, 70, 10, 90, 80, 20, 60], ts),
        }
    )
    rows = trace_index_rows(spans)
    assert rows.column_names == ["trace_key", "first_start", "last_start", "room"]
    a, b = int(A[:16], 16), int(B[:16], 16)
    got = zip(
        rows["trace_key"].to_pylist(),
        [r or "" for r in rows["room"].to_pylist()],
        rows["first_start"].cast(pa.int64()).to_pylist(),
        rows["last_start"].cast(pa.int64()).to_pylist(),
        strict=True,
    )
    # the NULL room is its own group (a NULL in the output, "" above); no row for NULL trace ids
    assert sorted(got) == [
        (a, "", 20, 20),
        (a, "x", 50, 90),
        (a, "y", 30, 30),
        (b, "", 60, 70),
        (b, "y", 80, 80),
    ]
    assert rows["room"].null_count == 2
    # a batch of one room groups by trace alone
    one = trace_index_rows(spans.set_column(1, "room", pa.array(["z"] * 8)))
    got = zip(
        one["trace_key"].to_pylist(),
        one["room"].to_pylist(),
        one["first_start"].cast(pa.int64()).to_pylist(),
        one["last_start"].cast(pa.int64()).to_pylist(),
        strict=True,
    )
    assert sorted(got) == [(a, "z", 20, 90), (b, "z", 60, 80)]


def test_trace_keys_are_the_first_64_bits_of_the_ids_as_sql_computes_them():
    ids = [A, B, TRACE, "0" * 32, "f" * 32, None, "0123456789ABCDEF" + "0" * 16]
    keys = trace_keys(pa.array(ids).slice(0)).to_pylist()
    assert keys == [int(t[:16], 16) if t else None for t in ids]
    con = duckdb.connect()
    sql = f"SELECT {TRACE_KEY.format(c='t')} FROM unnest(?::VARCHAR[]) WITH ORDINALITY u(t, i)"
    assert [r[0] for r in con.execute(sql + " ORDER BY i", [ids]).fetchall()] == keys
    assert trace_keys(pa.array(ids).slice(2, 3)).to_pylist() == keys[2:5]


def test_store_written_through_the_write_path_indexes_each_trace_per_room(tmp_path):
    db = tmp_path / "w.duckdb"
    store = make_store(db)
    store.open()
    write(
        store,
        one_trace_in_rooms("kitchen", "lobby", None),
        trace_request(16, room="lobby", start_ns=NOW - 10**9, seed=7),
        trace_request(16, room=None, start_ns=NOW - 10**9, seed=8),
    )
    store.close()
    key = TRACE_KEY.format(c="trace_id")
    by_spans = f"SELECT {key}, room, min(start_time), max(start_time) FROM span_data GROUP BY ALL"
    by_index = "SELECT trace_key, room, first_start, last_start FROM trace_index"
    assert sorted(read_store(db, by_index), key=str) == sorted(read_store(db, by_spans), key=str)
    rooms = read_store(db, "SELECT room FROM trace_index WHERE trace_key = ? ORDER BY 1", [KEY])
    assert rooms == [("kitchen",), ("lobby",), (None,)]
    assert len(read_store(db, by_index)) == 3 + 2 + 2  # traces of 8 spans
    columns = "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?"
    assert read_store(db, columns, ["span_clusters"]) == [
        ("first_start", "TIMESTAMP_NS"),
        ("last_start", "TIMESTAMP_NS"),
        ("spans", "BIGINT"),
        ("clustered_at", "TIMESTAMP_NS"),
        ("level", "INTEGER"),  # version 7
    ]


def test_trace_read_returns_every_span_of_a_trace_in_two_rooms_or_with_a_roomless_span(tmp_path):
    two_rooms = one_trace_in_rooms("kitchen", "lobby", seed=1)
    for rooms, sent in ((("kitchen", "lobby"), two_rooms), (("lobby", None), None)):
        db = tmp_path / f"t{len(rooms)}{rooms[-1]}.duckdb"
        sent = sent or one_trace_in_rooms(*rooms, seed=2)
        store = make_store(db)
        store.open()
        write(store, sent, trace_request(24, room="kitchen", start_ns=NOW - 10**9, seed=3))
        store.close()
        spans = cli_trace(db, TRACE)
        assert sorted(s["span_id"] for s in spans) == span_ids(sent), rooms
        assert sorted({s["room"] or "" for s in spans}) == sorted(r or "" for r in rooms)


def test_the_span_read_is_narrowed_to_the_rooms_of_the_index(tmp_path):
    """The room condition is there: with the lobby's index row gone, its spans are not read."""
    db = tmp_path / "n.duckdb"
    store = make_store(db)
    store.open()
    write(store, one_trace_in_rooms("kitchen", "lobby", seed=4))
    con = store.cursor()
    assert {s["room"] for s in get_trace(con, TRACE)} == {"kitchen", "lobby"}
    con.execute("DELETE FROM trace_index WHERE room = 'lobby'")
    assert {s["room"] for s in get_trace(con, TRACE)} == {"kitchen"}
    con.close()
    store.close()


def test_migration_from_version_4_rebuilds_the_trace_index_with_rooms(tmp_path):
    db = tmp_path / "v4.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE roomscope_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    for version in range(1, 5):
        for statement in MIGRATIONS[version]:
            con.execute(statement)
    con.execute("INSERT INTO roomscope_meta VALUES ('schema_version', '4')")
    rooms = ["kitchen", "lobby", None]
    for i in range(9):
        con.execute(
            "INSERT INTO span_data (trace_id, span_id, room, name, start_time, duration_ns)"
            " VALUES (?, ?, ?, 'op', make_timestamp_ns(?), 5)",
            [TRACE, f"{i + 1:016x}", rooms[i % 3], NOW + i],
        )
    con.execute("INSERT INTO span_data (span_id, room, name) VALUES ('00000000000000ff', 'x', 'o')")
    con.execute(
        "INSERT INTO trace_index VALUES (?, make_timestamp_ns(?), make_timestamp_ns(?))",
        [TRACE, NOW, NOW + 8],
    )
    con.close()
    expected = [f"{i + 1:016x}" for i in range(9)]
    store = make_store(db)
    store.open()
    store.close()
    assert read_store(db, "SELECT value FROM roomscope_meta") == [(str(SCHEMA_VERSION),)]
    index = "SELECT room, epoch_ns(first_start), epoch_ns(last_start) FROM trace_index"
    assert read_store(db, f"{index} WHERE trace_key = ? ORDER BY 1", [KEY]) == [
        ("kitchen", NOW, NOW + 6),
        ("lobby", NOW + 1, NOW + 7),
        (None, NOW + 2, NOW + 8),
    ]
    assert read_store(db, "SELECT count(*) FROM trace_index") == [(3,)]  # not the trace-less span
    assert read_store(db, "SELECT count(*) FROM span_clusters") == [(0,)]
    assert [s["span_id"] for s in cli_trace(db, TRACE)] == expected
