"""The REST API's routes as data (SPEC 6): path, summary, parameters and the Reader call of each;
the handlers (query.http.api) validate with these declarations and ``/openapi.json`` is derived
from them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..library.filters import LogFilter, MetricFilter, PageFilter, SessionFilter, SpanFilter
from ..library.reader import Reader, Result
from ..library.traces import check_trace_id
from ..library.usage import UsageFilter
from . import params as P

Call = Callable[[Reader, dict[str, str], dict[str, Any]], Result]


@dataclass(frozen=True)
class ApiRoute:
    path: str
    summary: str
    call: Call | None  # None: POST /sql (body, not parameters)
    params: tuple[str, ...] = ()
    key: str = ""
    method: str = "GET"


def _sid(p: dict[str, str]) -> str:
    return p["session_id"]


ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute(
        "/api/v1/sessions",
        "Sessions, newest first.",
        lambda r, p, q: r.sessions(SessionFilter(**q)),
        P.SESSION_LIST,
        "sessions",
    ),
    ApiRoute(
        "/api/v1/sessions/{session_id}",
        "One session's summary.",
        lambda r, p, q: r.session(_sid(p)),
        key="session",
    ),
    ApiRoute(
        "/api/v1/sessions/{session_id}/events",
        "The session's timeline: lifecycle events, log records and error spans in time order.",
        lambda r, p, q: r.session_events(_sid(p), PageFilter(**q)),
        P.PAGE,
        "events",
    ),
    ApiRoute(
        "/api/v1/sessions/{session_id}/spans",
        "Spans of the session's traces in which at least one span matches the filters.",
        lambda r, p, q: r.session_spans(_sid(p), SpanFilter(**q)),
        P.SESSION_SPANS + P.PAGE,
        "spans",
    ),
    ApiRoute(
        "/api/v1/sessions/{session_id}/logs",
        "The session's log records in time order.",
        lambda r, p, q: r.session_logs(_sid(p), LogFilter(**q)),
        P.SESSION_LOGS,
        "logs",
    ),
    ApiRoute(
        "/api/v1/sessions/{session_id}/metrics",
        "The session's metric points.",
        lambda r, p, q: r.session_metrics(_sid(p), MetricFilter(**q)),
        (*P.SESSION_METRICS, "cursor"),
        "metrics",
    ),
    ApiRoute(
        "/api/v1/traces",
        "Span search across sessions, newest first (durations are span durations).",
        lambda r, p, q: r.traces(SpanFilter(**q)),
        P.TRACES,
        "spans",
    ),
    ApiRoute(
        "/api/v1/traces/{trace_id}",
        "All spans of one trace.",
        lambda r, p, q: r.trace(check_trace_id(p["trace_id"])),
        key="spans",
    ),
    ApiRoute(
        "/api/v1/rooms",
        "Rooms with session counts and last activity.",
        lambda r, p, q: r.rooms(PageFilter(**q)),
        P.PAGE,
        "rooms",
    ),
    ApiRoute(
        "/api/v1/usage",
        "Agent usage: LLM calls, tokens, cost and tool calls per model, provider, room, session,"
        " service or tool (SPEC 11); paged by `cursor`.",
        lambda r, p, q: r.usage(UsageFilter(**q)),
        P.USAGE,
        "usage",
    ),
    ApiRoute(
        "/api/v1/status",
        "Forwarding (SPEC 12): per endpoint the batches queued, sent and dropped, and the last"
        " error.",
        lambda r, p, q: r.status(),
        key="endpoints",
    ),
    ApiRoute(
        "/api/v1/sql", 'Read-only SQL: {"sql": "SELECT ..."}.', None, key="rows", method="POST"
    ),
)


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def error_responses(with_id: bool) -> dict[str, Any]:
    """The errors every operation of the query port documents (404 where the path has an id)."""
    return {
        "400": _error("Bad parameter or value"),
        **({"404": _error("Unknown id")} if with_id else {}),
        "500": _error("Internal error (a defect: never the answer to bad input)"),
        "503": _error("The store is unavailable (disk trouble); retry later"),
    }


def openapi(routes: tuple[ApiRoute, ...] = ROUTES) -> dict[str, Any]:
    """The OpenAPI 3.1 document, derived from the route and parameter declarations. Every
    error is ``{"error": "..."}`` (SPEC 6/8), and each operation lists the ones it can give."""
    paths: dict[str, Any] = {}
    for route in routes:
        path_params = [
            {"name": seg[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            for seg in route.path.split("/")
            if seg.startswith("{")
        ]
        op: dict[str, Any] = {
            "summary": route.summary,
            "parameters": path_params + P.openapi_parameters(route.params),
            "responses": {
                "200": {"description": "OK", "content": _answer_schema(route)},
                **error_responses(bool(path_params)),
            },
        }
        if route.method == "POST":
            op["requestBody"] = {"required": True, "content": _json_schema(["sql"])}
            op["responses"]["200"]["content"] = _json_schema(["columns", "rows"])
        paths[route.path] = {route.method.lower(): op}
    status = _json_schema(["status"])
    paths["/healthz"] = {
        "get": {"summary": "Alive.", "responses": {"200": {"description": "OK", "content": status}}}
    }
    paths["/readyz"] = {
        "get": {
            "summary": "Store open, accepting.",
            "responses": {
                "200": {"description": "Ready", "content": status},
                "503": {
                    "description": "Not ready (starting, or the store failed)",
                    "content": status,
                },
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "roomscope query API",
            "version": "1",
            "description": "Read-only JSON over the stored telemetry. Every error is"
            ' {"error": "..."}: 400 for bad parameters, 404 for unknown ids and unknown paths,'
            " 405 (with an Allow header) for a method a path does not take.",
        },
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA}},
    }


NEXT_SCHEMA = {
    "type": ["string", "null"],
    "description": "The cursor of the next page (pass it as cursor); null after the last page.",
}
TOTAL_SCHEMA = {"type": "integer", "description": "With count=true: the records of all pages."}


def _answer_schema(route: ApiRoute) -> dict[str, Any]:
    """A list's answer (SPEC 8): its records, ``next`` (and ``total`` with ``count``)."""
    content = _json_schema([route.key])
    if "cursor" in route.params:
        props = content["application/json"]["schema"]["properties"]
        props["next"] = NEXT_SCHEMA
        if "count" in route.params:
            props["total"] = TOTAL_SCHEMA
    return content


def _json_schema(keys: list[str]) -> dict[str, Any]:
    props = {k: {} for k in keys}
    return {"application/json": {"schema": {"type": "object", "properties": props}}}
