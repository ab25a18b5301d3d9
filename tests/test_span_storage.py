"""Schema versions 3-4: spans stored as ``span_data`` + shared ``resources``, the ``spans`` view.

Each resource's attributes are stored once (not once per span) and end_time is start + duration;
SQL users still see SPEC 4's ``spans``. Covers: the view's rows against what was sent, resources
shared across requests, the 2 → 3 migration keeping every span's resource attributes, retention
removing resources nobody uses (and a later span of that resource getting it back), search on
resource attributes, and a read-only open of a not-yet-migrated file.
"""

from __future__ import annotations

import time

import duckdb
from click.testing import CliRunner
from conftest import make_store, make_tagger, read_store
from otlp_factory import trace_request

from collector.decode import decode_body
from collector.store import DuckDBStore
from collector.store.migrations import MIGRATIONS
from collector.store.schema import TRACE_KEY
from query.cli import main
from query.library.filters import SpanFilter
from query.library.span_search import search_spans

DAY = 86_400 * 10**9
NOW = time.time_ns()


class Done:
    """A writer task's future, for a job whose tasks run at once on the test's thread."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def write(store: DuckDBStore, *requests) -> None:
    for req in requests:
        d = decode_body("traces", req.SerializeToString(), "protobuf", make_tagger())
        store.append({**{k: [t] for k, t in d.side.items()}, "spans": [d.table]})


def test_spans_view_gives_back_what_was_sent_with_each_resource_stored_once(tmp_path):
    db = tmp_path / "s.duckdb"
    store = make_store(db)
    store.open()
    a1 = trace_request(20, room="lobby", service="agent", start_ns=NOW - 10**9, seed=1)
    a2 = trace_request(20, room="lobby", service="agent", start_ns=NOW - 10**9, seed=2)
    b = trace_request(20, room="lobby", service="tools", start_ns=NOW - 10**9, seed=3)
    write(store, a1, a2, b)
    store.close()
    sent = {
        sp.span_id.hex(): (sp.end_time_unix_nano, rs.resource.attributes)
        for req in (a1, a2, b)
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for sp in ss.spans
    }
    rows = read_store(db, "SELECT span_id, epoch_ns(end_time), resource_attributes FROM spans")
    assert len(rows) == 60
    for span_id, end_ns, resource in rows:
        end_sent, attrs = sent[span_id]
        assert end_ns == end_sent
        assert resource == {kv.key: kv.value.string_value for kv in attrs}
    assert read_store(db, "SELECT count(*) FROM resources") == [(2,)]
    # trace_index rows (built by the decoder) cover each trace's spans
    key = TRACE_KEY.format(c="trace_id")
    by_spans = f"SELECT {key}, min(start_time), max(start_time) FROM spans GROUP BY 1"
    by_index = "SELECT trace_key, min(first_start), max(last_start) FROM trace_index GROUP BY 1"
    assert sorted(read_store(db, by_spans)) == sorted(read_store(db, by_index))
    assert len(read_store(db, by_index)) == 3 * 3  # 20 spans a request, in traces of 8
    assert read_store(db, "SELECT column_name FROM duckdb_columns() WHERE table_name = 'spans'")[
        13
    ] == ("end_time",)


def test_migration_from_version_2_keeps_every_spans_resource_attributes(tmp_path):
    db = str(tmp_path / "v2.duckdb")
    con = duckdb.connect(db)
    con.execute("CREATE TABLE roomscope_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    for version in (1, 2):
        for statement in MIGRATIONS[version]:
            con.execute(statement)
    con.execute("INSERT INTO roomscope_meta VALUES ('schema_version', '2')")
    for i in range(30):
        con.execute(
            "INSERT INTO spans (trace_id, span_id, name, start_time, end_time, duration_ns,"
            " resource_attributes) VALUES (?, ?, 'op', make_timestamp_ns(?),"
            " make_timestamp_ns(?), 5, ?)",
            ["ab" * 16, f"{i + 1:016x}", NOW + i, NOW + i + 5, {"service.name": f"svc{i % 3}"}],
        )
    con.close()
    result = CliRunner().invoke(main, ["--db", db, "traces"])  # read-only: cannot migrate
    assert result.exit_code == 1, result.output
    assert "schema version 2" in result.output and "roomscope serve --db" in result.output

    store = make_store(db)
    store.open()
    store.close()
    rows = read_store(
        tmp_path / "v2.duckdb",
        "SELECT span_id, resource_attributes['service.name'], epoch_ns(end_time) FROM spans",
    )
    assert sorted(rows) == [(f"{i + 1:016x}", f"svc{i % 3}", NOW + i + 5) for i in range(30)]
    assert read_store(tmp_path / "v2.duckdb", "SELECT count(*) FROM resources") == [(3,)]


def test_retention_removes_unused_resources_and_a_new_span_brings_its_resource_back(tmp_path):
    from collector.store.maintenance.retention import Retention

    store = make_store(tmp_path / "r.duckdb")
    store.open()
    old = trace_request(8, room="lobby", service="old-svc", start_ns=NOW - 10 * DAY)
    kept = trace_request(8, room="lobby", service="agent", start_ns=NOW - 10**9)
    write(store, old, kept)

    def run(fn):
        return Done(fn(store))

    pruned = Retention(run, 7 * 86400, 60.0, None, max_bytes=0).prune_once()
    assert pruned.rows["spans"] == 8 and pruned.rows["shared"] == 1
    con = store.cursor()
    assert con.execute("SELECT count(*) FROM resources").fetchone() == (1,)
    # The same old resource comes again (now fresh): its row is written again, not assumed.
    again = trace_request(8, room="lobby", service="old-svc", start_ns=NOW - 10**9, seed=9)
    write(store, again)
    rows = con.execute(
        "SELECT DISTINCT resource_attributes['service.name'] FROM spans ORDER BY 1"
    ).fetchall()
    assert rows == [("agent",), ("old-svc",)]
    con.close()
    store.close()


def test_search_on_resource_attributes_reads_the_resources_table(tmp_path):
    store = make_store(tmp_path / "q.duckdb")
    store.open()
    write(
        store,
        trace_request(16, room="lobby", service="agent", start_ns=NOW - 10**9, seed=1),
        trace_request(16, room="lobby", service="tools", start_ns=NOW - 10**9, seed=2),
    )
    con = store.cursor()
    found = search_spans(con, SpanFilter(attrs=(("host.name", "node-1"),)), 100).records
    assert len(found) == 32
    tools = search_spans(con, SpanFilter(attrs=(("service.name", "tools"),)), 100).records
    assert len(tools) == 16
    assert {s["resource_attributes"]["service.name"] for s in tools} == {"tools"}
    # span attributes win over resource attributes of the same key (SPEC 5)
    assert search_spans(con, SpanFilter(attrs=(("tool", "search"),)), 100).records
    con.close()
    store.close()


def test_attribute_keysets_keep_lists_apart_that_joining_would_confuse():
    from collector.columns import keyset_id, map_array, split_attributes

    rows = [{"a\x1fb": "1"}, {"a": "x", "b": "y"}, {"": "e"}, {}, {"a": "z", "b": None}]
    ids, values, keysets = split_attributes(map_array(rows))
    expected = [tuple(r) for r in rows]
    assert ids.to_pylist() == [keyset_id(k) for k in expected]
    assert values.to_pylist() == [list(r.values()) for r in rows]
    assert sorted(map(tuple, keysets["keys"].to_pylist())) == sorted(set(expected))
    plain = [{"a": "1"}, {"a": "2", "b": "3"}, {}]  # the vectorized path
    ids, values, keysets = split_attributes(map_array(plain))
    assert ids.to_pylist() == [keyset_id(tuple(r)) for r in plain]
    assert values.to_pylist() == [["1"], ["2", "3"], []]
    assert keysets.num_rows == 3


def test_spans_without_events_or_links_store_null_and_read_as_empty_lists(tmp_path):
    """span_data keeps NULL for no events/links (cheaper to append); every reader sees []."""
    db = tmp_path / "e.duckdb"
    store = make_store(db)
    store.open()
    req = trace_request(3, start_ns=NOW - 10**9, seed=4)
    first = req.resource_spans[0].scope_spans[0].spans[0]
    first.events.add(name="retry", time_unix_nano=NOW - 10**9)
    first.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    write(store, req)
    store.close()
    rows = read_store(db, "SELECT events IS NULL, links IS NULL FROM span_data ORDER BY start_time")
    assert rows == [(False, False), (True, True), (True, True)]
    view = read_store(db, "SELECT len(events), len(links) FROM spans ORDER BY start_time")
    assert view == [(1, 1), (0, 0), (0, 0)]
    con = duckdb.connect(str(db), read_only=True)
    try:
        spans = search_spans(con, SpanFilter(), 10).records
    finally:
        con.close()
    by_first = sorted(spans, key=lambda s: s["start_time"])
    assert [len(s["events"]) for s in by_first] == [1, 0, 0]
    assert [len(s["links"]) for s in by_first] == [1, 0, 0]
    assert by_first[0]["events"][0]["name"] == "retry"
    assert by_first[0]["links"][0]["span_id"] == "02" * 8
