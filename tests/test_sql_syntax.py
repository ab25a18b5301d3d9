"""Ordinary DuckDB syntax passes the SQL sandbox; what is not a read, or reaches past the store,
is refused with its own reason (issue 19, items 7 and 16). One table of statements, run through
the library (scoped to a project and not), the API (``POST /api/v1/sql`` with a query token) and
``roomscope --db FILE sql``; and a fuzz of the check: a clean answer or a clean refusal, never
anything else."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from click.testing import CliRunner
from conftest import DEFAULTS, make_reader, make_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from otlp_factory import trace_request

from collector.auth import create_token
from collector.store.reads import open_reader
from query.cli import main
from query.http.serving import serving_thread
from query.library.errors import QueryError
from query.library.reader import Reader
from query.library.sandbox import check_select, scope
from query.library.sql import check_read_only

PROJECT = "acme"  # trace_request's project
NAMES = "'llm.call', 'tool.search', 'agent.turn', 'db.query'"  # trace_request's span names

# Statement → the rows it answers (None: any rows; the store's data is random).
ALLOWED: list[tuple[str, list[list[Any]] | None]] = [
    # list, struct and map literals; ANY; what the parser writes as main.list_value & co.
    ("SELECT [1, 2] AS l", [[[1, 2]]]),
    ("SELECT {'x': 1} AS s", [[{"x": 1}]]),
    ("SELECT {'x': 1}.x", [[1]]),
    ("SELECT struct_extract({'x': 1, 'y': 'b'}, 'y')", [["b"]]),
    ("SELECT map(['a'], ['b']) AS m", [[{"a": "b"}]]),
    ("SELECT map(['a'], ['b'])['a']", [["b"]]),
    ("SELECT row(1, 2) = row(1, 2), (1, 'a') = row(1, 'a')", [[True, True]]),
    (f"SELECT count(*) = 16 FROM spans WHERE name = ANY([{NAMES}])", [[True]]),
    (
        "SELECT count(*) = 16 FROM spans WHERE list_has_any(map_keys(attributes), ['tool'])",
        [[True]],
    ),
    ("SELECT 2 = ANY([1, 2]), 2 IN (1, 2), 3 NOT IN (1, 2)", [[True, True, True]]),
    ("SELECT main.abs(-1)", [[1]]),
    # lambdas, list comprehensions, list functions
    ("SELECT list_transform([1, 2], x -> x + 1)", [[[2, 3]]]),
    ("SELECT list_filter([1, 2, 3], lambda x: x > 1)", [[[2, 3]]]),
    ("SELECT [x * 2 FOR x IN [1, 2, 3] IF x > 1]", [[[4, 6]]]),
    ("SELECT list_reduce([1, 2, 3], (a, b) -> a + b)", [[6]]),
    ("SELECT list_sort([3, 1, 2]), list_distinct([1, 1]), len([1, 2])", [[[1, 2, 3], [1], 2]]),
    ("SELECT unnest([1, 2]) AS n", [[1], [2]]),
    ("SELECT n FROM unnest([1, 2]) AS t(n)", [[1], [2]]),
    ("SELECT count(*) FROM spans, unnest(events) AS u(e)", [[0]]),
    # attributes
    ("SELECT count(*) = 16 FROM spans WHERE attributes['tool'] IS NOT NULL", [[True]]),
    ("SELECT element_at(attributes, 'llm.model') FROM spans LIMIT 1", [[["gpt-x"]]]),
    ("SELECT resource_attributes['service.name'] FROM spans LIMIT 1", [["agent"]]),
    ("SELECT count(*) FROM spans WHERE attributes['http.status_code'] IN ('200', '500')", None),
    ("SELECT json_extract_string(to_json(attributes), '$.llm.model') FROM spans LIMIT 1", None),
    # window functions, QUALIFY, CTEs
    ("SELECT name, row_number() OVER (PARTITION BY trace_id ORDER BY start_time) FROM spans", None),
    ("SELECT lag(name) OVER w FROM spans WINDOW w AS (ORDER BY start_time) LIMIT 1", [[None]]),
    (
        "SELECT trace_id FROM spans"
        " QUALIFY row_number() OVER (PARTITION BY trace_id ORDER BY start_time) = 1",
        None,
    ),
    ("WITH t AS (SELECT name FROM spans) SELECT count(*) FROM t", [[16]]),
    (
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 4)"
        " SELECT max(n) FROM t",
        [[4]],
    ),
    # PIVOT with its values named, UNPIVOT, COLUMNS, star modifiers
    ("PIVOT spans ON status_code IN ('ERROR', 'UNSET') USING count(*) GROUP BY project", None),
    ("UNPIVOT (SELECT 1 AS a, 2 AS b) ON a, b INTO NAME k VALUE v", [["a", 1], ["b", 2]]),
    ("SELECT COLUMNS('^(trace|span)_id$') FROM spans LIMIT 1", None),
    ("SELECT COLUMNS(c -> c LIKE '%_time') FROM spans LIMIT 1", None),
    ("SELECT * EXCLUDE (attributes, resource_attributes) FROM spans LIMIT 1", None),
    ("SELECT * REPLACE (upper(name) AS name) FROM spans LIMIT 1", None),
    # string functions and operators
    (
        "SELECT upper('a'), lower('B'), length('abc'), substr('abc', 2), repeat('ab', 2),"
        " regexp_replace('abc', 'b', 'x'), 'a' || 'b', concat_ws('-', 'a', 'b'),"
        " split_part('a.b', '.', 2), format('{}-{}', 1, 2), printf('%03d', 7)",
        [["A", "b", 3, "bc", "abab", "axc", "ab", "a-b", "b", "1-2", "007"]],
    ),
    (
        "SELECT 'abc' LIKE 'a%', 'ABC' ILIKE 'a%', 'abc' SIMILAR TO 'a.c',"
        " regexp_matches('abc', 'b'), starts_with('abc', 'a')",
        [[True, True, True, True, True]],
    ),
    # aggregates, grouping, joins, subqueries
    ("SELECT histogram(status_code) IS NOT NULL FROM spans", [[True]]),
    (
        "SELECT count(*) FILTER (WHERE status_code = 'ERROR') >= 0,"
        " quantile_cont(duration_ns, 0.95) > 0, string_agg(DISTINCT name, ',' ORDER BY name)"
        " IS NOT NULL FROM spans",
        [[True, True, True]],
    ),
    ("SELECT name, count(*) FROM spans GROUP BY ALL ORDER BY ALL", None),
    ("FROM spans SELECT count(*)", [[16]]),
    ("SELECT count(*) FROM spans a JOIN spans b USING (trace_id)", [[128]]),
    ("SELECT count(*) FROM spans s, LATERAL (SELECT s.duration_ns * 2 AS d)", [[16]]),
    (
        "SELECT count(*) FROM spans a ASOF JOIN spans b"
        " ON a.trace_id = b.trace_id AND a.start_time >= b.start_time",
        [[16]],
    ),
    ("SELECT 1 AS a UNION ALL BY NAME SELECT 2 AS b", [[1, None], [None, 2]]),
    ("SELECT count(*) FROM spans WHERE trace_id IN (SELECT trace_id FROM spans)", [[16]]),
    ("SELECT EXISTS (SELECT 1 FROM logs), (SELECT count(*) FROM sessions) > 0", [[False, True]]),
    # times
    (
        "SELECT count(*) FROM spans WHERE start_time > timezone('UTC', now()) - INTERVAL 1 HOUR",
        [[16]],
    ),
    ("SELECT count(DISTINCT date_trunc('minute', start_time)) > 0 FROM spans", [[True]]),
    ("SELECT time_bucket(INTERVAL 5 MINUTE, start_time) IS NOT NULL FROM spans LIMIT 1", [[True]]),
    # casts, CASE, VALUES, table functions that only make numbers
    ("SELECT CAST('7' AS INTEGER), '8'::INTEGER, TRY_CAST('x' AS INTEGER)", [[7, 8, None]]),
    ("SELECT CASE WHEN 2 > 1 THEN 'yes' ELSE 'no' END", [["yes"]]),
    ("SELECT * FROM range(3)", [[0], [1], [2]]),
    ("SELECT * FROM generate_series(1, 2)", [[1], [2]]),
    ("SELECT * FROM (VALUES (1, 'a')) AS v(n, s)", [[1, "a"]]),
    ("VALUES (1)", [[1]]),
    # the other read statements
    ("TABLE sessions", None),
    ("SHOW TABLES", None),
    ("DESCRIBE spans", None),
    ("SUMMARIZE SELECT duration_ns FROM spans", None),
    ("EXPLAIN SELECT count(*) FROM spans", None),
    ("PRAGMA table_info('spans')", None),
]

_RO = r"roomscope sql is read-only \("
# Statement → what the refusal must say.
REFUSED: list[tuple[str, str]] = [
    # each statement kind its own reason (INSTALL is no LOAD, PRAGMA no CALL, RESET no SET)
    ("INSTALL httpfs", _RO + r"INSTALL statements are not allowed: extensions cannot"),
    ("FORCE INSTALL httpfs", _RO + r"FORCE INSTALL statements are not allowed: extensions"),
    ("LOAD httpfs", _RO + r"LOAD statements are not allowed: extensions cannot"),
    ("UPDATE EXTENSIONS", _RO + r"UPDATE EXTENSIONS statements are not allowed: extensions"),
    ("ATTACH 'other.duckdb' AS other", _RO + r"ATTACH statements .*no other database"),
    ("DETACH other", _RO + r"DETACH statements .*no other database"),
    ("USE memory", _RO + r"USE statements .*no other database"),
    ("COPY spans TO 'out.csv'", _RO + r"COPY statements .*files"),
    ("COPY spans FROM 'in.csv'", _RO + r"COPY statements .*files"),
    ("EXPORT DATABASE 'dump'", _RO + r"EXPORT statements .*files"),
    ("IMPORT DATABASE 'dump'", _RO + r"IMPORT statements .*files"),
    ("SET threads = 1", _RO + r"SET statements .*settings cannot be changed"),
    ("SET VARIABLE v = 1", _RO + r"SET statements .*settings"),
    ("RESET threads", _RO + r"RESET statements .*settings"),
    ("PRAGMA threads = 1", _RO + r"PRAGMA statements are not allowed"),
    ("PRAGMA database_list", _RO + r"PRAGMA statements are not allowed"),
    ("CALL pragma_version()", _RO + r"CALL statements are not allowed"),
    ("CHECKPOINT", _RO + r"CHECKPOINT statements .*collector's job"),
    ("VACUUM", _RO + r"VACUUM statements .*collector's job"),
    ("BEGIN", _RO + r"BEGIN statements .*on its own"),
    ("COMMIT", _RO + r"COMMIT statements .*on its own"),
    ("PREPARE p AS SELECT 1", _RO + r"PREPARE statements"),
    ("EXECUTE p", _RO + r"EXECUTE statements"),
    ("INSERT INTO spans (name) VALUES ('x')", _RO + r"INSERT statements are not allowed\)"),
    ("UPDATE spans SET name = 'x'", _RO + r"UPDATE statements are not allowed\)"),
    ("DELETE FROM spans", _RO + r"DELETE statements are not allowed\)"),
    ("TRUNCATE spans", _RO + r"TRUNCATE statements are not allowed\)"),
    ("WITH t AS (SELECT 1) DELETE FROM spans", _RO + r"DELETE statements are not allowed\)"),
    ("EXPLAIN ANALYZE DELETE FROM spans", _RO + r"DELETE statements are not allowed\)"),
    ("CREATE TEMP MACRO m() AS 1", _RO + r"CREATE statements are not allowed\)"),
    ("DROP VIEW spans", _RO + r"DROP statements are not allowed\)"),
    ("ALTER TABLE spans RENAME TO s", _RO + r"ALTER statements are not allowed\)"),
    ("PIVOT spans ON status_code USING count(*)", r"PIVOT without IN list .* IN \("),
    ("SELECT 1; SELECT 2", r"one SQL statement at a time"),
    ("EXPLAIN PRAGMA nothing", r"SQL error: .*Pragma Function with name nothing"),  # was a 500
    # files, network, other catalogs
    ("SELECT * FROM read_csv('x.csv')", r"table function read_csv\(\) is not allowed"),
    ("SELECT * FROM read_parquet('s3://b/x.parquet')", r"table function read_parquet\(\)"),
    ("SELECT * FROM glob('*')", r"table function glob\(\) is not allowed"),
    ("SELECT * FROM 'https://example.com/x.csv'", r"unknown table 'https://example.com/x.csv'"),
    ("SELECT read_text('x.csv')", r"function read_text\(\) is not allowed"),
    ("SELECT * FROM main.spans", r"qualified table names are not allowed \(spans\)"),
    ("SELECT * FROM information_schema.tables", r"qualified table names are not allowed"),
    ("DESCRIBE main.spans", r"qualified table names are not allowed"),
    ("SELECT * FROM duckdb_settings()", r"table function duckdb_settings\(\) is not allowed"),
    ("SELECT * FROM query_table('spans')", r"table function query_table\(\) is not allowed"),
    ("SHOW DATABASES", r"SHOW databases is not allowed"),
    # functions that reach past the statement
    ("SELECT getenv('HOME')", r"function getenv\(\) is not allowed"),
    ("SELECT current_setting('threads')", r"function current_setting\(\) is not allowed"),
    ("SELECT nextval('s')", r"function nextval\(\) is not allowed"),
    ("SELECT json_serialize_plan('SELECT 1')", r"function json_serialize_plan\(\) is not"),
    ("SELECT stats(room) FROM spans", r"function stats\(\) is not allowed"),
    ("SELECT pg_get_viewdef(1)", r"function pg_get_viewdef\(\) is not allowed"),
    ("SELECT get_block_size('memory')", r"function get_block_size\(\) is not allowed"),
    ("SELECT system.main.abs(1)", r"qualified function names are not allowed \(system\.main"),
    ("SELECT pg_catalog.abs(1)", r"qualified function names are not allowed \(pg_catalog\."),
]


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store file with 16 spans of project acme, its collector stopped."""
    db = tmp_path_factory.mktemp("syntax") / "syntax.duckdb"
    thread = serving_thread(make_settings(db))
    collector = thread.start()
    try:
        body = trace_request(16, room="syntax-room", seed=3).SerializeToString()
        r = httpx.post(
            f"http://127.0.0.1:{collector.ports['http']}/v1/traces",
            content=body,
            headers={"content-type": "application/x-protobuf"},
        )
        assert r.is_success, r.text
    finally:
        thread.stop()
    return db


