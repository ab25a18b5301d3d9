"""Issue 19, items 1 and 17: every JSON answer is valid JSON (SPEC 8), whatever the data.

NaN and ±Infinity (valid OTLP metric values) are written as "NaN", "Infinity", "-Infinity" in
metric values and SQL results; every type a table holds (nested lists, structs and maps with
TIMESTAMP_NS inside, HUGEINT, BLOB, INTERVAL, UUID, DECIMAL, DATE/TIME, JSON) comes out as
JSON through the API and the CLI (``--server`` and ``--db``). Answers are parsed strictly: a
bare NaN or Infinity fails the test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from conftest import BACKENDS
from edge_data import WRITTEN, send_session, strict_json
from test_query_fixtures import World, filled_world

from query.cli import main

EDGE = "edge-nan"
TABLES = ("spans", "logs", "metric_points", "sessions", "session_events")


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[World]:
    """The query tests' world plus one session whose metrics hold NaN and ±Infinity."""
    for w in filled_world(tmp_path_factory, request):
        send_session(w.http_url, EDGE, "edge")
        yield w


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def api_get(w: World, path: str, **params: Any) -> Any:
    r = httpx.get(w.api_url + path, params=params, timeout=30)
    assert r.status_code == 200, (path, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    return strict_json(r.content)


def api_sql(w: World, sql: str) -> Any:
    r = httpx.post(w.api_url + "/api/v1/sql", json={"sql": sql}, timeout=60)
    assert r.status_code == 200, (sql, r.status_code, r.text)
    return strict_json(r.content)


def cli_json(*args: str) -> Any:
    """A command's ``-o json`` and ``-o jsonl`` answers, parsed strictly; the json one."""
    result = run(*args, "-o", "json")
    assert result.exit_code == 0, (args, result.stderr)
    lines = run(*args, "-o", "jsonl")
    assert lines.exit_code == 0, (args, lines.stderr)
    for line in lines.stdout.splitlines():
        strict_json(line)
    return strict_json(result.stdout)


def check_metrics(metrics: list[dict[str, Any]]) -> None:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for m in metrics:
        by_name.setdefault(m["name"], []).append(m)
    assert {m["attributes"]["k"]: m["value"] for m in by_name["temp"]} == WRITTEN
    assert [m["value"] for m in by_name["requests"]] == ["Infinity"]
    for m in by_name["latency"]:
        assert (m["sum"], m["min"], m["max"]) == ("NaN", "-Infinity", "Infinity")
        assert m["explicit_bounds"] == [10.0, 100.0]
    (expo,) = by_name["sizes"]
    assert (expo["sum"], expo["zero_threshold"]) == ("Infinity", "NaN")
    (summary,) = by_name["rtt"]
    assert summary["sum"] == "-Infinity"
    assert summary["quantiles"] == [
        {"quantile": 0.5, "value": "NaN"},
        {"quantile": 0.99, "value": "Infinity"},
    ]


def test_nan_and_infinity_in_metrics_are_strings_through_api_server_and_db(world: World) -> None:
    """Was: GET .../metrics and .../metric_series answered a plain-text 500."""
    answer = api_get(world, f"/api/v1/sessions/{EDGE}/metrics")
    check_metrics(answer["metrics"])
    series = {
        (s["name"], s["attributes"].get("k")): s
        for s in api_get(world, f"/api/v1/sessions/{EDGE}/metric_series")["series"]
    }
    for k, written in WRITTEN.items():
        assert [p["value"] for p in series["temp", k]["points"]] == [written]
    assert [p["sum"] for p in series["latency", None]["points"]] == ["NaN", "NaN"]
    assert [p["sum"] for p in series["rtt", None]["points"]] == ["-Infinity"]
    args = ("session", "metrics", EDGE)
    assert cli_json("--server", world.api_url, *args) == answer
    table = run("--server", world.api_url, *args)
    assert table.exit_code == 0 and "Infinity" in table.stdout and "NaN" in table.stdout
    with world.local() as store:
        assert cli_json(*store, *args) == answer


NONFINITE_SQL = (
    "SELECT 1/0 AS v, -1/0 AS w, 'NaN'::DOUBLE AS n, 'inf'::FLOAT AS f,"
    " list_value('-inf'::DOUBLE, 2.5) AS l, struct_pack(x := 'nan'::DOUBLE) AS s, 0.5 AS ok"
)
NONFINITE_ROW = ["Infinity", "-Infinity", "NaN", "Infinity", ["-Infinity", 2.5], {"x": "NaN"}, 0.5]


def test_nan_and_infinity_in_sql_results_are_strings_through_api_server_and_db(
    world: World,
) -> None:
    """Was: POST /api/v1/sql {"sql": "SELECT 1/0 AS v"} answered 500, and `roomscope --db F
    sql "SELECT 'NaN'::DOUBLE AS n" -o json` printed a bare NaN."""
    answer = api_sql(world, NONFINITE_SQL)
    assert answer["rows"] == [NONFINITE_ROW]
    assert cli_json("--server", world.api_url, "sql", NONFINITE_SQL) == answer
    metric_values = "SELECT value FROM metric_points WHERE name = 'temp' ORDER BY time"
    assert [r[0] for r in api_sql(world, metric_values)["rows"]] == list(WRITTEN.values())
    with world.local() as store:
        assert cli_json(*store, "sql", NONFINITE_SQL) == answer
        assert cli_json(*store, "sql", "SELECT 'NaN'::DOUBLE AS n")["rows"] == [["NaN"]]
        csv = run(*store, "sql", NONFINITE_SQL, "-o", "csv")
        assert csv.exit_code == 0 and csv.stdout.splitlines()[1].startswith("Infinity,-Infinity")


@pytest.mark.timeout(400)  # ~150 statements, each --store read opening the lake anew (~1 s)
def test_every_column_of_every_table_comes_out_as_json_through_api_and_db(world: World) -> None:
    """Was: POST /api/v1/sql {"sql": "select events from spans"} answered a plain-text 500
    (the TIMESTAMP_NS inside the events could not be converted)."""
    answers: dict[str, Any] = {}
    for table in TABLES:
        columns = [row[0] for row in api_sql(world, f"DESCRIBE {table}")["rows"]]
        assert len(columns) >= 6, table
        (count,) = api_sql(world, f"SELECT count(*) FROM {table}")["rows"][0]
        assert count > 0, table
        for column in columns:
            sql = f'SELECT "{column}" FROM {table} ORDER BY ALL'
            answer = api_sql(world, sql)
            assert answer["columns"] == [column] and len(answer["rows"]) == count, sql
            answers[sql] = answer
        answers[f"SELECT * FROM {table}"] = api_sql(world, f"SELECT * FROM {table}")
    events = answers['SELECT "events" FROM spans ORDER BY ALL']["rows"]
    times = [e["time"] for (row,) in events if row for e in row]
    assert times and all(t.endswith("Z") and len(t) == 30 for t in times)
    links = answers['SELECT "links" FROM spans ORDER BY ALL']["rows"]
    assert any(link for (row,) in links if row for link in row)
    with world.local() as store:
        for sql, answer in answers.items():
            result = run(*store, "sql", sql, "-o", "json")
            assert result.exit_code == 0, (sql, result.stderr)
            got = strict_json(result.stdout)
            if "ORDER BY" not in sql:  # row order unspecified (a lake's files in any order)
                got["rows"].sort(key=json.dumps)
                answer = {**answer, "rows": sorted(answer["rows"], key=json.dumps)}
            assert got == answer, sql


# A literal of each type (in forms the SQL sandbox accepts) and the JSON value it becomes.
LITERALS = [
    ("170141183460469231731687303715884105727::HUGEINT", 2**127 - 1),
    ("340282366920938463463374607431768211455::UHUGEINT", 2**128 - 1),
    ("sum(x) FROM range(3) t(x)", 3),  # a BIGINT sum is a HUGEINT: an integer, not 3.0
    ("row(1, 2)", [1, 2]),  # unnamed fields: a list, not an object that keeps one
    ("'\\xAA\\xBB'::BLOB", "qrs="),
    ("INTERVAL 1 DAY", "P1D"),
    ("INTERVAL '1 month 2 days 03:04:05.5'", "P1M2DT11045.5S"),
    ("'0e0a9b52-3b0a-4c8d-9a4f-5c0b9b3f1d2e'::UUID", "0e0a9b52-3b0a-4c8d-9a4f-5c0b9b3f1d2e"),
    ("1.25::DECIMAL(10, 2)", 1.25),
    ("12345678901234567890::DECIMAL(38, 0)", 12345678901234567890),
    ("DATE '2026-01-02'", "2026-01-02"),
    ("'infinity'::DATE", "infinity"),
    ("TIME '10:11:12.5'", "10:11:12.5"),
    ("TIMESTAMP_NS '2026-01-02 03:04:05.123456789'", "2026-01-02T03:04:05.123456789Z"),
    ("TIMESTAMPTZ '2026-01-02 03:04:05+02'", "2026-01-02T01:04:05.000000000Z"),
    ("TIMESTAMP '2026-01-02 03:04:05.5'", "2026-01-02T03:04:05.500000000Z"),
    ("'infinity'::TIMESTAMP", "infinity"),
    ("'{\"a\": [1, 2]}'::JSON", '{"a": [1, 2]}'),
    (
        "list_value(TIMESTAMP_NS '2026-01-02 03:04:05.000000001')",
        ["2026-01-02T03:04:05.000000001Z"],
    ),
    (
        "struct_pack(t := TIMESTAMP_NS '2026-01-02 00:00:00.000000001', n := list_value(1, 2))",
        {"t": "2026-01-02T00:00:00.000000001Z", "n": [1, 2]},
    ),
    ("'{a=1, b=2}'::MAP(VARCHAR, INTEGER)", {"a": 1, "b": 2}),
    ("'{1=x}'::MAP(INTEGER, VARCHAR)", {"1": "x"}),
    ("'[[1, 2], NULL, []]'::INTEGER[][]", [[1, 2], None, []]),
    ("'[1, 2]'::INTEGER[2]", [1, 2]),
    ("'b'::ENUM('a', 'b')", "b"),
    ("'101'::BIT", "101"),
    ("123456789012345678901234567890123456789::VARINT", 123456789012345678901234567890123456789),
    ("NULL", None),
]


def test_literals_of_every_type_come_out_as_json_through_api_server_and_db(world: World) -> None:
    sql = "SELECT " + ", ".join(
        f"(SELECT {expr}) AS c{i}" if " FROM " in expr else f"{expr} AS c{i}"
        for i, (expr, _) in enumerate(LITERALS)
    )
    want = [value for _, value in LITERALS]
    answer = api_sql(world, sql)
    assert answer["rows"] == [want]
    assert cli_json("--server", world.api_url, "sql", sql) == answer
    with world.local() as store:
        assert cli_json(*store, "sql", sql) == answer
