"""Ad-hoc SQL on ``spans`` attributes at the stored columns' speed (query.library.sql_rewrite).

Every statement gives through ``roomscope sql`` (run_sql: the rewrite) exactly what it gives on
the ``spans`` view as written (DuckDB straight, the MAP built per row), on a store that varies
what the rewrite depends on: keys at different positions in different keysets, spans with more
than 16 attributes (values in attribute_rest), spans without attributes, with an empty value, a
NULL keyset, resource attributes, spans in both span_archive and span_data, two projects. And
the sandbox still refuses what it refused, the rewrite or not.
"""

from __future__ import annotations

import json
from collections import Counter
from unittest.mock import patch

import duckdb
import pytest
from conftest import make_reader
from otlp_factory import kv
from test_span_archive import BASE, HOUR, filled_store, varied_request
from test_span_storage import write

from collector.store.maintenance.compaction import compact_all
from query.library.errors import QueryError
from query.library.sandbox import scope
from query.library.sql import run_sql
from query.library.sql_rewrite import rewrite

# Statements the rewrite changes, with what users type.
REWRITTEN = [
    "SELECT count(*) FROM spans WHERE attributes['tool'] = 'search'",
    "SELECT count(*) FROM spans WHERE attributes['shared'] = 'v1'",  # many keysets
    "SELECT count(*) FROM spans WHERE attributes['extra.7'] IS NOT NULL",  # past 16
    "SELECT span_id, attributes['extra.7'] FROM spans WHERE attributes['extra.7'] = 'x21-3-7'",
    "SELECT count(*) FROM spans WHERE attributes['empty'] IS NULL",
    "SELECT attributes['empty'], count(*) FROM spans GROUP BY ALL",
    "SELECT count(*) FROM spans WHERE attributes['nobody.has.this'] IS NOT NULL",
    "SELECT attributes['tool'] AS tool, count(*) AS n FROM spans GROUP BY tool",
    "SELECT attributes['tool'], room, count(*) FROM spans GROUP BY attributes['tool'], room",
    "SELECT span_id, element_at(attributes, 'shared') FROM spans",
    "SELECT span_id, map_extract(attributes, 'extra.3') FROM spans",
    "SELECT span_id, map_extract_value(attributes, 'tool') FROM spans",
    "SELECT map_keys(attributes) AS k, count(*) FROM spans GROUP BY k",
    "SELECT span_id, map_values(attributes), cardinality(attributes) FROM spans",
    "SELECT span_id, map_contains(attributes, 'shared') FROM spans",
    "SELECT * FROM spans WHERE attributes['tool'] = 'calc'",
    "SELECT s.*, s.attributes['tool'] FROM spans s WHERE s.attributes['step'] = '3'",
    "SELECT *, attributes['tool'] FROM spans",
    "SELECT s.span_id, x.n FROM spans s JOIN (SELECT room, count(*) AS n FROM sessions"
    " GROUP BY room) x ON x.room = s.room WHERE s.attributes['tool'] = 'fetch'",
    "SELECT span_id FROM spans JOIN sessions USING (session_id) WHERE attributes['tool'] = 'fetch'",
    "WITH t AS (SELECT attributes['tool'] AS tool FROM spans) SELECT tool, count(*) FROM t"
    " GROUP BY tool",
    "SELECT span_id FROM spans WHERE attributes['tool'] IN (SELECT attributes['tool']"
    " FROM spans WHERE attributes['extra.0'] IS NOT NULL)",
    "SELECT a.span_id, b.span_id FROM spans a JOIN spans b ON a.attributes['shared']"
    " = b.attributes['shared'] AND a.span_id < b.span_id",
    "SELECT count(*) FROM spans WHERE attributes['tool'] = 'search'"
    " AND resource_attributes['host.name'] = 'node-1'",
    "SELECT room, count(*) FILTER (WHERE attributes['http.status_code'] = '500') FROM spans"
    " GROUP BY room",
    "SELECT span_id FROM spans ORDER BY attributes['user.id'], span_id LIMIT 17",
    "SELECT attributes['tool'] FROM spans UNION ALL SELECT attributes['tool'] FROM logs",
    "SELECT count(*) FROM spans WHERE attributes['o''brien'] IS NULL",
    # The rest of the statement survives the round trip through DuckDB's syntax tree.
    "SELECT DISTINCT attributes['tool'] AS t FROM spans ORDER BY t NULLS FIRST LIMIT 2 OFFSET 1",
    "SELECT span_id, row_number() OVER (PARTITION BY attributes['tool'] ORDER BY start_time,"
    " span_id) AS n FROM spans QUALIFY n <= 2",
    "SELECT attributes['user.id'] AS u, count(*) FROM spans GROUP BY u HAVING count(*) > 3"
    " AND u LIKE 'u%'",
    "SELECT count(*) FROM spans WHERE attributes['tool'] = 'search' AND start_time"
    " > TIMESTAMP '2000-01-01' + INTERVAL 1 HOUR AND name <> 'it''s ünïcode ✓'",
    "SELECT CASE WHEN attributes['retry'] = 'true' THEN 'retried' ELSE 'once' END AS r,"
    " count(*) FROM spans WHERE attributes['score']::DOUBLE > 0.5 GROUP BY ALL",
]
# Statements that run as written (the rewrite cannot keep them the same), still correct.
AS_WRITTEN = [
    "SELECT s FROM spans s WHERE s.attributes['tool'] = 'calc'",  # the row as a struct
    "SELECT COLUMNS('.*') FROM spans WHERE attributes['tool'] = 'calc'",
    "WITH spans AS (SELECT * FROM logs) SELECT count(*) FROM spans WHERE attributes['tool'] = 'x'",
    "SELECT count(*) FROM spans WHERE list_count(list_filter([1], attributes -> attributes > 0))"
    " > 0",
    "SELECT attributes[room] FROM spans",  # not a constant key
    "SELECT resource_attributes['host.name'] FROM spans",  # a real MAP joined per resource
]


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory):
    """A varied store: two hours compacted into span_archive, three more hours in span_data."""
    store = filled_store(tmp_path_factory.mktemp("attrs"))  # hours 0-3
    assert compact_all(store, 1, 0, now_ns=BASE + 2 * HOUR) > 0  # hours 0 and 1 move
    for h in range(4, 7):
        req = varied_request(h, "lobby", seed=100 + h)
        for i, span in enumerate(req.resource_spans[0].scope_spans[0].spans):
            if i % 4 == 1:
                span.attributes.add(key="empty")  # present, with no value
            if i % 9 == 2:
                span.attributes.append(kv("o'brien", "x"))
        req.resource_spans[0].resource.attributes.append(kv("project", "other"))
        write(store, req)
    store.con.execute(
        "INSERT INTO span_data (project, room, span_id, name, start_time, duration_ns)"
        " VALUES ('acme', 'lobby', 'f00dfeedf00dfeed', 'bare', make_timestamp_ns(?), 1)",
        [BASE + 5 * HOUR],
    )  # no keyset at all: a NULL attributes map
    cursor = store.cursor()
    yield cursor
    cursor.close()
    store.close()


