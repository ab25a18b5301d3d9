"""Edge cases of the query side, through the real CLI (``--server`` while the collector runs,
``--db`` after it stopped) and the real API: nanosecond times, malformed trace ids, options that
exclude each other, ``--attrs`` values with commas and array attributes, how durations, traces
across rooms and days, control characters and bare severity numbers are shown, the project of
sessions, csv headers of empty results, a held store file, and the global options' help.

The store is sent over OTLP/HTTP (JSON: exact ids, times and names, a span that ends before it
starts) to a collector on free ports."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from test_query_fixtures import World

from query.cli import main
from query.library.records import format_ts

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


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("edges") / "roomscope.duckdb")
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
    with w.offline() as db:
        read = [run("--db", db, *c) for c in commands]
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


# -- item 16: smaller ones -----------------------------------------------------------------------


def test_global_options_name_their_values_and_the_default_source() -> None:
    text = " ".join(run("--help").stdout.split())
    assert "--db PATH" in text and "--server URL" in text and "--config FILE" in text
    assert "--db FILE" not in text and "--server TEXT" not in text
    assert "With neither: the configured server" in text and "store file (store.path)" in text
