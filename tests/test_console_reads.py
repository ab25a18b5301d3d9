"""The reads behind the console's debugging pages (issue #24 part A), through the REST API and
the CLI: trace search as trace rows (paged), a trace's compact waterfall, and a span's or a
trace's log records. A collector filled through the real OpenTelemetry SDK exporters."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from console_world import BIG_TRACE_SESSION, BIG_TRACE_SPANS, World, send_big_trace

from query.cli.demo import send_workload
from query.library import trace_rows
from query.library.filters import SpanFilter

DEMO_SESSION = "studio-render-42"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("reads") / "console.duckdb")
    try:
        send_workload(w.grpc)
        w.big_trace = send_big_trace(w.grpc)
        yield w
    finally:
        w.thread.stop()


def test_trace_rows_page_through_every_matching_trace_once(world: World) -> None:
    full = world.get("/api/v1/trace_rows", attrs="status=error", limit=1000)
    assert full["next"] is None
    got, cursors = [], [None]
    while True:
        params = {"attrs": "status=error", "limit": 3}
        page = world.get(
            "/api/v1/trace_rows", **params, **({"cursor": cursors[-1]} if cursors[-1] else {})
        )
        got += [t["trace_id"] for t in page["traces"]]
        if not page["next"]:
            break
        cursors.append(page["next"])
    assert got == [t["trace_id"] for t in full["traces"]] and len(set(got)) == len(got) > 3
    spans = world.get("/api/v1/traces", attrs="status=error", limit=1000)["spans"]
    assert set(got) == {s["trace_id"] for s in spans}  # the traces of the matching spans
    for cursor, attrs in (("nope", "status=error"), (cursors[1], "status=ok")):
        r = httpx.get(
            world.api + "/api/v1/trace_rows", params={"attrs": attrs, "cursor": cursor}, timeout=10
        )
        assert r.status_code == 400 and r.json() == {"error": "invalid cursor"}  # other filters


def test_trace_rows_count_spans_the_same_in_one_read_or_one_per_trace(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    con = world.thread.collector.read_access().cursor()
    try:
        f = SpanFilter(attrs=(("status", "error"),))
        one = trace_rows.trace_rows(con, f, 50).records
        monkeypatch.setattr(trace_rows, "ONE_READ_NS", -1)  # each trace in its own extent
        each = trace_rows.trace_rows(con, f, 50).records
    finally:
        con.close()
    assert one == each and len(one) > 4 and all(t["span_count"] >= 1 for t in one)


def test_a_traces_compact_waterfall_and_a_spans_logs(world: World) -> None:
    wf = world.get(f"/api/v1/traces/{world.big_trace}/waterfall")
    assert len(wf["rows"]) == BIG_TRACE_SPANS and wf["session_id"] == BIG_TRACE_SESSION
    assert wf["room"] == "bigroom" and wf["rows"][0][wf["columns"].index("start_ns")] == 0
    for bad, status in (("ab" * 16, 404), ("xyz", 400)):
        r = httpx.get(f"{world.api}/api/v1/traces/{bad}/waterfall", timeout=10)
        assert r.status_code == status and "error" in r.json()
    logs = world.get(f"/api/v1/sessions/{DEMO_SESSION}/logs", limit=1000)["logs"]
    one = next(lg for lg in logs if lg["span_id"])
    mine = world.get(f"/api/v1/sessions/{DEMO_SESSION}/logs", span_id=one["span_id"])["logs"]
    assert mine == [lg for lg in logs if lg["span_id"] == one["span_id"]]
    of_trace = world.get(f"/api/v1/sessions/{DEMO_SESSION}/logs", trace_id=one["trace_id"])
    assert of_trace["logs"] == [lg for lg in logs if lg["trace_id"] == one["trace_id"]]
    r = httpx.get(f"{world.api}/api/v1/sessions/{DEMO_SESSION}/logs?span_id=zz", timeout=10)
    assert r.status_code == 400 and "invalid span id" in r.json()["error"]


def test_the_cli_reads_a_spans_logs_through_the_same_path(world: World) -> None:
    from click.testing import CliRunner

    from query.cli import main

    logs = world.get(f"/api/v1/sessions/{DEMO_SESSION}/logs", limit=1000)["logs"]
    one = next(lg for lg in logs if lg["span_id"])
    args = ["--server", world.api, "session", "logs", DEMO_SESSION, "-o", "json"]
    r = CliRunner().invoke(main, [*args, "--span-id", one["span_id"]])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["logs"] == [lg for lg in logs if lg["span_id"] == one["span_id"]]
    r = CliRunner().invoke(main, [*args, "--trace-id", one["trace_id"]])
    assert [lg["body"] for lg in json.loads(r.output)["logs"]] == [
        lg["body"] for lg in logs if lg["trace_id"] == one["trace_id"]
    ]
    r = CliRunner().invoke(main, [*args, "--span-id", "nope"])
    assert r.exit_code == 2 and "invalid span id" in r.output
