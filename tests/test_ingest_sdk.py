"""Real OTel SDK exporters (gRPC and HTTP/protobuf) → collector → DuckDB rows, all three signals."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind, Status, StatusCode
from otel_sdk import pipeline

RESOURCE = {"service.name": "planner", "project": "acme", "room": "lobby", "session": "sess-1"}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_spans_arrive_with_ids_times_names_attributes_and_tags(collector, protocol):
    p = pipeline(protocol, collector.http_url, collector.grpc_endpoint, RESOURCE)
    tracer = p.tracer("agent.lib")
    with tracer.start_as_current_span(
        "turn", kind=SpanKind.SERVER, attributes={"turn": 1}
    ) as parent:
        parent.add_event("thinking", {"tokens": 12})
        with tracer.start_as_current_span(
            "tool.search",
            attributes={"tool": "search", "ok": False, "score": 0.5, "tags": ["a", "b"]},
        ) as child:
            child.set_status(Status(StatusCode.ERROR, "no results"))
    p.shutdown()
    pctx, cctx = parent.get_span_context(), child.get_span_context()

    rows = collector.query(
        "SELECT name, trace_id, span_id, parent_span_id, kind, status_code, status_message,"
        " start_time, end_time, duration_ns, attributes, project, room, session_id, service_name,"
        " scope_name, resource_attributes['service.name'], events FROM spans ORDER BY start_time"
    )
    assert [r[0] for r in rows] == ["turn", "tool.search"]
    turn, search = rows
    assert turn[1] == f"{pctx.trace_id:032x}" and turn[2] == f"{pctx.span_id:016x}"
    assert turn[3] is None and turn[4] == "SERVER" and turn[5] == "UNSET"
    assert search[1] == turn[1] and search[2] == f"{cctx.span_id:016x}" and search[3] == turn[2]
    assert search[5:7] == ("ERROR", "no results")
    assert search[10] == {"tool": "search", "ok": "false", "score": "0.5", "tags": '["a","b"]'}
    assert turn[10] == {"turn": "1"}
    for r in rows:
        assert r[11:17] == ("acme", "lobby", "sess-1", "planner", "agent.lib", "planner")
        assert r[9] == (r[8] - r[7]).total_seconds() * 1e9 or r[9] >= 0
    assert turn[7] <= search[7] <= search[8] <= turn[8]
    assert turn[17][0]["name"] == "thinking" and turn[17][0]["attributes"] == {"tokens": "12"}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_logs_arrive_with_severity_body_and_trace_context(collector, protocol):
    p = pipeline(protocol, collector.http_url, collector.grpc_endpoint, RESOURCE)
    log = p.logger()
    with p.tracer().start_as_current_span("work") as span:
        log.warning("disk at %d%%", 91, extra={"disk": "sda"})
    log.error("failed")
    p.shutdown()
    rows = collector.query(
        "SELECT body, severity_text, severity_number, trace_id, span_id, attributes['disk'],"
        " project, room, session_id, service_name FROM logs ORDER BY time"
    )
    assert [r[:3] for r in rows] == [("disk at 91%", "WARN", 13), ("failed", "ERROR", 17)]
    ctx = span.get_span_context()
    assert rows[0][3:6] == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", "sda")
    assert rows[1][3] is None
    assert all(r[6:] == ("acme", "lobby", "sess-1", "planner") for r in rows)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_metric_points_of_every_sdk_type(collector, protocol):
    p = pipeline(protocol, collector.http_url, collector.grpc_endpoint, RESOURCE)
    meter = p.meter()
    meter.create_counter("requests", unit="1", description="reqs").add(3, {"route": "/a"})
    meter.create_up_down_counter("queue.depth").add(-2)
    meter.create_histogram("latency", unit="ms").record(120.0, {"route": "/a"})
    meter.create_gauge("temperature").set(21.5)
    p.shutdown()
    rows = {
        r[0]: r[1:]
        for r in collector.query(
            "SELECT name, type, temporality, is_monotonic, value, count, sum, bucket_counts,"
            " explicit_bounds, attributes, unit, room, session_id FROM metric_points"
        )
    }
    assert rows["requests"][:4] == ("sum", "cumulative", True, 3.0)
    assert rows["requests"][8:] == ({"route": "/a"}, "1", "lobby", "sess-1")
    assert rows["queue.depth"][:4] == ("sum", "cumulative", False, -2.0)
    h = rows["latency"]
    assert h[0] == "histogram" and h[4] == 1 and h[5] == 120.0
    assert sum(h[6]) == 1 and len(h[6]) == len(h[7]) + 1
    assert rows["temperature"][:4] == ("gauge", None, None, 21.5)
