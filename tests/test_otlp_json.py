"""OTLP JSON over HTTP (hex ids, int64 as strings, enums as ints, lowerCamelCase) stores exactly the
rows the protobuf encoding of the same request stores, and is answered in JSON."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from otlp_factory import kv

T0 = 1_700_000_000_000_000_000
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_A = bytes.fromhex("eee19b7ec3c1b174")
SPAN_B = bytes.fromhex("eee19b7ec3c1b173")
RESOURCE = {"service.name": "planner", "project": "acme", "room": "lobby", "session": "s-1"}

# What each signal's rows are compared on: every column but received_at.
TABLES = {
    "traces": ("spans", "span_id"),
    "logs": ("logs", "time, severity_number"),
    "metrics": ("metric_points", "name, time"),
}
RESPONSES = {
    "traces": ExportTraceServiceResponse,
    "logs": ExportLogsServiceResponse,
    "metrics": ExportMetricsServiceResponse,
}


def _resource(target: Any) -> None:
    target.resource.attributes.extend(kv(k, v) for k, v in RESOURCE.items())


def traces() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    _resource(rs)
    ss = rs.scope_spans.add()
    ss.scope.name = "agent.lib"
    ss.scope.version = "2.1"
    ss.scope.attributes.append(kv("scope.attr", "x"))
    a = ss.spans.add(
        trace_id=TRACE,
        span_id=SPAN_A,
        trace_state="vendor=1",
        name="turn",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 5_000_000_000,
        flags=1,
        dropped_attributes_count=2,
        dropped_events_count=3,
        dropped_links_count=4,
    )
    a.attributes.extend(
        [
            kv("turn", 7),
            kv("big", 2**62 + 1),  # an int64 beyond double precision: a string in JSON
            kv("ok", True),
            kv("score", 0.25),
            kv("who", "ann"),
            KeyValue(key="raw", value=AnyValue(bytes_value=b"\x00\xffhi")),
        ]
    )
    tags = a.attributes.add(key="tags")
    tags.value.array_value.values.extend([AnyValue(string_value="a"), AnyValue(int_value=2)])
    nested = a.attributes.add(key="nested")
    nested.value.kvlist_value.values.extend([kv("k", "v"), kv("n", 1)])
    ev = a.events.add(time_unix_nano=T0 + 1_000, name="thinking", dropped_attributes_count=1)
    ev.attributes.append(kv("tokens", 12))
    ln = a.links.add(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), trace_state="t=1")
    ln.attributes.append(kv("link.kind", "follows"))
    a.status.code = Status.STATUS_CODE_OK
    b = ss.spans.add(
        trace_id=TRACE,
        span_id=SPAN_B,
        parent_span_id=SPAN_A,
        name="tool.search",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=T0 + 1_000_000,
        end_time_unix_nano=T0 + 2_000_000,
    )
    b.attributes.append(kv("room", "kitchen"))  # record attributes win over the resource's
    b.status.code = Status.STATUS_CODE_ERROR
    b.status.message = "no results"
    return req


def logs() -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    _resource(rl)
    sl = rl.scope_logs.add()
    sl.scope.name = "agent.log"
    bodies = [
        AnyValue(string_value="disk at 91%"),
        AnyValue(int_value=-(2**40)),
        AnyValue(bytes_value=b"\x01\x02binary"),
        AnyValue(double_value=1.5),
        AnyValue(bool_value=False),
    ]
    kvlist = AnyValue()
    kvlist.kvlist_value.values.extend([kv("event", "login"), kv("user", 7)])
    bodies.append(kvlist)
    arr = AnyValue()
    arr.array_value.values.extend([AnyValue(string_value="x"), AnyValue(double_value=2.0)])
    bodies.append(arr)
    for i, body in enumerate(bodies):
        lr = sl.log_records.add(
            time_unix_nano=T0 + i,
            observed_time_unix_nano=T0 + 1_000 + i,
            severity_number=9 + i,
            severity_text=f"SEV{i}",
            flags=1,
            event_name="app.event" if i == 0 else "",
        )
        lr.body.CopyFrom(body)
        lr.attributes.append(kv("i", i))
        if i % 2 == 0:
            lr.trace_id = TRACE
            lr.span_id = SPAN_A
    sl.log_records.add(time_unix_nano=T0 + 99, observed_time_unix_nano=T0 + 99, severity_number=1)
    return req


def _exemplar(dp: Any, as_int: bool) -> None:
    ex = dp.exemplars.add(time_unix_nano=T0 + 5, trace_id=TRACE, span_id=SPAN_B)
    if as_int:
        ex.as_int = 42
    else:
        ex.as_double = 0.5
    ex.filtered_attributes.append(kv("user", "ann"))


def metrics() -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    _resource(rm)
    sm = rm.scope_metrics.add()
    sm.scope.name = "agent.metrics"
    cumulative = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    delta = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA

    g = sm.metrics.add(name="temperature", unit="Cel", description="room temperature")
    dp = g.gauge.data_points.add(time_unix_nano=T0, as_double=21.5)
    dp.attributes.append(kv("sensor", "a"))
    _exemplar(dp, as_int=False)

    s = sm.metrics.add(name="requests", unit="1")
    s.sum.aggregation_temporality = cumulative
    s.sum.is_monotonic = True
    dp = s.sum.data_points.add(start_time_unix_nano=T0 - 10, time_unix_nano=T0, as_int=2**53 + 3)
    dp.attributes.append(kv("route", "/a"))
    _exemplar(dp, as_int=True)

    h = sm.metrics.add(name="latency", unit="ms")
    h.histogram.aggregation_temporality = delta
    dp = h.histogram.data_points.add(
        start_time_unix_nano=T0 - 10, time_unix_nano=T0, count=6, sum=321.5, min=1.0, max=200.0
    )
    dp.bucket_counts.extend([1, 2, 3])
    dp.explicit_bounds.extend([10.0, 100.0])
    _exemplar(dp, as_int=False)

    e = sm.metrics.add(name="latency.exp", unit="ms")
    e.exponential_histogram.aggregation_temporality = delta
    dp = e.exponential_histogram.data_points.add(
        start_time_unix_nano=T0 - 10,
        time_unix_nano=T0,
        count=9,
        sum=44.0,
        scale=3,
        zero_count=1,
        zero_threshold=0.001,
        min=0.0,
        max=9.0,
    )
    dp.positive.offset = -2
    dp.positive.bucket_counts.extend([1, 2, 3])
    dp.negative.offset = 1
    dp.negative.bucket_counts.extend([2])
    _exemplar(dp, as_int=True)

    q = sm.metrics.add(name="rpc.duration", unit="s")
    dp = q.summary.data_points.add(start_time_unix_nano=T0 - 10, time_unix_nano=T0, count=4)
    dp.sum = 2.5
    dp.quantile_values.add(quantile=0.5, value=0.4)
    dp.quantile_values.add(quantile=0.99, value=1.9)
    return req


BUILDERS = {"traces": traces, "logs": logs, "metrics": metrics}


def _hex_ids(node: Any) -> None:
    """The protobuf JSON mapping writes bytes as base64; OTLP JSON writes ids as hex."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)


