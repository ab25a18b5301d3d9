"""Edge cases of the query side, through the real CLI (``--server`` while the collector runs,
``--db`` after it stopped) and the real API: nanosecond times, malformed trace ids, options that
exclude each other, ``--attrs`` values with commas and array attributes, how durations, traces
across rooms and days, control characters and bare severity numbers are shown, the project of
sessions, csv headers of empty results, a held store file, and the global options' help.

The store is sent over OTLP/HTTP (JSON: exact ids, times and names, a span that ends before it
starts) to a collector on free ports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from conftest import BACKENDS, backend_settings, make_store
from test_query_fixtures import World

from query.cli import main
from query.cli.views import FIELDS
from query.library.records import format_ts, parse_ts

ROOMSCOPE = str(Path(sys.executable).with_name("roomscope"))
MS = 1_000_000
SEC = 1_000 * MS
DAY = 86_400 * SEC
# Today's UTC midnight: a trace runs across it (its spans on two dates); all times are past.
MIDNIGHT = time.time_ns() // DAY * DAY
FIRST = MIDNIGHT - 100 * MS + 583  # ends in nanoseconds a microsecond datetime cannot hold
CONTROL_NAME = "\x1b]0;TITLE\x07evil\nname"

TRACE_X = "0a" * 16  # rooms alpha and beta, across midnight
TRACE_D = "0d" * 16  # durations, arrays, logs (room delta)
TRACE_C = "0c" * 16  # control characters (room gamma)


def kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {
            "key": key,
            "value": {"arrayValue": {"values": [{"stringValue": v} for v in value]}},
        }
    return {"key": key, "value": {"stringValue": value}}


def span(
    trace: str,
    n: int,
    name: str,
    start: int,
    duration: int,
    room: str,
    session: str,
    parent: int | None = None,
    **attrs: Any,
) -> dict[str, Any]:
    s = {
        "traceId": trace,
        "spanId": f"{n:016x}",
        "name": name,
        "kind": 1,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + duration),
        "attributes": [kv("room", room), kv("session", session)]
        + [kv(k, v) for k, v in attrs.items()],
    }
    if parent is not None:
        s["parentSpanId"] = f"{parent:016x}"
    return s


def resource(project: str, service: str = "edge") -> dict[str, Any]:
    return {"attributes": [kv("service.name", service), kv("project", project)]}


def send(w: World, signal: str, doc: dict[str, Any]) -> None:
    r = httpx.post(f"{w.http_url}/v1/{signal}", json=doc, timeout=30)
    assert r.status_code == 200 and "partialSuccess" not in r.json(), r.text


def fill(w: World) -> None:
    d0 = MIDNIGHT - 2 * 3600 * SEC
    spans = [
        span(TRACE_X, 1, "call.start", FIRST, 150 * MS, "alpha", "s-alpha"),
        span(TRACE_X, 2, "call.next", MIDNIGHT + 20 * MS, 1_001 * MS, "beta", "s-beta", 1),
        span(TRACE_D, 3, "d.root", d0, 10 * SEC, "delta", "s-delta"),
        span(TRACE_D, 4, "d.999", d0 + SEC, 999_999_999, "delta", "s-delta", 3),
        span(TRACE_D, 5, "d.1000", d0 + 2 * SEC, 1_000 * MS, "delta", "s-delta", 3),
        span(TRACE_D, 6, "d.1001", d0 + 3 * SEC, 1_001 * MS, "delta", "s-delta", 3),
        span(TRACE_D, 7, "d.neg", d0 + 5 * SEC, -SEC, "delta", "s-delta", 3),
        span(TRACE_D, 8, "tagged", d0 + 6 * SEC, MS, "delta", "s-delta", 3,
             tags=["a", "b,c"], q="a=b,c"),
        span(TRACE_D, 9, "untagged", d0 + 7 * SEC, MS, "delta", "s-delta", 3,
             tags="[WARN] not json", q="a=b"),
        span(TRACE_C, 10, CONTROL_NAME, d0, MS, "gamma", "s-gamma", note="line1\nline2"),
    ]  # fmt: skip
    for project, room_sessions in (("edge", None), ("p1", "shared-1"), ("p2", "shared-2")):
        if room_sessions is None:
            batch = spans
        else:
            trace = "0e" * 15 + ("01" if project == "p1" else "02")
            batch = [span(trace, 20, "shared.work", d0, MS, "shared", room_sessions)]
        scope = {"scope": {"name": "edges"}, "spans": batch}
        doc = {"resourceSpans": [{"resource": resource(project), "scopeSpans": [scope]}]}
        send(w, "traces", doc)
    records = [
        {"timeUnixNano": str(d0 + SEC), "severityNumber": 9,
         "body": {"stringValue": "number only"}},
        {"timeUnixNano": str(d0 + 2 * SEC), "severityNumber": 17, "severityText": "ERROR",
         "body": {"stringValue": "with text"}},
    ]  # fmt: skip
    for r in records:
        r["attributes"] = [kv("room", "delta"), kv("session", "s-delta")]
    logs = {"resource": resource("edge"), "scopeLogs": [{"logRecords": records}]}
    send(w, "logs", {"resourceLogs": [logs]})
    point = {"timeUnixNano": str(d0 + SEC), "asDouble": 2.5}
    point["attributes"] = [kv("room", "delta"), kv("session", "s-delta")]
    metric = {"name": "queue.depth", "gauge": {"dataPoints": [point]}}
    scope_metrics = {"scopeMetrics": [{"metrics": [metric]}]}
    send(w, "metrics", {"resourceMetrics": [{"resource": resource("edge"), **scope_metrics}]})


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("edges")
    w = World(root / "roomscope.duckdb", backend_settings(request, request.param, root))
    try:
        fill(w)
        yield w
    finally:
        w.stop()


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def both(w: World, *commands: list[str]) -> list[Result]:
    """Each command through --server, then (the collector stopped) through --db: the two
    agree on exit code and output; the --server results are returned."""
    served = [run("--server", w.api_url, *c) for c in commands]
    with w.local() as store:
        read = [run(*store, *c) for c in commands]
    for command, a, b in zip(commands, served, read, strict=True):
        assert (a.exit_code, a.stdout) == (b.exit_code, b.stdout), command
    return served


def names(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return sorted(s["name"] for s in json.loads(result.stdout)["spans"])


def api(w: World, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{w.api_url}/api/v1{path}", params=params, timeout=30)


# -- item 5: times keep nanoseconds ------------------------------------------------------------


def test_since_and_until_select_a_span_by_its_start_as_printed(world: World) -> None:
    printed = json.loads(run("--server", world.api_url, "trace", TRACE_X, "-o", "json").stdout)
    start = printed["spans"][0]["start_time"]
    assert start == format_ts(FIRST) and start.endswith("583Z")
    just_before = format_ts(FIRST - 1)
    only = ["--name", "call.start", "-o", "json"]
    until, since, before, after = both(
        world,
        ["traces", "--until", start, *only],
        ["traces", "--since", start, *only],
        ["traces", "--until", just_before, *only],
        ["traces", "--since", format_ts(FIRST + 1), *only],
    )
    assert names(until) == names(since) == ["call.start"]
    assert names(before) == names(after) == []
    spans = api(world, "/traces", until=start, name="call.start").json()["spans"]
    assert [s["name"] for s in spans] == ["call.start"]
    assert api(world, "/traces", until=just_before, name="call.start").json()["spans"] == []


# -- item 10: a malformed trace id is a usage error everywhere -----------------------------------


def test_a_malformed_trace_id_is_a_usage_error_and_a_400_everywhere(world: World) -> None:
    commands = [["trace", "xyz"], ["session", "traces", "s-delta", "--trace-id", "xyz"]]
    for result in both(world, *commands):
        assert result.exit_code == 2 and "invalid trace id 'xyz'" in result.stderr
        assert "32 hex digits" in result.stderr
    for path, params in [
        ("/traces", {"trace_id": "zzz"}),
        ("/sessions/s-delta/spans", {"trace_id": "zzz"}),
        ("/traces/xyz", {}),
    ]:
        r = api(world, path, **params)
        assert r.status_code == 400 and "32 hex digits" in r.json()["error"], (path, r.text)
    # Well-formed ids in any case are the same trace.
    (upper,) = both(world, ["trace", TRACE_D.upper(), "-o", "json"])
    assert upper.exit_code == 0 and len(json.loads(upper.stdout)["spans"]) == 7
    assert api(world, "/traces", trace_id=TRACE_D.upper()).json()["spans"]


# -- item 12: options that exclude each other ----------------------------------------------------


def test_options_that_exclude_each_other_are_usage_errors(world: World) -> None:
    result = run("--db", str(world.db), "--server", world.api_url, "rooms")
    assert result.exit_code == 2
    assert "--db and --server cannot be used together" in result.stderr
    (result,) = both(world, ["session", "list", "--active", "--ended"])
    assert result.exit_code == 2
    assert "--active and --ended cannot be used together" in result.stderr
    r = api(world, "/sessions", active=["true", "false"])
    assert r.status_code == 400 and "active given more than once" in r.json()["error"]


# -- item 13: --attrs values with commas, array attributes ---------------------------------------


def test_attrs_values_hold_commas_and_match_an_element_of_an_array(world: World) -> None:
    cases = {
        'q="a=b,c"': ["tagged"],
        r"q=a=b\,c": ["tagged"],
        "q=a=b": ["untagged"],
        "tags=a": ["tagged"],
        'tags="b,c"': ["tagged"],
        "tags=b": [],
        "tags=[WARN] not json": ["untagged"],
        'tags=a,q="a=b,c"': ["tagged"],
    }
    results = both(world, *(["traces", "--attrs", a, "-o", "json"] for a in cases))
    for (attrs, expected), result in zip(cases.items(), results, strict=True):
        assert names(result) == expected, attrs
        spans = api(world, "/traces", attrs=attrs).json()["spans"]
        assert sorted(s["name"] for s in spans) == expected, attrs
    (session,) = both(world, ["session", "traces", "s-delta", "--attrs", "tags=a", "-o", "json"])
    assert len(names(session)) == 7  # the whole trace of the matching span


# -- item 14: durations, traces across rooms and days --------------------------------------------


def test_durations_are_told_apart_and_a_negative_one_is_flagged(world: World) -> None:
    table, as_json, tree = both(
        world,
        ["traces", "--room", "delta", "--name", "d."],
        ["traces", "--room", "delta", "--name", "d.neg", "-o", "json"],
        ["trace", TRACE_D],
    )
    rows = {line.split()[3]: line for line in table.stdout.splitlines()[1:]}
    assert "  1.000s  " in rows["d.999"] and "e+" not in table.stdout
    assert "  1.000s  " in rows["d.1000"] and "  1.001s  " in rows["d.1001"]
    assert "  -1.000s (end before start)  " in rows["d.neg"]
    (neg,) = json.loads(as_json.stdout)["spans"]
    assert neg["duration_ns"] == -SEC  # stored as sent
    assert parse_ts(neg["end_time"]) == parse_ts(neg["start_time"]) - SEC
    (line,) = [x for x in tree.stdout.splitlines() if "d.neg" in x]
    assert "-1.000s" in line and line.endswith("(end before start)")


def test_a_trace_header_names_every_room_and_session_and_other_days_show_their_date(
    world: World,
) -> None:
    (tree,) = both(world, ["trace", TRACE_X])
    header, first, second = tree.stdout.splitlines()[:3]
    assert header.startswith(f"trace {TRACE_X}  2 spans  {format_ts(FIRST)}  ")
    assert header.endswith("  rooms=alpha,beta sessions=s-alpha,s-beta")
    assert first.split()[:2] == ["call.start", "23:59:59.900"]
    day = format_ts(MIDNIGHT)[:10]
    assert second.split()[:3] == ["call.next", day, "00:00:00.020"]
    assert "1.001s" in second


# -- item 15: control characters never reach the terminal from a table ---------------------------


def test_control_characters_are_escaped_in_tables_and_kept_in_json_and_csv(world: World) -> None:
    escaped = "\\x1b]0;TITLE\\x07evil\\nname"
    table, tree, sql, as_json, as_csv = both(
        world,
        ["traces", "--room", "gamma"],
        ["trace", TRACE_C, "--show-attrs"],
        ["sql", "SELECT name, attributes['note'] AS note FROM spans WHERE room = 'gamma'"],
        ["traces", "--room", "gamma", "-o", "json"],
        ["traces", "--room", "gamma", "-o", "csv"],
    )
    for result in (table, tree, sql):
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        assert escaped in result.stdout
    assert len(table.stdout.splitlines()) == 2  # header and one row: the newline is escaped
    assert len(tree.stdout.splitlines()) == 2 and "note=line1\\nline2" in tree.stdout
    assert sql.stdout.splitlines()[1].split() == [escaped, "line1\\nline2"]
    assert [s["name"] for s in json.loads(as_json.stdout)["spans"]] == [CONTROL_NAME]
    assert CONTROL_NAME in as_csv.stdout  # csv quotes the field, the data stays as sent


# -- item 16: smaller ones -----------------------------------------------------------------------


def test_a_severity_number_without_text_shows_its_name(world: World) -> None:
    (table,) = both(world, ["session", "logs", "s-delta"])
    lines = {line.split()[-2] + " " + line.split()[-1]: line for line in table.stdout.splitlines()}
    assert lines["number only"].split()[2] == "INFO"
    assert lines["with text"].split()[2] == "ERROR"
    # ... and so does the session's timeline (session get, the API's events)
    (summary,) = both(world, ["session", "get", "s-delta"])
    (line,) = [x for x in summary.stdout.splitlines() if "number only" in x]
    assert " INFO " in line, summary.stdout
    events = api(world, "/sessions/s-delta/events").json()["events"]
    assert {e["message"]: e["severity_text"] for e in events if e["type"] == "log"} == {
        "number only": "INFO",
        "with text": "ERROR",
    }


def test_session_list_shows_the_project_and_filters_by_it(world: World) -> None:
    table, p1 = both(
        world,
        ["session", "list", "--room", "shared"],
        ["session", "list", "--project", "p1", "-o", "json"],
    )
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["ID", "ROOM", "PROJECT", "STARTED"]
    assert sorted(r.split()[:3] for r in rows) == [
        ["shared-1", "shared", "p1"],
        ["shared-2", "shared", "p2"],
    ]
    assert [s["session_id"] for s in json.loads(p1.stdout)["sessions"]] == ["shared-1"]
    sessions = api(world, "/sessions", project="p2").json()["sessions"]
    assert [s["session_id"] for s in sessions] == ["shared-2"]


def test_csv_of_an_empty_result_has_the_same_header_as_a_full_one(world: World, tmp_path) -> None:
    commands = {
        "spans": (["traces", "--room", "delta"], ["--name", "no such span"]),
        "sessions": (["session", "list", "--room", "delta"], ["--project", "nobody"]),
        "logs": (["session", "logs", "s-delta"], ["--grep", "no such text"]),
        "metrics": (["session", "metrics", "s-delta"], ["--name", "no.such.metric"]),
        "tree": (["session", "traces", "s-delta"], ["--name", "no such span"]),
    }  # fmt: skip
    results = both(
        world,
        *([*c, *extra, "-o", "csv"] for c, extra in commands.values()),
        *([*c, "-o", "csv"] for c, _ in commands.values()),
    )
    empty, full = results[: len(commands)], results[len(commands) :]
    for key, e, f in zip(commands, empty, full, strict=True):
        assert e.exit_code == 0 and f.exit_code == 0, key
        header = f.stdout.splitlines()[0]
        assert len(f.stdout.splitlines()) > 1 and e.stdout == header + "\n", key
        assert header.split(",") == FIELDS["spans" if key == "tree" else key], key
    store = make_store(tmp_path / "empty.duckdb")
    store.open()
    store.close()
    rooms = run("--db", str(store.path), "rooms", "-o", "csv")
    assert rooms.exit_code == 0 and rooms.stdout == ",".join(FIELDS["rooms"]) + "\n"
    full_rooms = run("--server", world.api_url, "rooms", "-o", "csv").stdout
    assert full_rooms.splitlines()[0] == ",".join(FIELDS["rooms"])


def test_a_held_store_file_names_the_api_of_the_collector_holding_it(world: World) -> None:
    if world.backend == "ducklake":
        pytest.skip("a lake is never held: its readers run beside its collectors")
    proc = subprocess.run(
        [ROOMSCOPE, "--db", str(world.db), "rooms"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "is in use by a running collector (process " in proc.stderr
    assert proc.stderr.rstrip().endswith(f"query it through its API: --server {world.api_url}")


def test_global_options_name_their_values_and_the_default_source() -> None:
    text = " ".join(run("--help").stdout.split())
    assert "--db PATH" in text and "--server URL" in text and "--config FILE" in text
    assert "--db FILE" not in text and "--server TEXT" not in text
    assert "With neither: the configured server" in text and "store file (store.path)" in text
