"""Schema version 6: compaction moves settled spans into ``span_archive``, attribute values one
column per keyset position (``v1`` … ``v16``, then ``attribute_rest``), and every read goes
through ``span_rows`` (both tables).

Covers: the archive's columns after a move (positions, the rest past 16, spans without
attributes); every read agreeing before and after the move (the ``spans`` view's attribute
maps, searches on values at a low position, past 16, on a key in more keysets than the search
writes CASE branches for, session and trace reads); retention and ``roomscope prune`` on
archived spans; and the 5 → 6 migration of a file that holds compacted ranges.
"""

from __future__ import annotations

import time

import duckdb
from click.testing import CliRunner
from conftest import make_reader, make_store, make_tagger, read_store
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from otlp_factory import kv, trace_request
from test_span_storage import write

from collector.decode import decode_body
from collector.store import SCHEMA_VERSION, DuckDBStore
from collector.store.maintenance.compaction import compact_all
from collector.store.maintenance.retention import prune_connection
from collector.store.migrations import MIGRATIONS
from collector.store.span_archive import POSITIONS, trace_ids_where
from query.cli import main
from query.library.filters import SpanFilter
from query.library.reader import Reader
from query.library.search import CASE_LIMIT

HOUR = 3_600 * 10**9
BASE = (time.time_ns() - 30 * HOUR) // HOUR * HOUR
EXTRA = 8  # attributes added to every third span: 18 in all, two past the archive's columns


def varied_request(hour: int, room: str, seed: int):
    """trace_request's spans, every third with EXTRA more attributes, every fifth with none,
    every seventh with a key of its own (many keysets hold ``shared``)."""
    req = trace_request(24, room=room, session=f"s-{room}", start_ns=BASE + hour * HOUR, seed=seed)
    for i, span in enumerate(req.resource_spans[0].scope_spans[0].spans):
        if i % 5 == 0:
            del span.attributes[:]
        elif i % 3 == 0:
            span.attributes.extend(kv(f"extra.{j}", f"x{seed}-{i}-{j}") for j in range(EXTRA))
        if i % 7 == 0:
            span.attributes.append(kv(f"own.{seed}.{i}", "1"))
            span.attributes.append(kv("shared", f"v{i % 2}"))
    return req


def filled_store(tmp_path) -> DuckDBStore:
    store = make_store(tmp_path / "a.duckdb")
    store.open()
    for h in range(4):
        for j, room in enumerate(("lobby", "kitchen", "attic")):
            write(store, varied_request(h, room, seed=h * 10 + j))
    return store


ALL_LOGS = "SELECT * FROM logs ORDER BY time, body"


def write_logs(store: DuckDBStore) -> None:
    """Log records of two resources (two rooms' services)."""
    req = ExportLogsServiceRequest()
    for r, room in enumerate(("lobby", "kitchen")):
        rl = req.resource_logs.add()
        rl.resource.attributes.extend([kv("service.name", f"svc-{r}"), kv("room", room)])
        scope = rl.scope_logs.add()
        for i in range(5):
            lr = scope.log_records.add(time_unix_nano=BASE + i * 10**9, severity_number=9 + 4 * r)
            lr.body.string_value = f"{room} {i}"
    d = decode_body("logs", req.SerializeToString(), "protobuf", make_tagger())
    store.append({**{k: [t] for k, t in d.side.items()}, "logs": [d.table]})


def reads(reader: Reader, con: duckdb.DuckDBPyConnection) -> dict:
    def ids(f: SpanFilter) -> list[str]:
        return sorted(s["span_id"] for s in reader.traces(f)["spans"])

    trace = con.execute("SELECT min(trace_id) FROM span_rows WHERE room = 'kitchen'").fetchone()[0]
    return {
        "view": con.execute("SELECT * FROM spans ORDER BY span_id").fetchall(),
        "tool": ids(SpanFilter(attrs=(("tool", "search"),), limit=10_000)),
        "room+tool": ids(SpanFilter(room="attic", attrs=(("tool", "calc"),), limit=10_000)),
        "past 16": ids(SpanFilter(attrs=(("extra.7", "x21-3-7"),))),
        "any keyset": ids(SpanFilter(attrs=(("shared", "v1"),), limit=10_000)),
        "has key": ids(SpanFilter(attrs=(("extra.0", None),), limit=10_000)),
        "session": reader.session_spans("s-lobby", SpanFilter(limit=10_000))["spans"],
        "trace": reader.trace(trace)["spans"],
    }


