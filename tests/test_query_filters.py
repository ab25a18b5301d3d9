"""Unit tests of the query library: filter parsing, SQL semantics of span search, read-only SQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pytest

from collector.columns import keyset_id, resource_id
from collector.store.migrations import migrate
from query.http.params import TRACES, P, openapi_parameters, parse_params
from query.library import search
from query.library.errors import NotFound, QueryError
from query.library.filters import (
    SpanFilter,
    format_ns_duration,
    parse_attrs,
    parse_duration,
    parse_severity,
    parse_time,
)
from query.library.records import format_ts, parse_ts
from query.library.span_search import search_spans
from query.library.sql import check_read_only
from query.library.sql import run_sql as _run_sql
from query.library.traces import get_trace, render_trees


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1000", 1_000_000_000),
        ("1.5s", 1_500_000_000),
        ("250ms", 250_000_000),
        ("20us", 20_000),
        ("20µs", 20_000),
        ("7ns", 7),
        ("2m", 120_000_000_000),
        (" 0.5 ", 500_000),
        (".5s", 500_000_000),
        ("1h", 3_600_000_000_000),  # the same grammar as the settings' ages
    ],
)
def test_durations_bare_numbers_are_milliseconds(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["abc", "", "1y", "-5", "1.5.s", "s", "10 sec"])
def test_bad_durations_are_refused_with_the_syntax(text: str) -> None:
    with pytest.raises(QueryError, match="invalid duration"):
        parse_duration(text)


def run_sql(con, sql, timeout: float = 30.0, max_rows: int = 10_000):
    return _run_sql(con, sql, timeout=timeout, max_rows=max_rows)


def test_human_durations() -> None:
    assert [format_ns_duration(n) for n in (850, 12_300, 250_000_000, 1_500_000_000)] == [
        "850ns",
        "12.3µs",
        "250ms",
        "1.500s",
    ]
    assert format_ns_duration(125 * 10**9) == "2m05s"


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (999, "999ns"),
        (999_499, "999µs"),
        (999_999, "1ms"),  # rounds up into the next unit, never "1e+03µs"
        (1_500_000, "1.5ms"),
        (44_000_000, "44ms"),
        (999_999_999, "1.000s"),
        (1_000_000_000, "1.000s"),
        (1_001_000_000, "1.001s"),  # a millisecond apart from the one above
        (59_999_600_000, "1m00s"),
        (3_720 * 10**9, "1h02m"),
        (-1_000_000_000, "-1.000s"),
    ],
)
def test_human_durations_at_unit_boundaries(ns: int, text: str) -> None:
    assert format_ns_duration(ns) == text


def test_attrs_repeatable_and_comma_separated() -> None:
    assert parse_attrs(["a=1,b=2", "c=x=y", " d = 4 "]) == (
        ("a", "1"),
        ("b", "2"),
        ("c", "x=y"),
        ("d", "4"),
    )
    assert parse_attrs(["k="]) == (("k", ""),)
    for bad in ("novalue", "=v", "a=1,oops", "q=a=b,c"):
        with pytest.raises(QueryError, match="expected KEY=VALUE"):
            parse_attrs([bad])
    with pytest.raises(QueryError, match="double quote is not closed"):
        parse_attrs(['q="a,b'])


def test_attrs_values_quoted_or_escaped() -> None:
    """The first = separates key from value; a comma inside double quotes or after a
    backslash belongs to the value; quoting keeps blanks; other backslashes stay."""
    assert parse_attrs(['q="a=b,c"', r"q=a=b\,c", 'k=" x "', r"p=C:\dir", r"e=a\\b"]) == (
        ("q", "a=b,c"),
        ("q", "a=b,c"),
        ("k", " x "),
        ("p", r"C:\dir"),
        ("e", r"a\b"),
    )
    assert parse_attrs([r'"a=b"=1,x=say \"hi\"']) == (("a=b", "1"), ("x", 'say "hi"'))
    for key, value in [("q", "a=b,c"), ("k", " x "), ("a=b", 'say "hi", \\o/'), ("e", "")]:
        f = SpanFilter(attrs=((key, value),))
        assert SpanFilter(**parse_params(TRACES, f.to_params())) == f


def test_times_relative_and_iso() -> None:
    now = parse_ts("2026-11-24T12:00:00.123456789Z")
    minute = 60 * 10**9
    assert parse_time("15m", now) == now - 15 * minute
    assert parse_time("2h", now) == now - 120 * minute
    assert parse_time("7d", now) == now - 7 * 24 * 60 * minute
    assert parse_time("2026-11-24T10:00:00Z") == parse_ts("2026-11-24T10:00:00Z")
    assert parse_time("2026-11-24T12:00:00+02:00") == parse_ts("2026-11-24T10:00:00Z")
    assert parse_time("2026-11-24 10:00") == parse_ts("2026-11-24T10:00:00Z")
    with pytest.raises(QueryError, match="invalid time"):
        parse_time("yesterday")


def test_iso_times_keep_nanoseconds() -> None:
    """A time as roomscope prints it selects that very nanosecond (datetime has only µs)."""
    assert format_ts(parse_time("2026-11-24T16:20:18.818597583Z")) == (
        "2026-11-24T16:20:18.818597583Z"
    )
    assert parse_time("2026-11-24T18:20:18.8185975+02:00") == parse_ts(
        "2026-11-24T16:20:18.818597500Z"
    )
    assert parse_time("1969-12-31T23:59:59.5Z") == -500_000_000
    for bad in ("2026-11-24T16:20:18.8185975831Z", "1600-01-01", "2300-01-01"):
        with pytest.raises(QueryError, match="invalid time"):
            parse_time(bad)


def test_severities() -> None:
    assert [parse_severity(s) for s in ("warn", "ERROR", "13", "fatal")] == [13, 17, 13, 21]
    with pytest.raises(QueryError):
        parse_severity("loud")


def test_timestamps_keep_nanoseconds() -> None:
    ns = 1_795_537_200_123_456_789
    assert format_ts(ns) == "2026-11-24T16:20:00.123456789Z"
    assert parse_ts(format_ts(ns)) == ns


def test_api_parameters_validate_and_reject_unknown_ones() -> None:
    q = parse_params(TRACES, [("min_duration", "1.5s"), ("attrs", "a=1"), ("attrs", "b=2,c=3")])
    assert q == {"min_duration": 1_500_000_000, "attrs": (("a", "1"), ("b", "2"), ("c", "3"))}
    with pytest.raises(QueryError, match="unknown parameter 'min_dur'"):
        parse_params(TRACES, [("min_dur", "1")])
    with pytest.raises(QueryError, match="parameter limit"):
        parse_params(TRACES, [("limit", "0")])
    with pytest.raises(QueryError, match="more than once"):
        parse_params(TRACES, [("room", "a"), ("room", "b")])
    assert [p["name"] for p in openapi_parameters(TRACES)] == list(TRACES)
    assert set(TRACES) <= set(P)


def test_filters_round_trip_through_api_parameters() -> None:
    f = SpanFilter(
        room="r",
        min_duration=1_500_000_000,
        attrs=(("a", "1"), ("b", "2")),
        since=parse_ts("2026-01-01T00:00:00.000000001Z"),
        until=parse_ts("2026-01-01T00:00:00.999999999Z"),
        limit=5,
    )
    assert SpanFilter(**parse_params(TRACES, f.to_params())) == f


# --- span search semantics over a hand-made store -------------------------------------------


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    migrate(c, ":memory:")
    spans = [
        # name, kind, service, status_code, duration_ms, attributes, resource attributes
        ("a", "SERVER", "agent", "ERROR", 1000, {}, {"service.name": "agent"}),
        ("b", "CLIENT", "agent", "OK", 2000, {"status": "error"}, {}),
        ("c", "INTERNAL", "tools", "UNSET", 999, {"k": "v"}, {"k": "resource"}),
        ("d", "INTERNAL", "tools", "UNSET", 5000, {}, {"k": "v", "service": "svc-attr"}),
        ("e", "SERVER", "tools", "ERROR", 3000, {"name": "renamed"}, {}),
    ]
    for i, span in enumerate(spans):
        insert_span(c, i, *span)
    c.execute(  # what DuckDBStore.write keeps up to date
        "INSERT INTO span_attribute_keys SELECT DISTINCT 'span', unnest(keys)"
        " FROM attribute_keysets UNION SELECT DISTINCT 'resource', unnest(map_keys(attributes))"
        " FROM resources"
    )
    return c


def insert_span(c, i, name, kind, svc, status, ms, attrs, res) -> None:
    """The i-th span of trace 0…01 (span i+1; parent span 1), as the store keeps it; the
    attribute keys it adds are not registered in span_attribute_keys."""
    base = datetime(2026, 11, 24, 12, 0)
    c.execute("INSERT OR IGNORE INTO resources VALUES (?, ?)", [resource_id(res), res])
    keys = list(attrs)
    c.execute(
        "INSERT OR IGNORE INTO attribute_keysets VALUES (?, ?)", [keyset_id(tuple(keys)), keys]
    )
    c.execute(
        "INSERT INTO span_data (project, room, session_id, trace_id, span_id, parent_span_id,"
        " name, kind, service_name, start_time, duration_ns, status_code,"
        " attribute_keyset, attribute_values, resource_id, events, links)"
        " VALUES ('p', 'r', 's', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, [], [])",
        [
            "0" * 31 + "1",
            f"{i + 1:016x}",
            None if i == 0 else f"{1:016x}",
            name,
            kind,
            svc,
            base + timedelta(seconds=i),
            ms * 1_000_000,
            status,
            keyset_id(tuple(keys)),
            list(attrs.values()),
            resource_id(res),
        ],
    )


@pytest.fixture(params=["keyset positions", "per-row positions"])
def lookups(request, monkeypatch) -> str:
    """Attribute values are found at their key's position in each keyset: from a CASE over the
    keysets holding the key, or (beyond CASE_LIMIT keysets) looked up per row; both must agree."""
    if request.param == "per-row positions":
        monkeypatch.setattr(search, "CASE_LIMIT", 0)
    return request.param


def names(con: duckdb.DuckDBPyConnection, **kw: object) -> list[str]:
    return sorted(s["name"] for s in search_spans(con, SpanFilter(**kw), 100).records)  # type: ignore[arg-type]


def test_min_duration_is_inclusive_and_max_too(con: duckdb.DuckDBPyConnection) -> None:
    assert names(con, min_duration=parse_duration("1000")) == ["a", "b", "d", "e"]
    assert names(con, max_duration=parse_duration("1s")) == ["a", "c"]


def test_status_error_matches_status_code_any_case_and_the_attribute(con, lookups) -> None:
    """The value in any case; the stored code as the decoders write it (UNSET, OK, ERROR)."""
    assert names(con, attrs=(("status", "error"),)) == ["a", "b", "e"]
    assert names(con, attrs=(("status", "OK"),)) == ["b"]
    assert names(con, attrs=(("status", "unset"),)) == ["c", "d"]


def test_attrs_look_in_span_then_resource_attributes_and_all_must_hold(con, lookups) -> None:
    assert names(con, attrs=(("k", "v"),)) == ["c", "d"]
    assert names(con, attrs=(("k", "resource"),)) == []  # the span's own value wins
    assert names(con, attrs=(("k", "v"), ("status", "unset"))) == ["c", "d"]
    assert names(con, attrs=(("k", "v"), ("status", "error"))) == []


def test_service_name_kind_fall_back_to_span_fields(con, lookups) -> None:
    assert names(con, attrs=(("service", "tools"),)) == ["c", "e"]  # d has an attribute
    assert names(con, attrs=(("service", "svc-attr"),)) == ["d"]
    assert names(con, attrs=(("name", "a"),)) == ["a"]
    assert names(con, attrs=(("name", "renamed"),)) == ["e"]
    assert names(con, attrs=(("name", "e"),)) == []
    assert names(con, attrs=(("kind", "server"),)) == ["a", "e"]


def test_attrs_match_an_element_of_an_array_and_values_with_commas(con, lookups) -> None:
    """SPEC 4 stores arrays as JSON text: tags=a matches ["a","b"]; text that merely starts
    with "[" is compared as text; the resource side works alike."""
    for i, (name, attrs, res) in enumerate(
        [
            ("f", {"tags": '["a","b,c"]', "q": "a=b,c"}, {}),
            ("g", {"tags": "[WARN] not json"}, {}),
            ("h", {"tags": "a"}, {}),
            ("i", {"tags": "[1,2.5,true]"}, {}),
            ("j", {}, {"tags": '["a","z"]'}),
        ],
        start=5,
    ):
        insert_span(con, i, name, "INTERNAL", "tools", "UNSET", 1, attrs, res)
    con.execute(
        "INSERT OR IGNORE INTO span_attribute_keys VALUES ('span', 'tags'), ('span', 'q'),"
        " ('resource', 'tags')"
    )
    assert names(con, attrs=parse_attrs(["tags=a"])) == ["f", "h", "j"]
    assert names(con, attrs=parse_attrs(['tags="b,c"'])) == ["f"]
    assert names(con, attrs=parse_attrs(["tags=b"])) == []
    assert names(con, attrs=parse_attrs(["tags=[WARN] not json"])) == ["g"]
    assert names(con, attrs=parse_attrs(["tags=2.5", "tags=true"])) == ["i"]
    assert names(con, attrs=parse_attrs(["tags=z"])) == ["j"]
    assert names(con, attrs=parse_attrs([r"q=a=b\,c"])) == ["f"]
    assert names(con, attrs=parse_attrs(['q="a=b,c",tags=a'])) == ["f"]


def test_user_values_are_bound_never_spliced(con) -> None:
    evil = "x' OR 1=1; DROP TABLE spans; --"
    assert names(con, room=evil, attrs=((evil, evil),)) == []
    assert names(con, name="'") == []
    assert con.execute("SELECT count(*) FROM spans").fetchone() == (5,)


def test_trace_tree_is_indented_by_parent(con) -> None:
    spans = get_trace(con, "0" * 31 + "1")
    lines = render_trees(spans, show_attrs=True)
    assert lines[0].startswith("trace " + "0" * 31 + "1  5 spans")
    assert lines[1].startswith("  a ") and lines[2].startswith("    b ")
    assert "status=error" in lines[2] and "ERROR" in lines[1]
    with pytest.raises(NotFound):
        get_trace(con, "f" * 32)
    with pytest.raises(QueryError, match="32 hex"):
        get_trace(con, "xyz")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "with x as (select 1) select * from x",
        "FROM spans",
        "SHOW TABLES",
        "DESCRIBE spans",
        "SUMMARIZE spans",
        "EXPLAIN SELECT * FROM spans",
        "PRAGMA table_info('spans')",
    ],
)
def test_reads_are_allowed(con, sql: str) -> None:
    check_read_only(sql)
    assert "columns" in run_sql(con, sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO spans (name) VALUES ('x')",
        "DELETE FROM spans",
        "UPDATE spans SET name = 'x'",
        "DROP TABLE spans",
        "CREATE TABLE t AS SELECT 1",
        "ATTACH 'other.db'",
        "COPY spans TO 'out.csv'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET threads = 1",
        "CALL pragma_version()",
        "EXPLAIN ANALYZE DELETE FROM spans",
        "PRAGMA enable_profiling",
        "PRAGMA threads=1",
        "CHECKPOINT",
        "VACUUM",
        "EXPORT DATABASE 'out'",
        "BEGIN",
        "PREPARE p AS SELECT 1",
        "DETACH x",
        "USE memory",
        "SELECT 1; DELETE FROM spans",
    ],
)
def test_writes_are_refused(con, sql: str) -> None:
    with pytest.raises(QueryError, match=r"read-only|one SQL statement"):
        run_sql(con, sql)
    assert con.execute("SELECT count(*) FROM spans").fetchone() == (5,)


def test_sql_results_keep_nanoseconds_and_maps(con) -> None:
    result = run_sql(con, "SELECT start_time, attributes FROM spans WHERE name = 'b'")
    assert result == {
        "columns": ["start_time", "attributes"],
        "rows": [["2026-11-24T12:00:01.000000000Z", {"status": "error"}]],
    }


def test_sql_is_interrupted_after_its_timeout(con) -> None:
    with pytest.raises(QueryError, match="interrupted after"):
        run_sql(con, "SELECT count(*) FROM range(100000000000) a", timeout=0.05)
    assert run_sql(con, "SELECT 1 AS x")["rows"] == [[1]]


def test_a_non_ascii_digit_severity_is_a_clean_error() -> None:
    """'¹'.isdigit() holds but int('¹') fails: it must be a QueryError (400), not a 500."""
    with pytest.raises(QueryError, match="invalid severity"):
        parse_severity("¹")