def _run(con: duckdb.DuckDBPyConnection, sql: str) -> dict:
    return run_sql(con, sql, timeout=60, max_rows=1_000_000)


def _as_written(con: duckdb.DuckDBPyConnection, sql: str) -> dict:
    """run_sql's answer with the rewrite off: the statement on the view as written."""
    with patch("query.library.sql_rewrite.rewrite", return_value=None):
        return _plain(_run(con, sql))


def _same(a: dict, b: dict, sql: str) -> None:
    assert a["columns"] == b["columns"], sql
    if "ORDER BY" in sql:
        assert a["rows"] == b["rows"], sql
    else:
        key = json.dumps
        assert Counter(map(key, a["rows"])) == Counter(map(key, b["rows"])), sql


def _plain(result: dict) -> dict:
    """run_sql's answer in the shape of _as_written (values through JSON, timestamps as text)."""
    return {"columns": result["columns"], "rows": json.loads(json.dumps(result["rows"]))}


def test_the_store_varies_what_the_rewrite_depends_on(con):
    tables = con.execute(
        "SELECT (SELECT count(*) FROM span_archive), (SELECT count(*) FROM span_data),"
        " (SELECT count(*) FROM span_archive WHERE attribute_rest IS NOT NULL),"
        " (SELECT count(*) FROM span_data WHERE len(attribute_values) > 16),"
        " (SELECT count(DISTINCT list_position(keys, 'shared')) FROM attribute_keysets"
        "  WHERE list_contains(keys, 'shared')),"
        " (SELECT count(*) FROM spans WHERE cardinality(attributes) = 0),"
        " (SELECT count(*) FROM spans WHERE attributes IS NULL),"
        " (SELECT count(*) FROM spans WHERE map_contains(attributes, 'empty')"
        "  AND attributes['empty'] IS NULL),"
        " (SELECT count(DISTINCT project) FROM spans)"
    ).fetchone()
    archived, hot, rest_archived, rest_hot, shared_positions, empty, null, no_value, projects = (
        tables
    )
    assert archived and hot and rest_archived and rest_hot
    assert shared_positions > 1 and empty and null == 1 and no_value and projects == 2


