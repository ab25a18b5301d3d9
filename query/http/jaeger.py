"""Jaeger's HTTP query API (``/api/services``, ``/api/traces`` …), as Grafana's Jaeger data source
and the Jaeger UI call it (SPEC 9), in Jaeger's ``{"data": [...]}`` JSON model: spans with
``references``, times in microseconds, typed ``tags``, one ``processes`` entry per resource.

roomscope's room, session and project are span tags (``room``, ``session``, ``project``) and
search tags: ``tags={"room":"lobby"}`` is ``--room lobby``; ``error=true`` is status ERROR.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from collector import durations

from ..library.errors import QueryError
from ..library.filters import MAX_LIMIT, SpanFilter
from ..library.records import parse_ts
from ..library.traces import check_trace_id
from .compat import Run, query_params, unix_range, whole
from .responses import JsonResponse

SEARCH_PARAMS = (
    "service", "operation", "tags", "minDuration", "maxDuration", "limit", "start", "end",
    "lookback", "spanKind",
)  # fmt: skip
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)")
MAX_LOOKBACK_NS = 10 * 365 * 86_400 * 10**9


def _data(data: Any, **extra: Any) -> JsonResponse:
    return JsonResponse(
        {"data": data, "total": len(data) if isinstance(data, list) else 0, "limit": 0,
         "offset": 0, "errors": None, **extra}
    )  # fmt: skip


def go_duration(text: str, name: str) -> int:
    """A Go duration (``1.5s``, ``100ms``, ``1m30s``) or a bare number of ms → ns."""
    parts = _GO_DURATION.findall(text)
    if parts and "".join(n + u for n, u in parts) == text.strip():
        return sum(durations.duration_ns(n + u, "ms") for n, u in parts)
    try:
        return durations.duration_ns(text, "ms")
    except ValueError:
        raise QueryError(
            f"parameter {name}: invalid duration {text!r} (e.g. 1.5s, 100ms)"
        ) from None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def search_filter(params: dict[str, str]) -> tuple[SpanFilter, int]:
    """Jaeger's search parameters → a SpanFilter (tags as --attrs, the operation as TraceQL)."""
    kw: dict[str, Any] = {}
    attrs: list[tuple[str, str]] = []
    conds: list[str] = []
    if "service" in params:
        kw["service"] = params["service"]
    if "operation" in params:
        conds.append(f"name = {_quote(params['operation'])}")
    if "spanKind" in params:
        kind = params["spanKind"].lower()
        if kind not in ("internal", "server", "client", "producer", "consumer"):
            raise QueryError(f"parameter spanKind: unknown kind {params['spanKind']!r}")
        conds.append(f"kind = {kind}")
    if "tags" in params:
        try:
            tags = json.loads(params["tags"])
        except ValueError:
            raise QueryError('parameter tags: expected a JSON object like {"k": "v"}') from None
        if not isinstance(tags, dict):
            raise QueryError('parameter tags: expected a JSON object like {"k": "v"}')
        for key, value in tags.items():
            value = json.dumps(value) if not isinstance(value, str) else value
            if key in ("room", "session"):
                kw[key] = value
            elif key == "project":
                conds.append(f"project = {_quote(value)}")
            elif key in ("error", "otel.status_code"):
                status = "error" if value.lower() == "true" else value.lower()
                attrs.append(("status", status))
            elif key == "span.kind":
                attrs.append(("kind", value))
            else:
                attrs.append((key, value))
    for key, field in (("minDuration", "min_duration"), ("maxDuration", "max_duration")):
        if key in params:
            kw[field] = go_duration(params[key], key)
    since, until = unix_range(params, 1_000_000)
    if since is None and "lookback" in params and params["lookback"] != "custom":
        ago = min(go_duration(params["lookback"], "lookback"), MAX_LOOKBACK_NS)
        since = time.time_ns() - ago
    kw.update(since=since, until=until, attrs=tuple(attrs))
    if conds:
        kw["q"] = "{ " + " && ".join(conds) + " }"
    return SpanFilter(**kw), whole(params, "limit", 20, 1, MAX_LIMIT)