def test_archived_spans_read_back_the_same_through_every_path(tmp_path):
    store = filled_store(tmp_path)
    # Ids the decoder never writes (not 16 or 32 lowercase hex digits) are kept as they are.
    for odd in ("00000000000000AB", "abc", None):
        store.con.execute(
            "INSERT INTO span_data (room, trace_id, span_id, name, start_time, duration_ns)"
            " VALUES ('lobby', ?, ?, 'odd', make_timestamp_ns(?), 1)",
            [odd and odd * 2, odd, BASE + 10**9],
        )
    con = store.cursor()
    reader = make_reader(con)
    keysets = con.execute("SELECT count(*) FROM attribute_keysets WHERE 'shared' IN keys")
    assert keysets.fetchone()[0] > 1  # several keysets place "shared" differently
    before = reads(reader, con)
    assert len(before["past 16"]) == 1 and before["tool"] and before["has key"]
    assert before["any keyset"] and before["room+tool"]
    total = len(before["view"])
    assert compact_all(store, 1, 0, now_ns=BASE + 5 * HOUR) == total
    assert con.execute("SELECT count(*) FROM span_archive").fetchone() == (total,)
    assert con.execute("SELECT count(*) FROM span_data").fetchone() == (0,)
    assert reads(reader, con) == before
    # The ids as numbers, but for the odd ones (and none for the NULL one).
    ids = con.execute(
        "SELECT count(*) FILTER (WHERE span_key IS NOT NULL),"
        " list(span_id ORDER BY span_id) FILTER (WHERE span_id IS NOT NULL) FROM span_archive"
    ).fetchone()
    assert ids == (total - 3, ["00000000000000AB", "abc"])
    traces = con.execute(
        "SELECT count(*) FILTER (WHERE trace_hi IS NOT NULL AND trace_lo IS NOT NULL),"
        " list(trace_id ORDER BY trace_id) FILTER (WHERE trace_id IS NOT NULL) FROM span_archive"
    ).fetchone()
    assert traces == (total - 3, ["00000000000000AB" * 2, "abcabc"])
    # A lookup by trace ids narrows archived rows by their numbers, and finds odd ids as text.
    some = [t for (t,) in con.execute("SELECT DISTINCT trace_id FROM span_rows").fetchall()]
    assert len(some) > 3
    for wanted in (some[:2], ["abcabc"], ["00000000000000AB" * 2, some[0]], ["f" * 32]):
        cond, params = trace_ids_where("", wanted)
        found = con.execute(f"SELECT trace_id FROM span_rows WHERE {cond}", params).fetchall()
        plain = con.execute(
            "SELECT trace_id FROM span_rows WHERE list_contains(?, trace_id)", [wanted]
        ).fetchall()
        assert sorted(found) == sorted(plain) and (plain or wanted == ["f" * 32])
    # Values by position: those past the 16th of an 18- or 20-attribute span in attribute_rest.
    rest = con.execute(
        f"SELECT v{POSITIONS}, len(attribute_rest) FROM span_archive"
        " WHERE attribute_rest IS NOT NULL"
    ).fetchall()
    assert rest and all(v is not None and n >= 10 + EXTRA - POSITIONS for v, n in rest)
    reader.close()
    store.close()


def test_a_key_in_more_keysets_than_case_branches_is_found_in_both_tables(tmp_path, monkeypatch):
    """Past CASE_LIMIT keysets, the search looks the key's position up per row instead."""
    monkeypatch.setattr("query.library.search.CASE_LIMIT", 1)
    assert CASE_LIMIT > 1
    store = filled_store(tmp_path)
    con = store.cursor()
    reader = make_reader(con)
    f = SpanFilter(attrs=(("shared", "v0"),), limit=10_000)
    before = sorted(s["span_id"] for s in reader.traces(f)["spans"])
    compact_all(store, 1, 0, now_ns=BASE + 2 * HOUR)  # half archived, half not
    assert con.execute("SELECT count(*) > 0 FROM span_archive").fetchone() == (True,)
    assert con.execute("SELECT count(*) > 0 FROM span_data").fetchone() == (True,)
    assert before and sorted(s["span_id"] for s in reader.traces(f)["spans"]) == before
    reader.close()
    store.close()