@pytest.mark.parametrize("sql", REWRITTEN)
def test_a_rewritten_statement_gives_what_the_view_gives(con, sql):
    fast = rewrite(con, sql)
    assert fast is not None, "the statement should be rewritten"
    assert con.sql(fast).types == con.sql(sql).types  # it runs: run_sql does not fall back
    _same(_plain(_run(con, sql)), _as_written(con, sql), sql)


@pytest.mark.parametrize("sql", AS_WRITTEN)
def test_a_statement_the_rewrite_leaves_runs_as_written(con, sql):
    assert rewrite(con, sql) is None
    _same(_plain(_run(con, sql)), _as_written(con, sql), sql)


def test_keys_in_more_keysets_than_case_branches_are_looked_up_per_row(con, monkeypatch):
    monkeypatch.setattr("query.library.sql_rewrite.CASE_LIMIT", 1)
    for sql in REWRITTEN[:6] + REWRITTEN[9:11]:
        assert "list_position" in (rewrite(con, sql) or ""), sql
        _same(_plain(_run(con, sql)), _as_written(con, sql), sql)


def test_a_lookup_reads_the_value_columns_not_the_map(con):
    sql = "SELECT count(*) FROM spans WHERE attributes['tool'] = 'search'"
    fast = rewrite(con, sql) or ""
    assert "__rs_v1" in fast and "__rs_attribute_values" in fast and "map(" not in fast.lower()
    plan = _run(con, "EXPLAIN " + sql)["rows"]
    assert "map(" not in json.dumps(plan).lower()


def test_a_project_scoped_reader_sees_its_own_spans_only(con):
    scoped = con.cursor()
    readable = scope(scoped, "other")
    sql = "SELECT project, count(*) FROM spans WHERE attributes['tool'] IS NOT NULL GROUP BY 1"
    assert rewrite(scoped, sql) is not None
    rows = run_sql(scoped, sql, timeout=60, max_rows=100, readable=readable)["rows"]
    assert [r[0] for r in rows] == ["other"]
    everyone = {r[0] for r in _run(con, sql)["rows"]}
    assert everyone == {"acme", "other"}
    scoped.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT attributes['tool'] FROM main.spans",
        "SELECT attributes['tool'], getenv('HOME') FROM spans",
        "SELECT attributes['tool'] FROM spans, read_csv('/etc/passwd')",
        "SELECT attributes['tool'] FROM spans JOIN attribute_keysets ON true",
        "SELECT attributes['tool'] FROM spans; SELECT 1",
        "DELETE FROM spans WHERE attributes['tool'] = 'x'",
        "COPY (SELECT attributes['tool'] FROM spans) TO '/tmp/x.csv'",
    ],
)
def test_the_sandbox_still_refuses_what_it_refused(con, sql):
    scoped = con.cursor()
    readable = scope(scoped, "acme")
    with pytest.raises(QueryError, match=r"refused|one SQL statement"):
        run_sql(scoped, sql, timeout=10, max_rows=10, readable=readable)
    scoped.close()


def test_the_reader_answers_through_the_rewrite(con):
    reader = make_reader(con)
    sql = "SELECT attributes['tool'] AS tool, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1"
    assert reader.sql(sql)["rows"] == _as_written(con, sql)["rows"]


def test_a_rewrite_that_does_not_bind_falls_back_to_the_statement_as_written(con):
    """An outer query naming the inner lookup's generated column name: the rewritten inner
    column has another name, so the statement runs as written."""
    sql = (
        "SELECT \"attributes['tool']\" AS t, count(*)"
        " FROM (SELECT attributes['tool'] FROM spans) GROUP BY t"
    )
    assert rewrite(con, sql) is not None
    with pytest.raises(duckdb.BinderException):
        con.sql(rewrite(con, sql) or "")
    _same(_plain(_run(con, sql)), _as_written(con, sql), sql)
