"""OTLP requests with the awkward data a careful user sends (issue 19): metric points of every
type holding NaN and ±Infinity, spans with events and links, logs, under session ids with
``/``, ``..``, ``#``, ``?``, spaces and Unicode. Sent as protobuf over OTLP/HTTP (the SDK
refuses non-finite gauge values, OTLP itself does not)."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

NAN, INF = math.nan, math.inf
# The gauge values sent per attribute k, and how the API writes them (SPEC 8).
GAUGES = {"nan": NAN, "inf": INF, "ninf": -INF, "one": 1.5}
WRITTEN = {"nan": "NaN", "inf": "Infinity", "ninf": "-Infinity", "one": 1.5}
AWKWARD_IDS = ["room/42", "a/../b", "x#y?z", "with space", "ünï", "x/events", "100%", ".."]


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def _resource(session: str, room: str, service: str) -> list[KeyValue]:
    return [_kv("service.name", service), _kv("room", room), _kv("session", session)]


def spans_request(session: str, room: str, start: int) -> ExportTraceServiceRequest:
    """A root span with an event and a link, and an ERROR child."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(_resource(session, room, "edge-agent"))
    ss = rs.scope_spans.add()
    ss.scope.name = "edge"
    trace_id, root_id, child_id = os.urandom(16), os.urandom(8), os.urandom(8)
    root = ss.spans.add(
        trace_id=trace_id,
        span_id=root_id,
        name="turn",
        kind=2,
        start_time_unix_nano=start,
        end_time_unix_nano=start + 2_000_000_123,
    )
    root.attributes.extend([_kv("score", NAN), _kv("q", "a=b,c")])
    root.events.add(time_unix_nano=start + 1_000_000_007, name="thinking").attributes.extend(
        [_kv("tokens", "12")]
    )
    link = root.links.add(trace_id=os.urandom(16), span_id=os.urandom(8), trace_state="k=v")
    link.attributes.extend([_kv("why", "follows")])
    child = ss.spans.add(
        trace_id=trace_id,
        span_id=child_id,
        parent_span_id=root_id,
        name="tool.search",
        start_time_unix_nano=start + 10_000,
        end_time_unix_nano=start + 500_000_000,
    )
    child.status.code = 2
    child.status.message = "no results"
    return req


def logs_request(session: str, room: str, start: int) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.extend(_resource(session, room, "edge-agent"))
    sl = rl.scope_logs.add()
    for i, (number, text) in enumerate(((9, "INFO"), (17, "ERROR"))):
        rec = sl.log_records.add(
            time_unix_nano=start + i * 1000, severity_number=number, severity_text=text
        )
        rec.body.string_value = f"{text.lower()} in {session}"
        rec.attributes.extend([_kv("ratio", INF)])
    return req


def metrics_request(session: str, room: str, start: int) -> ExportMetricsServiceRequest:
    """Gauges of NaN, +Inf, -Inf and 1.5; a cumulative sum; a histogram, an exponential
    histogram and a summary whose sums, minimums, maximums and quantiles are not finite."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(_resource(session, room, "edge-agent"))
    sm = rm.scope_metrics.add()
    sm.scope.name = "edge"
    gauge = sm.metrics.add(name="temp", unit="C")
    for i, (k, v) in enumerate(GAUGES.items()):
        p = gauge.gauge.data_points.add(time_unix_nano=start + i, as_double=v)
        p.attributes.append(_kv("k", k))
    total = sm.metrics.add(name="requests")
    total.sum.aggregation_temporality = 2
    total.sum.is_monotonic = True
    total.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=start + 5, as_double=INF)
    hist = sm.metrics.add(name="latency", unit="ms")
    hist.histogram.aggregation_temporality = 2
    for i in range(2):
        hist.histogram.data_points.add(
            start_time_unix_nano=start,
            time_unix_nano=start + 10 + i,
            count=3 + i,
            sum=NAN,
            bucket_counts=[1, 1 + i, 1],
            explicit_bounds=[10.0, 100.0],
            min=-INF,
            max=INF,
        )
    expo = sm.metrics.add(name="sizes")
    expo.exponential_histogram.aggregation_temporality = 1
    ep = expo.exponential_histogram.data_points.add(
        time_unix_nano=start + 20, count=5, sum=INF, scale=2, zero_count=1, zero_threshold=NAN
    )
    ep.positive.offset = 1
    ep.positive.bucket_counts.extend([1, 2])
    ep.negative.bucket_counts.extend([1])
    summary = sm.metrics.add(name="rtt")
    sp = summary.summary.data_points.add(time_unix_nano=start + 30, count=2, sum=-INF)
    sp.quantile_values.add(quantile=0.5, value=NAN)
    sp.quantile_values.add(quantile=0.99, value=INF)
    return req


def send_session(http_url: str, session: str, room: str, start: int | None = None) -> None:
    """Spans, logs and metrics of one session over OTLP/HTTP protobuf; each must be a 200."""
    start = start or time.time_ns() - 60 * 1_000_000_000
    with httpx.Client(timeout=30) as client:
        for signal, req in (
            ("traces", spans_request(session, room, start)),
            ("logs", logs_request(session, room, start)),
            ("metrics", metrics_request(session, room, start)),
        ):
            r = client.post(
                f"{http_url}/v1/{signal}",
                content=req.SerializeToString(),
                headers={"content-type": "application/x-protobuf"},
            )
            assert r.status_code == 200, (signal, r.status_code, r.text)


def _refuse(constant: str) -> Any:
    raise ValueError(f"not JSON: bare {constant}")


def strict_json(text: str | bytes) -> Any:
    """Parse as a strict JSON parser does: a bare NaN or Infinity is an error."""
    return json.loads(text, parse_constant=_refuse)