def test_retention_and_prune_delete_archived_spans(tmp_path):
    store = filled_store(tmp_path)
    compact_all(store, 1, 0, now_ns=BASE + 2 * HOUR)  # hours 0-1 archived, 2-3 not
    per_hour = 3 * 24
    pruned = prune_connection(store.con, BASE + HOUR)
    assert pruned.rows["spans"] == per_hour
    left = store.con.execute("SELECT count(*) FROM span_archive").fetchone()[0]
    assert left == per_hour
    store.close()
    db = str(tmp_path / "a.duckdb")
    age = (time.time_ns() - (BASE + HOUR + HOUR // 2)) / 10**9 / 3600  # after hour 1 spans
    result = CliRunner().invoke(main, ["--db", db, "prune", "--older-than", f"{age:.3f}h"])
    assert result.exit_code == 0, result.output
    assert read_store(db, "SELECT count(*) FROM span_archive") == [(0,)]
    left = "SELECT count(*), min(epoch_ns(start_time)) >= ? FROM spans"
    assert read_store(db, left, [BASE + 2 * HOUR]) == [(2 * per_hour, True)]


def test_migration_from_version_5_keeps_its_spans_readable_and_archives_later_ranges(tmp_path):
    """A version-5 file (spans in span_data only, no span_rows) migrates to 6; its spans read
    back the same, before and after compaction moves them."""
    db = tmp_path / "v5.duckdb"
    store = filled_store(tmp_path)
    write_logs(store)
    con = store.cursor()
    before = reads(make_reader(con), con)
    logs = con.execute(ALL_LOGS).fetchall()
    con.close()
    store.close()
    con = duckdb.connect(str(tmp_path / "a.duckdb"))
    for statement in [
        "DROP VIEW spans",
        "DROP VIEW span_rows",
        "DROP TABLE span_archive",
        "CREATE TABLE logs_v5 AS SELECT * FROM logs",  # version 5's logs table
        "DROP VIEW logs",
        "DROP TABLE log_data",
        "ALTER TABLE logs_v5 RENAME TO logs",
        "ALTER TABLE span_clusters DROP COLUMN level",  # version 7's
        "DROP TABLE forward_outbox",  # version 8's
        "DROP TABLE forward_endpoints",
    ]:
        con.execute(statement)
    con.execute(MIGRATIONS[4][0])  # version 5's spans view, over span_data
    con.execute("UPDATE roomscope_meta SET value = '5' WHERE key = 'schema_version'")
    con.close()
    (tmp_path / "a.duckdb").rename(db)
    store = make_store(db)
    store.open()
    con = store.cursor()
    reader = make_reader(con)
    assert reads(reader, con) == before
    assert con.execute(ALL_LOGS).fetchall() == logs
    assert con.execute("SELECT count(*) FROM log_data").fetchone() == (len(logs),)
    compact_all(store, 1, 0, now_ns=BASE + 2 * HOUR)
    assert con.execute("SELECT count(*) > 0 FROM span_archive").fetchone() == (True,)
    assert reads(reader, con) == before
    reader.close()
    store.close()
    assert read_store(db, "SELECT value FROM roomscope_meta") == [(str(SCHEMA_VERSION),)]


def test_log_records_refer_to_their_resource_which_retention_keeps_while_they_use_it(tmp_path):
    store = make_store(tmp_path / "l.duckdb")
    store.open()
    write_logs(store)
    con = store.con
    resources = "SELECT count(*) FROM resources"
    assert con.execute(resources).fetchone() == (2,)
    rooms = "SELECT resource_attributes['room'], count(*) FROM logs GROUP BY 1 ORDER BY 1"
    assert con.execute(rooms).fetchall() == [("kitchen", 5), ("lobby", 5)]
    assert store.prune_shared() == 0  # both in use
    assert prune_connection(con, BASE + 3 * 10**9).rows["logs"] == 6  # records 0-2 of each
    assert store.prune_shared() == 0 and con.execute(resources).fetchone() == (2,)
    assert prune_connection(con, BASE + HOUR).rows["logs"] == 4
    assert store.prune_shared() == 2 and con.execute(resources).fetchone() == (0,)
    store.close()
