"""The API's query parameters, declared once: handlers validate with them, /openapi.json is
generated from them, and their names are the filter dataclasses' fields (so the CLI's filters
travel to a server as the same parameters)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..library import traceql
from ..library.errors import QueryError
from ..library.filters import (
    MAX_PAGE,
    parse_attrs,
    parse_bool,
    parse_duration,
    parse_page_limit,
    parse_severity,
    parse_time,
)
from ..library.traces import check_span_id, check_trace_id
from ..library.usage import BY as USAGE_BY
from ..library.usage import parse_by


def _text(value: str) -> str:
    if not value:
        raise QueryError("must not be empty")
    return value


def _after(value: str) -> int:
    try:
        cursor = int(value)
    except ValueError:
        raise QueryError(f"invalid cursor {value!r}: expected epoch nanoseconds") from None
    if not 0 <= cursor < 2**63:
        raise QueryError(f"invalid cursor {value!r}: epoch nanoseconds from 0 to 2^63-1")
    return cursor


@dataclass(frozen=True)
class Param:
    name: str
    parse: Callable[[str], Any]
    help: str
    schema: dict[str, Any]
    repeatable: bool = False


_STR = {"type": "string"}
_DUR = {"type": "string", "example": "1.5s"}
_TIME = {"type": "string", "example": "15m"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}

P = {
    p.name: p
    for p in (
        Param("room", _text, "Room name.", _STR),
        Param("project", _text, "Project name.", _STR),
        Param("session", _text, "Session id.", _STR),
        Param("service", _text, "Service name (service_name).", _STR),
        Param("name", _text, "Span name contains this text (case-insensitive).", _STR),
        Param("trace_id", check_trace_id, "Trace id (32 hex digits).", _STR),
        Param("span_id", check_span_id, "Span id (16 hex digits).", _STR),
        Param(
            "min_duration",
            parse_duration,
            "Span duration at least (inclusive); bare number = ms, or ns/us/µs/ms/s/m.",
            _DUR,
        ),
        Param("max_duration", parse_duration, "Span duration at most (inclusive).", _DUR),
        Param(
            "attrs",
            lambda v: parse_attrs([v]),
            "K=V (or K1=V1,K2=V2); all must hold; span attributes, then resource attributes;"
            " an array attribute matches when an element is V; quote a value holding a comma"
            ' (K="a,b") or escape it (K=a\\,b); status=error also matches status code ERROR;'
            " service/name/kind fall back to the span's fields.",
            {"type": "string", "example": "status=error"},
            repeatable=True,
        ),
        Param(
            "q",
            traceql.checked,
            "A TraceQL spanset filter (SPEC 9): { resource.room = \"lobby\" && status = error }.",
            {"type": "string", "example": "{ duration > 1s && status = error }"},
        ),
        Param(
            "since", parse_time, "From this time: 15m, 2h, 7d or ISO timestamp (to the ns).", _TIME
        ),
        Param(
            "until", parse_time, "Up to this time: 15m, 2h, 7d or ISO timestamp (to the ns).", _TIME
        ),
        Param(
            "limit",
            parse_page_limit,
            "At most this many records in the answer: a page of a list (default"
            " query.default_limit).",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
        ),
        Param(
            "cursor",
            _text,
            "Where the page starts: the previous answer's next (opaque; valid only with the"
            " same path and filters).",
            _STR,
        ),
        Param("count", parse_bool, "true: the answer also carries the total number.", _BOOL),
        Param("active", parse_bool, "true: active sessions only; false: ended only.", _BOOL),
        Param("severity", parse_severity, "Lowest severity: TRACE..FATAL or 1-24.", _STR),
        Param("grep", _text, "Log body contains this text (case-insensitive).", _STR),
        Param(
            "after",
            _after,
            "Only records received after this cursor (epoch ns).",
            {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        ),
    )
}  # fmt: skip

# Agent usage (query.library.usage): its own parameters, then the shared ones.
P.update(
    {p.name: p for p in (Param("by", parse_by, f"Group usage by: {', '.join(USAGE_BY)}.", _STR),)}
)
USAGE = ("by", "room", "session", "project", "since", "until", "limit", "cursor")

PAGE = ("limit", "cursor")  # every list (SPEC 8)
SESSION_LIST = ("room", "project", "active", "since", *PAGE, "count")
SESSION_SPANS = ("trace_id", "name", "min_duration", "max_duration", "attrs")
SESSION_LOGS = ("severity", "grep", "after", *PAGE, "trace_id", "span_id")
SESSION_METRICS = ("name", "limit")
LIVE = ("room", "session", "limit")
TRACES = (
    "room", "session", "service", "name", "trace_id", "min_duration", "max_duration", "attrs",
    "since", "until", *PAGE, "q",
)  # fmt: skip


def parse_params(allowed: tuple[str, ...], items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Validate query parameters against their declarations; unknown or bad → QueryError."""
    out: dict[str, Any] = {}
    for key, raw in items:
        if key not in allowed:
            expected = ", ".join(allowed) or "none"
            raise QueryError(f"unknown parameter {key!r} (expected: {expected})")
        param = P[key]
        try:
            value = param.parse(raw)
        except QueryError as exc:
            raise QueryError(f"parameter {key}: {exc}") from None
        if param.repeatable:
            out[key] = out.get(key, ()) + tuple(value)
        elif key in out:
            raise QueryError(f"parameter {key} given more than once")
        else:
            out[key] = value
    return out


def openapi_parameters(allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    params = []
    for name in allowed:
        p = P[name]
        schema = {"type": "array", "items": p.schema} if p.repeatable else p.schema
        params.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": p.help,
                "schema": schema,
                **({"explode": True} if p.repeatable else {}),
            }
        )
    return params