@pytest.fixture(params=[None, PROJECT], ids=["all-projects", "one-project"])
def reader(store_file: Path, request: pytest.FixtureRequest) -> Iterator[Reader]:
    """The library's reader over the store, unscoped (auth off) and scoped to one project."""
    r = make_reader(
        open_reader(str(store_file), DEFAULTS.get("store.memory_limit")),
        project=request.param,
        timeout=10.0,
    )
    yield r
    r.close()


def test_the_tables_are_long_enough() -> None:
    assert len(ALLOWED) >= 40 and len(REFUSED) >= 40


@pytest.mark.parametrize(("statement", "rows"), ALLOWED, ids=[s for s, _ in ALLOWED])
def test_ordinary_read_only_sql_runs(reader: Reader, statement: str, rows: Any) -> None:
    result = reader.sql(statement)
    assert result["columns"], result
    if rows is not None:
        assert result["rows"] == rows


@pytest.mark.parametrize(("statement", "reason"), REFUSED, ids=[s for s, _ in REFUSED])
def test_refusals_give_their_own_reason(reader: Reader, statement: str, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        reader.sql(statement)
    assert re.search(reason, str(caught.value)), str(caught.value)
    assert reader.sql("SELECT count(*) FROM spans")["rows"] == [[16]]


def test_the_parser_reads_no_file_of_import_database(reader: Reader, tmp_path: Path) -> None:
    """DuckDB's parser expands IMPORT DATABASE by reading the directory's schema.sql: refused
    before parsing, so no part of that file comes back in an error."""
    (tmp_path / "schema.sql").write_text("leaked_secret_marker;\n")
    (tmp_path / "load.sql").write_text("")
    for statement in (f"IMPORT DATABASE '{tmp_path}'", f"SELECT 1; import database '{tmp_path}'"):
        with pytest.raises(QueryError, match="IMPORT statements are not allowed") as caught:
            reader.sql(statement)
        assert "leaked_secret_marker" not in str(caught.value)


def test_through_the_api_with_a_query_token(start_collector: Any, store_file: Path) -> None:
    tokens = store_file.parent / "tokens.toml"
    rc = start_collector(db=store_file, **{"auth.enabled": True, "auth.tokens_file": str(tokens)})
    headers = {"authorization": f"Bearer {create_token(tokens, PROJECT, 'query')}"}
    with httpx.Client(base_url=rc.api_url, headers=headers, timeout=60) as client:
        for statement, rows in ALLOWED:
            r = client.post("/api/v1/sql", json={"sql": statement})
            assert r.status_code == 200, (statement, r.text)
            assert rows is None or r.json()["rows"] == rows, (statement, r.text)
        for statement, reason in REFUSED:
            r = client.post("/api/v1/sql", json={"sql": statement})
            assert r.status_code == 400, (statement, r.text)
            assert re.search(reason, r.json()["error"]), (statement, r.text)


@pytest.mark.slow
def test_through_the_cli_on_a_store_file(store_file: Path) -> None:
    runner = CliRunner()
    for statement, _ in ALLOWED:
        result = runner.invoke(main, ["--db", str(store_file), "sql", statement, "-o", "json"])
        assert result.exit_code == 0, (statement, result.output)
    for statement, reason in REFUSED:
        result = runner.invoke(main, ["--db", str(store_file), "sql", statement])
        assert result.exit_code == 1, (statement, result.output)
        assert result.stderr.startswith("Error: ") and re.search(reason, result.stderr), (
            statement,
            result.stderr,
        )


# Fuzz: pieces of the statements above, shuffled and cut, and text of any kind.
_PIECES = sorted(
    {piece for statement, _ in ALLOWED + REFUSED for piece in re.findall(r"\S+", statement)}
)
_STATEMENTS = st.one_of(
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12).map(" ".join),
    st.text(max_size=60),
    st.sampled_from([s for s, _ in ALLOWED + REFUSED]).flatmap(
        lambda s: st.integers(0, len(s)).map(lambda i: s[:i])
    ),
)


@pytest.fixture(scope="module")
def scoped(store_file: Path) -> Iterator[tuple[duckdb.DuckDBPyConnection, frozenset[str]]]:
    con = open_reader(str(store_file), DEFAULTS.get("store.memory_limit"))
    yield con, scope(con, PROJECT)
    con.close()


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(statement=_STATEMENTS)
def test_fuzzed_statements_are_checked_or_refused_cleanly(scoped: Any, statement: str) -> None:
    """The sandbox's check answers every text with the statement to run or a QueryError:
    never another exception (which the API would answer with a 500)."""
    con, readable = scoped
    try:
        text = check_read_only(statement)
        check_select(con, re.sub(r"^\s*explain\s+(analy[sz]e\s+)?", "", text, flags=re.I), readable)
    except QueryError:
        pass