def otlp_json(message: Any) -> bytes:
    doc = json_format.MessageToDict(message, use_integers_for_enums=True)  # lowerCamelCase
    _hex_ids(doc)
    return json.dumps(doc).encode()


def post(url: str, signal: str, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/{signal}", content=body, headers={"Content-Type": content_type}, timeout=30
    )


def rows(rc: Any, signal: str) -> list[tuple]:
    table, order = TABLES[signal]
    return rc.query(f"SELECT * EXCLUDE (received_at) FROM {table} ORDER BY {order}")


@pytest.mark.parametrize("signal", ["traces", "logs", "metrics"])
def test_json_rows_equal_protobuf_rows(start_collector, tmp_path, signal):
    message = BUILDERS[signal]()
    body = otlp_json(message)
    # The JSON really is OTLP JSON: hex ids, int64s as strings, enums as ints.
    text = body.decode()
    assert TRACE.hex() in text  # spans, log records and exemplars all carry ids
    assert '"timeUnixNano": "' in text or '"startTimeUnixNano": "' in text
    if signal == "traces":
        assert '"kind": 2' in text and '"intValue": "4611686018427387905"' in text

    pb_rc = start_collector(db=tmp_path / "pb.duckdb")
    json_rc = start_collector(db=tmp_path / "json.duckdb")
    r_pb = post(pb_rc.http_url, signal, message.SerializeToString(), "application/x-protobuf")
    r_json = post(json_rc.http_url, signal, body, "application/json")

    assert r_pb.status_code == 200, r_pb.text
    assert r_pb.headers["content-type"] == "application/x-protobuf"
    pb_resp = RESPONSES[signal].FromString(r_pb.content)
    assert not pb_resp.HasField("partial_success")
    assert r_json.status_code == 200, r_json.text
    assert r_json.headers["content-type"] == "application/json"
    assert json.loads(r_json.content) == {}

    pb_rows, json_rows = rows(pb_rc, signal), rows(json_rc, signal)
    expected = {"traces": 2, "logs": 8, "metrics": 5}[signal]
    assert len(pb_rows) == expected
    assert json_rows == pb_rows
    if signal == "logs":
        bodies = [r[0] for r in json_rc.query("SELECT body FROM logs ORDER BY time")]
        assert bodies == [
            "disk at 91%",
            str(-(2**40)),
            json.dumps(base64.b64encode(b"\x01\x02binary").decode()),  # non-string: JSON
            "1.5",
            "false",
            '{"event":"login","user":7}',
            '["x",2.0]',
            None,
        ]


