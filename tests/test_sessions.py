"""Sessions (SPEC 3): explicit ids, inference by time, late data, counts, idle sweep, restart
(the tracker with a store alone: test_sessions_store.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from conftest import make_reader
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otel_sdk import pipeline
from otlp_factory import kv, trace_request

from query.library.filters import LogFilter

S = 1_000_000_000
IDLE = 300 * S


def post(collector, request) -> None:
    path = "traces" if isinstance(request, ExportTraceServiceRequest) else "logs"
    r = httpx.post(
        f"{collector.http_url}/v1/{path}",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def spans(n: int, room: str | None, start_ns: int, session: str | None = None, **kw):
    return trace_request(n, room=room, session=session, start_ns=start_ns, **kw)


def log_request(
    times: list[int], room: str | None = "lobby", session: str | None = None, severity: int = 9
) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    attrs = {"service.name": "agent", "project": "acme"}
    if room is not None:
        attrs["room"] = room
    if session is not None:
        attrs["session"] = session
    rl.resource.attributes.extend(kv(k, v) for k, v in attrs.items())
    sl = rl.scope_logs.add()
    for t in times:
        lr = sl.log_records.add(time_unix_nano=t, severity_number=severity)
        lr.body.string_value = "hello"
    return req


def sessions(collector, room: str | None = None) -> list[dict]:
    cur = collector.collector.store.cursor()
    try:
        cur.execute(
            "SELECT * REPLACE (epoch_ns(started_at) AS started_at,"
            " epoch_ns(last_seen_at) AS last_seen_at, epoch_ns(ended_at) AS ended_at)"
            " FROM sessions WHERE ? IS NULL OR room = ? ORDER BY started_at",
            [room, room],
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    finally:
        cur.close()


def events(collector, session_id: str) -> list[tuple]:
    return collector.query(
        "SELECT type, epoch_ns(time), data::VARCHAR FROM session_events WHERE session_id = ?"
        " ORDER BY time, rowid",
        [session_id],
    )


def wait_for(condition: Callable[[], object], timeout: float = 15.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.05)


def test_explicit_session_ids_are_used_as_given(collector):
    t0 = time.time_ns() - 60 * S
    post(collector, spans(16, "lobby", t0, session="run-42"))
    post(collector, log_request([t0 + 5 * S], session="run-42", severity=17))
    post(collector, spans(8, None, t0 + 10 * S, session="run-42"))  # no room: still that session
    (s,) = sessions(collector)
    assert s["session_id"] == "run-42" and s["source"] == "explicit"
    assert (s["project"], s["room"], s["span_count"], s["log_count"]) == ("acme", "lobby", 24, 1)
    assert s["started_at"] == t0
    assert s["ended_at"] is None and s["services"] == ["agent"]
    types = [e[0] for e in events(collector, "run-42")]
    assert types == ["session.started", "service.joined"]


def test_bursts_10s_apart_are_one_inferred_session(collector):
    t0 = time.time_ns() - 120 * S
    post(collector, spans(8, "lobby", t0))
    post(collector, spans(8, "lobby", t0 + 10 * S))
    (s,) = sessions(collector)
    assert s["source"] == "inferred" and s["span_count"] == 16
    assert len(s["session_id"]) == 26
    rows = collector.query("SELECT DISTINCT session_id FROM spans")
    assert rows == [(s["session_id"],)]


def test_bursts_20_minutes_apart_are_two_sessions_with_sortable_ids(collector):
    t0 = time.time_ns() - 30 * 60 * S
    post(collector, spans(8, "lobby", t0 + 20 * 60 * S, seed=1))  # the later burst arrives first
    post(collector, spans(8, "lobby", t0, seed=2))
    first, second = sessions(collector)
    assert first["session_id"] < second["session_id"]  # ids sort by start time
    assert (first["span_count"], second["span_count"]) == (8, 8)
    by_session = collector.query(
        "SELECT session_id, min(start_time) FROM spans GROUP BY 1 ORDER BY 2"
    )
    assert [r[0] for r in by_session] == [first["session_id"], second["session_id"]]


def test_out_of_order_and_late_records_join_the_session_they_belong_to(collector):
    now = time.time_ns()
    a, b = now - 1000 * S, now - 400 * S  # 600 s apart: two sessions
    post(collector, spans(4, "lobby", b, seed=1))
    post(collector, spans(4, "lobby", a, seed=2))
    sa, sb = sessions(collector)
    post(collector, log_request([a + 200 * S]))  # inside a's window only
    post(collector, log_request([a - 100 * S]))  # before a started: a late record of a
    post(collector, log_request([b + 250 * S, b - 100 * S]))  # out of order, both b
    sa2, sb2 = sessions(collector)
    assert (sa2["session_id"], sb2["session_id"]) == (sa["session_id"], sb["session_id"])
    assert (sa2["log_count"], sb2["log_count"]) == (2, 2)
    assert sa2["started_at"] == a - 100 * S
    assert sb2["started_at"] == b - 100 * S and sb2["last_seen_at"] == b + 250 * S
    started = [e for e in events(collector, sa["session_id"]) if e[0] == "session.started"]
    assert started == [("session.started", a - 100 * S, '{"source": "inferred"}')]


def test_a_burst_between_two_sessions_goes_to_the_nearest_per_record(collector):
    now = time.time_ns()
    a, b = now - 1000 * S, now - 400 * S
    post(collector, log_request([a]))
    post(collector, log_request([b]))
    sa, sb = sessions(collector)
    post(collector, log_request([a + 150 * S, b - 150 * S]))  # one burst touching both windows
    sa2, sb2 = sessions(collector)
    assert [s["session_id"] for s in (sa2, sb2)] == [sa["session_id"], sb["session_id"]]
    assert (sa2["log_count"], sb2["log_count"]) == (2, 2)


def test_rooms_interleaved_in_one_request_get_their_own_sessions(collector):
    t0 = time.time_ns() - 60 * S
    req = ExportTraceServiceRequest()
    for i in range(6):
        room = ["lobby", "den", "attic"][i % 3]
        req.resource_spans.extend(spans(5, room, t0 + i * S, seed=i).resource_spans)
    req.resource_spans.extend(spans(3, None, t0, seed=9).resource_spans)  # no room
    post(collector, req)
    rows = sessions(collector)
    assert sorted((s["room"], s["span_count"]) for s in rows) == [
        ("attic", 10),
        ("den", 10),
        ("lobby", 10),
    ]
    assert len({s["session_id"] for s in rows}) == 3
    tagged = collector.query(
        "SELECT room, count(DISTINCT session_id), count(*) - count(session_id) FROM spans"
        " GROUP BY room ORDER BY room"
    )
    assert tagged == [("attic", 1, 0), ("den", 1, 0), ("lobby", 1, 0), (None, 0, 3)]


def test_records_without_a_room_get_no_session(collector):
    post(collector, spans(8, None, time.time_ns()))
    post(collector, log_request([time.time_ns()], room=None))
    assert sessions(collector) == []
    assert collector.query("SELECT count(*) FROM session_events") == [(0,)]
    assert collector.query("SELECT count(session_id) FROM spans") == [(0,)]


def test_records_from_a_skewed_future_clock_are_placed_at_their_receive_time(collector):
    before = time.time_ns()
    future = before + 3600 * S  # beyond sessions.max_future_skew (300 s)
    post(collector, log_request([future]))
    after = time.time_ns()
    (s,) = sessions(collector)
    assert before <= s["started_at"] <= after and s["started_at"] == s["last_seen_at"]
    (stored,) = collector.query("SELECT epoch_ns(time) FROM logs")
    assert stored == (future,)  # the record itself keeps its own timestamp
    near = before + 200 * S  # within the bound: taken as is
    post(collector, log_request([near]))
    (s,) = sessions(collector)
    assert s["last_seen_at"] == near and s["log_count"] == 2
    # The session's reads narrow to its window only when it holds all of its records; the
    # first record's own time lies past it.
    con = collector.collector.store.cursor()
    try:
        reader = make_reader(con)
        assert len(reader.session_logs(s["session_id"], LogFilter())["logs"]) == 2
        events = reader.session_events(s["session_id"])["events"]
        assert len([e for e in events if e["type"] == "log"]) == 2
    finally:
        con.close()


def test_counts_equal_what_the_data_tables_hold(collector):
    from opentelemetry.trace import Status, StatusCode

    for room in ("lobby", "den"):
        p = pipeline(
            "http",
            collector.http_url,
            collector.grpc_endpoint,
            {"service.name": f"svc-{room}", "project": "acme", "room": room},
        )
        tracer, log = p.tracer(), p.logger()
        p.meter().create_counter("turns").add(3, {"k": "v"})
        for i in range(5):
            with tracer.start_as_current_span("turn") as span:
                if i % 2:
                    span.set_status(Status(StatusCode.ERROR, "bad"))
                log.error("oops") if i == 0 else log.info("ok")
        p.shutdown()
    post(collector, spans(7, "lobby", time.time_ns(), session="explicit-1"))
    rows = collector.query(
        """
        WITH data AS (
            SELECT session_id, 1 AS s, 0 AS l, 0 AS m, (status_code = 'ERROR')::INT AS e FROM spans
            UNION ALL SELECT session_id, 0, 1, 0, (severity_number >= 17)::INT FROM logs
            UNION ALL SELECT session_id, 0, 0, 1, 0 FROM metric_points
        ), counted AS (
            SELECT session_id, sum(s) s, sum(l) l, sum(m) m, sum(e) e FROM data
            WHERE session_id IS NOT NULL GROUP BY 1
        )
        SELECT c.session_id, c.s, c.l, c.m, c.e,
               x.span_count, x.log_count, x.metric_point_count, x.error_count
        FROM counted c FULL JOIN sessions x USING (session_id)
        """
    )
    assert len(rows) == 3
    for row in rows:
        assert row[1:5] == row[5:9], row
    assert sum(r[2] for r in rows) == 10 and sum(r[3] for r in rows) >= 2
    assert (
        sum(r[4] for r in rows)
        == 2 * 2
        + 2 * 1
        + collector.query(
            "SELECT count(*) FROM spans WHERE session_id = 'explicit-1' AND status_code = 'ERROR'"
        )[0][0]
    )
    services = collector.query(
        "SELECT room, services FROM sessions WHERE source = 'inferred' ORDER BY room"
    )
    assert services == [("den", ["svc-den"]), ("lobby", ["svc-lobby"])]


def test_idle_sweep_ends_a_session_and_late_data_joins_it(start_collector):
    collector = start_collector(**{"sessions.idle_timeout": 1, "sessions.sweep_interval": 0.1})
    t0 = time.time_ns()
    post(collector, log_request([t0, t0 + 500_000_000], session="short"))
    ended = wait_for(lambda: [s for s in sessions(collector) if s["ended_at"] is not None])
    (s,) = ended
    assert s["ended_at"] == s["last_seen_at"] and s["last_seen_at"] == t0 + 500_000_000
    assert events(collector, "short")[-1] == (
        "session.ended",
        t0 + 500_000_000,
        '{"reason": "idle"}',
    )
    # A late record (inside the window) joins the ended session; it stays ended, ended_at moves.
    post(collector, log_request([t0 + 800_000_000], session="short"))
    (s,) = sessions(collector)
    assert s["log_count"] == 3 and s["ended_at"] == s["last_seen_at"]
    assert s["ended_at"] == t0 + 800_000_000
    types = [e[0] for e in events(collector, "short")]
    assert types.count("session.ended") == 1 and "session.late_data" in types
    assert ("session.ended", t0 + 800_000_000, '{"reason": "idle"}') in events(collector, "short")


def test_restart_in_process_keeps_the_session(start_collector, tmp_path):
    db = tmp_path / "restart.duckdb"
    first = start_collector(db=db)
    t0 = time.time_ns() - 30 * S
    post(first, spans(8, "lobby", t0))
    first.stop()
    second = start_collector(db=db)
    post(second, spans(8, "lobby", t0 + 20 * S, seed=3))
    (s,) = sessions(second)
    assert s["span_count"] == 16 and s["ended_at"] is None
    assert second.query("SELECT count(DISTINCT session_id) FROM spans") == [(1,)]