def _tag(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    return {"key": key, "type": "string", "value": "" if value is None else str(value)}


def _us(text: str | None) -> int:
    return parse_ts(text) // 1000 if text else 0


def span_tags(s: dict[str, Any]) -> list[dict[str, Any]]:
    tags = [_tag(k, v) for k, v in sorted((s.get("attributes") or {}).items())]
    kind = (s.get("kind") or "").lower()
    if kind and kind not in ("internal", "unspecified"):
        tags.append(_tag("span.kind", kind))
    status = (s.get("status_code") or "").upper()
    if status in ("OK", "ERROR"):
        tags.append(_tag("otel.status_code", status))
    if status == "ERROR":
        tags.append(_tag("error", True))
    if s.get("status_message"):
        tags.append(_tag("otel.status_description", s["status_message"]))
    for key, column in (("room", "room"), ("session", "session_id"), ("project", "project")):
        if s.get(column) and key not in (s.get("attributes") or {}):
            tags.append(_tag(key, s[column]))
    if s.get("scope_name"):
        tags.append(_tag("otel.scope.name", s["scope_name"]))
    return tags


def trace_json(spans: list[dict[str, Any]]) -> dict[str, Any]:
    """One trace's spans (records of the spans table) in Jaeger's model."""
    processes: dict[tuple, str] = {}
    out = []
    ids = {s["span_id"] for s in spans}
    for s in spans:
        resource = dict(s.get("resource_attributes") or {})
        service = s.get("service_name") or resource.get("service.name") or ""
        key = (service, tuple(sorted(resource.items())))
        pid = processes.setdefault(key, f"p{len(processes) + 1}")
        refs = []
        if s.get("parent_span_id"):
            refs.append(
                {"refType": "CHILD_OF", "traceID": s["trace_id"], "spanID": s["parent_span_id"]}
            )
        for link in s.get("links") or []:
            refs.append(
                {"refType": "FOLLOWS_FROM", "traceID": link["trace_id"], "spanID": link["span_id"]}
            )
        warnings = None if not s.get("parent_span_id") or s["parent_span_id"] in ids else [
            f"parent span {s['parent_span_id']} is not in the trace"
        ]  # fmt: skip
        out.append(
            {
                "traceID": s["trace_id"],
                "spanID": s["span_id"],
                "operationName": s["name"] or "",
                "references": refs,
                "flags": 1,
                "startTime": _us(s["start_time"]),
                "duration": (s["duration_ns"] or 0) // 1000,
                "tags": span_tags(s),
                "logs": [
                    {
                        "timestamp": _us(e.get("time")),
                        "fields": [
                            _tag("event", e.get("name") or ""),
                            *(_tag(k, v) for k, v in sorted((e.get("attributes") or {}).items())),
                        ],
                    }
                    for e in s.get("events") or []
                ],
                "processID": pid,
                "warnings": warnings,
            }
        )
    procs = {
        pid: {
            "serviceName": service,
            "tags": [_tag(k, v) for k, v in resource if k != "service.name"],
        }
        for (service, resource), pid in processes.items()
    }
    return {"traceID": spans[0]["trace_id"], "spans": out, "processes": procs, "warnings": None}


async def services(request: Request, run: Run) -> Response:
    query_params(request, ())
    result = await run(lambda r: r.services())
    return _data(result["services"])


async def service_operations(request: Request, run: Run) -> Response:
    query_params(request, ())
    service = request.path_params["service"]
    result = await run(lambda r: r.operations(service))
    return _data(sorted({op["name"] for op in result["operations"]}))


async def operations(request: Request, run: Run) -> Response:
    """``GET /api/operations?service=&spanKind=`` (the Jaeger UI's) → names with kinds."""
    params = query_params(request, ("service", "spanKind"))
    if "service" not in params:
        raise QueryError("parameter service is required")
    result = await run(lambda r: r.operations(params["service"]))
    kind = params.get("spanKind", "").lower()
    ops = [
        {"name": op["name"], "spanKind": (op["kind"] or "").lower()}
        for op in result["operations"]
        if not kind or (op["kind"] or "").lower() == kind
    ]
    return _data(ops)


async def search(request: Request, run: Run) -> Response:
    params = query_params(request, SEARCH_PARAMS)
    f, limit = search_filter(params)
    result = await run(lambda r: r.full_traces(f, limit))
    return _data([trace_json(spans) for spans in result["traces"]])


async def trace(request: Request, run: Run) -> Response:
    query_params(request, ("start", "end"))
    tid = check_trace_id(request.path_params["trace_id"])
    result = await run(lambda r: r.trace(tid))
    return _data([trace_json(result["spans"])])


async def dependencies(request: Request, run: Run) -> Response:
    """``GET /api/dependencies?endTs=&lookback=`` (ms) → parent/child service call counts."""
    params = query_params(request, ("endTs", "lookback"))
    now_ms = time.time_ns() // 1_000_000
    end_ms = whole(params, "endTs", now_ms, 0, 9_000_000_000_000)
    lookback_ms = whole(params, "lookback", 86_400_000, 1, 10 * 365 * 86_400_000)
    start_ns, end_ns = (end_ms - lookback_ms) * 1_000_000, end_ms * 1_000_000
    result = await run(lambda r: r.dependencies(max(start_ns, 0), end_ns))
    return _data(result["dependencies"])


ENDPOINTS = (
    ("/api/services", services),
    ("/api/services/{service}/operations", service_operations),
    ("/api/operations", operations),
    ("/api/traces", search),
    ("/api/dependencies", dependencies),
)
JSON = ("application/json",)
# path → (summary, query parameters, content types of a 200)
SUMMARIES = {
    "/api/services": ("Jaeger: service names.", (), JSON),
    "/api/services/{service}/operations": ("Jaeger: a service's span names.", (), JSON),
    "/api/operations": (
        "Jaeger: a service's span names with their kinds.",
        ("service", "spanKind"),
        JSON,
    ),
    "/api/traces": (
        "Jaeger: trace search; tags a JSON map, durations like 1.5s, start/end in µs.",
        SEARCH_PARAMS,
        JSON,
    ),
    "/api/dependencies": (
        "Jaeger: calls between services (endTs, lookback in ms).",
        ("endTs", "lookback"),
        JSON,
    ),
}
