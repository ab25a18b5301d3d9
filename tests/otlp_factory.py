"""Builds realistic OTLP requests for tests and benchmarks (protobuf messages, no exporter)."""

from __future__ import annotations

import os
import random
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status


def kv(key: str, value) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def trace_request(
    n_spans: int = 512,
    room: str | None = "lobby",
    session: str | None = None,
    service: str = "agent",
    project: str | None = "acme",
    start_ns: int | None = None,
    seed: int = 0,
) -> ExportTraceServiceRequest:
    """One resource, one scope, ``n_spans`` spans in traces of 8 spans, ~10 attributes each."""
    rnd = random.Random(seed)
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    res_attrs = {"service.name": service, "host.name": "node-1"}
    if room is not None:
        res_attrs["room"] = room
    if session is not None:
        res_attrs["session"] = session
    if project is not None:
        res_attrs["project"] = project
    rs.resource.attributes.extend(kv(k, v) for k, v in res_attrs.items())
    ss = rs.scope_spans.add()
    ss.scope.name = "roomscope.bench"
    ss.scope.version = "1.0"
    base = start_ns or time.time_ns()
    trace_id = os.urandom(16)
    parent = b""
    for i in range(n_spans):
        if i % 8 == 0:
            trace_id = rnd.randbytes(16)
            parent = b""
        sid = rnd.randbytes(8)
        dur = int(rnd.lognormvariate(17, 1.5))
        st = base + i * 1_000_000
        sp = ss.spans.add(
            trace_id=trace_id,
            span_id=sid,
            parent_span_id=parent,
            name=rnd.choice(["llm.call", "tool.search", "agent.turn", "db.query"]),
            kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=st,
            end_time_unix_nano=st + dur,
        )
        sp.attributes.extend(
            [
                kv("tool", rnd.choice(["search", "fetch", "calc"])),
                kv("http.status_code", rnd.choice([200, 200, 200, 500])),
                kv("llm.model", "gpt-x"),
                kv("llm.tokens", rnd.randint(1, 4000)),
                kv("retry", rnd.random() < 0.1),
                kv("score", rnd.random()),
                kv("user.id", f"u{rnd.randint(1, 100)}"),
                kv("agent.name", "planner"),
                kv("step", i),
                kv("cache.hit", False),
            ]
        )
        if rnd.random() < 0.03:
            sp.status.code = Status.STATUS_CODE_ERROR
            sp.status.message = "boom"
        if i % 8 == 0:
            parent = sid
    return req