def test_json_spans_have_the_right_values(start_collector):
    rc = start_collector()
    r = post(rc.http_url, "traces", otlp_json(traces()), "application/json")
    assert r.status_code == 200, r.text
    got = rc.query(
        "SELECT span_id, trace_id, parent_span_id, name, kind, start_time, duration_ns,"
        " status_code, status_message, attributes, project, room, session_id, service_name,"
        " scope_name, events[1].name, links[1].trace_id, trace_state, dropped_links_count"
        " FROM spans ORDER BY span_id DESC"
    )
    a, b = got
    assert a[:5] == (SPAN_A.hex(), TRACE.hex(), None, "turn", "SERVER")
    assert a[5].isoformat() == "2023-11-14T22:13:20"
    assert a[6] == 5_000_000_000 and a[7:9] == ("OK", None)
    assert a[9]["big"] == str(2**62 + 1) and a[9]["raw"] == base64.b64encode(b"\x00\xffhi").decode()
    assert a[9]["tags"] == '["a",2]' and a[9]["nested"] == '{"k":"v","n":1}'
    assert a[10:15] == ("acme", "lobby", "s-1", "planner", "agent.lib")
    assert a[15:19] == ("thinking", bytes(range(1, 17)).hex(), "vendor=1", 4)
    assert b[:5] == (SPAN_B.hex(), TRACE.hex(), SPAN_A.hex(), "tool.search", "CLIENT")
    assert b[7:9] == ("ERROR", "no results") and b[11] == "kitchen"


def test_handwritten_otlp_json_from_the_spec_example(collector):
    """The shape of opentelemetry-proto's examples/trace.json, written by hand (not generated)."""
    doc = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "my.service"}},
                        {"key": "room", "value": {"stringValue": "hall"}},
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "my.library", "version": "1.0.0"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "parentSpanId": "EEE19B7EC3C1B173",
                                "name": "I'm a server span",
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "kind": 2,
                                "attributes": [
                                    {"key": "my.span.attr", "value": {"intValue": "42"}},
                                    {"key": "f", "value": {"doubleValue": 1.5}},
                                ],
                                "status": {"code": 2, "message": "bad"},
                                "someFutureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    r = post(collector.http_url, "traces", json.dumps(doc).encode(), "application/json")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    got = collector.query(
        "SELECT trace_id, span_id, parent_span_id, name, kind, start_time, duration_ns,"
        " status_code, status_message, attributes, room, service_name, scope_version FROM spans"
    )
    assert got == [
        (
            "5b8efff798038103d269b633813fc60c",
            "eee19b7ec3c1b174",
            "eee19b7ec3c1b173",
            "I'm a server span",
            "SERVER",
            got[0][5],
            1_000_000_000,
            "ERROR",
            "bad",
            {"my.span.attr": "42", "f": "1.5"},
            "hall",
            "my.service",
            "1.0.0",
        )
    ]
    assert got[0][5].isoformat() == "2018-12-13T14:51:00"


def test_json_partial_success_is_answered_in_json(collector):
    doc = json.loads(otlp_json(traces()))
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[1]["spanId"] = "abcd"  # 2 bytes: invalid
    r = post(collector.http_url, "traces", json.dumps(doc).encode(), "application/json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    ps = r.json()["partialSuccess"]
    assert ps["rejectedSpans"] == "1"  # int64 → string in the JSON mapping
    assert "span_id" in ps["errorMessage"] and "2 bytes" in ps["errorMessage"]
    assert collector.query("SELECT span_id FROM spans") == [(SPAN_A.hex(),)]
