"""Stored spans → OTLP ``TracesData`` (opentelemetry-proto's messages): what Tempo's trace-by-id
endpoints answer and Grafana decodes.

Spans are grouped by resource (their resource attributes) and then by instrumentation scope;
ids go out as bytes, kinds and status codes as the OTLP enums, events and links with their
attributes. Attribute values are stored as text (SPEC 4), so they go out as string values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import (
    ResourceSpans,
    ScopeSpans,
    Span,
    Status,
    TracesData,
)

from .records import parse_ts

Record = dict[str, Any]
KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


def key_values(attrs: dict[str, Any] | None) -> list[KeyValue]:
    """A stored attributes map as OTLP KeyValues (string values), sorted by key."""
    return [
        KeyValue(key=k, value=AnyValue(string_value="" if v is None else str(v)))
        for k, v in sorted((attrs or {}).items())
    ]


def _id(hex_id: str | None) -> bytes:
    if not hex_id:
        return b""
    try:
        return bytes.fromhex(hex_id)
    except ValueError:
        return hex_id.encode()


def _kind(kind: str | None) -> int:
    k = (kind or "").upper().removeprefix("SPAN_KIND_")
    return KINDS.index(k) if k in KINDS else 0


def _status(code: str | None) -> int:
    return STATUS.get((code or "").upper().removeprefix("STATUS_CODE_"), 0)


def to_span(r: Record) -> Span:
    start = parse_ts(r["start_time"]) if r["start_time"] else 0
    span = Span(
        trace_id=_id(r["trace_id"]),
        span_id=_id(r["span_id"]),
        parent_span_id=_id(r.get("parent_span_id")),
        trace_state=r.get("trace_state") or "",
        name=r["name"] or "",
        kind=_kind(r["kind"]),
        start_time_unix_nano=start,
        end_time_unix_nano=start + (r["duration_ns"] or 0),
        attributes=key_values(r.get("attributes")),
        status=Status(code=_status(r["status_code"]), message=r.get("status_message") or ""),
    )
    for e in r.get("events") or []:
        span.events.add(
            time_unix_nano=parse_ts(e["time"]) if e.get("time") else 0,
            name=e.get("name") or "",
            attributes=key_values(e.get("attributes")),
        )
    for link in r.get("links") or []:
        span.links.add(
            trace_id=_id(link.get("trace_id")),
            span_id=_id(link.get("span_id")),
            trace_state=link.get("trace_state") or "",
            attributes=key_values(link.get("attributes")),
        )
    return span


def _resource_key(r: Record) -> tuple:
    attrs = dict(r.get("resource_attributes") or {})
    if r.get("service_name") and "service.name" not in attrs:
        attrs["service.name"] = r["service_name"]
    return tuple(sorted(attrs.items()))


def traces_data(spans: Iterable[Record]) -> TracesData:
    """Spans (records of the spans table, any traces) as one TracesData."""
    grouped: dict[tuple, dict[tuple, list[Record]]] = {}
    for r in spans:
        scope = (r.get("scope_name") or "", r.get("scope_version") or "")
        grouped.setdefault(_resource_key(r), {}).setdefault(scope, []).append(r)
    data = TracesData()
    for resource, scopes in grouped.items():
        rs = ResourceSpans(resource=Resource(attributes=key_values(dict(resource))))
        for (name, version), members in scopes.items():
            rs.scope_spans.append(
                ScopeSpans(
                    scope=InstrumentationScope(name=name, version=version),
                    spans=[to_span(m) for m in members],
                )
            )
        data.resource_spans.append(rs)
    return data
