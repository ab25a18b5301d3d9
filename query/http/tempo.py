"""Tempo's HTTP query API, as Grafana's Tempo data source calls it with streaming off (SPEC 9).

Shapes follow Tempo's own messages (``tempopb``): ``SearchResponse`` for ``/api/search`` (JSON,
uint64 fields as strings, as Go's jsonpb writes them), ``SearchTagsV2Response`` and
``SearchTagValuesV2Response`` for tag completion, ``TraceByIDResponse`` (field 1: the trace,
wire-identical to OTLP ``TracesData``) for ``/api/v2/traces/{id}``.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..library import traceql
from ..library.errors import QueryError
from ..library.filters import MAX_LIMIT, SpanFilter
from ..library.otlp_out import traces_data
from ..library.traces import check_trace_id
from .compat import Run, ns_range, query_params, unix_range, wants_protobuf, whole
from .responses import JsonResponse

TEMPO_VERSION = "2.7.0"  # the Tempo API version these endpoints follow
PROTOBUF_TYPE = "application/protobuf"


async def echo(request: Request, run: Run) -> Response:
    return PlainTextResponse("echo")


async def buildinfo(request: Request, run: Run) -> Response:
    return JsonResponse(
        {
            "version": TEMPO_VERSION,
            "revision": "roomscope",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        }
    )


def _kv(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": str(value)}}


async def search(request: Request, run: Run) -> Response:
    """``GET /api/search?q=&limit=&spss=&start=&end=`` → SearchResponse JSON."""
    params = query_params(request, ("q", "limit", "spss", "start", "end"))
    q = traceql.checked(params.get("q", "{}"))
    limit = whole(params, "limit", 20, 1, MAX_LIMIT)
    spss = whole(params, "spss", 3, 1, 1000)
    since, until = unix_range(params, 1)
    f = SpanFilter(q=q, since=since, until=until)
    result = await run(lambda r: r.trace_search(f, limit, spss))
    traces = []
    for t in result["traces"]:
        spans = [
            {
                "spanID": s["span_id"],
                "name": s["name"] or "",
                "startTimeUnixNano": str(s["start_ns"] or 0),
                "durationNanos": str(s["duration_ns"] or 0),
                "attributes": [_kv("service.name", s["service_name"])] if s["service_name"] else [],
            }
            for s in t["spans"]
        ]
        traces.append(
            {
                "traceID": t["trace_id"],
                "rootServiceName": t["root_service"] or "",
                "rootTraceName": t["root_name"] or "",
                "startTimeUnixNano": str(t["start_ns"]),
                "durationMs": t["duration_ns"] // 1_000_000,
                "spanSets": [{"spans": spans, "matched": t["matched"]}],
            }
        )
    return JsonResponse({"traces": traces})


async def tags(request: Request, run: Run) -> Response:
    """``GET /api/v2/search/tags`` → ``{"scopes": [{"name", "tags"}]}``."""
    params = query_params(request, ("scope", "start", "end", "q", "limit", "maxStaleValues"))
    span = ns_range(*unix_range(params, 1))
    wanted = params.get("scope", "all")
    if wanted not in ("all", "none", "resource", "span", "intrinsic"):
        raise QueryError(f"parameter scope: unknown scope {wanted!r}")
    result = await run(lambda r: r.tag_names(span))
    scopes = [
        {"name": name, "tags": names}
        for name, names in result["scopes"].items()
        if wanted in ("all", "none", name)
    ]
    return JsonResponse({"scopes": scopes})


def split_tag(tag: str) -> tuple[str, str]:
    """``resource.service.name`` → ("resource", "service.name"); ``status`` → ("", "status");
    ``.x`` → ("", "x")."""
    for scope in ("resource", "span"):
        if tag.startswith(scope + "."):
            return scope, tag[len(scope) + 1 :]
    if tag.startswith("."):
        return "", tag[1:]
    if ":" in tag:
        return "", traceql.INTRINSICS.get(tag, tag)
    return "", tag


async def tag_values(request: Request, run: Run) -> Response:
    """``GET /api/v2/search/tag/{tag}/values`` → ``{"tagValues": [{"type", "value"}]}``."""
    params = query_params(request, ("start", "end", "q", "limit", "maxStaleValues"))
    span = ns_range(*unix_range(params, 1))
    scope, name = split_tag(request.path_params["tag"])
    if not name:
        raise QueryError("expected a tag like resource.service.name, span.http.method or status")
    result = await run(lambda r: r.tag_values(scope, name, span))
    return JsonResponse({"tagValues": [{"type": t, "value": v} for t, v in result["values"]]})


def tempo_trace_id(text: str) -> str:
    """Tempo accepts ids of up to 32 hex digits (left-padded with zeros)."""
    tid = text.strip().lower()
    if 0 < len(tid) < 32 and all(c in "0123456789abcdef" for c in tid):
        tid = tid.zfill(32)
    return check_trace_id(tid)


async def _trace_data(request: Request, run: Run) -> bytes:
    query_params(request, ("start", "end"))
    tid = tempo_trace_id(request.path_params["trace_id"])
    result = await run(lambda r: r.trace(tid))
    return traces_data(result["spans"]).SerializeToString()


def _length_delimited(field: int, payload: bytes) -> bytes:
    head = bytearray([field << 3 | 2])
    n = len(payload)
    while n > 0x7F:
        head.append(n & 0x7F | 0x80)
        n >>= 7
    head.append(n)
    return bytes(head) + payload


def _as_json(data: bytes) -> dict[str, Any]:
    return json_format.MessageToDict(TracesData.FromString(data))


async def trace_v2(request: Request, run: Run) -> Response:
    """``GET /api/v2/traces/{id}``: TraceByIDResponse (protobuf; ``{"trace": …}`` as JSON)."""
    data = await _trace_data(request, run)
    if wants_protobuf(request):
        return Response(_length_delimited(1, data), media_type=PROTOBUF_TYPE)
    return JsonResponse({"trace": _as_json(data)})


async def trace_v1(request: Request, run: Run) -> Response:
    """``GET /api/traces/{id}`` asked for protobuf: the bare TracesData."""
    data = await _trace_data(request, run)
    return Response(data, media_type=PROTOBUF_TYPE)


ENDPOINTS = (
    ("/api/echo", echo),
    ("/api/status/buildinfo", buildinfo),
    ("/api/search", search),
    ("/api/v2/search/tags", tags),
    ("/api/v2/search/tag/{tag}/values", tag_values),
    ("/api/v2/traces/{trace_id}", trace_v2),
)
JSON = ("application/json",)
TRACE = ("application/protobuf", "application/json")
# path → (summary, query parameters, content types of a 200)
SUMMARIES = {
    "/api/echo": ("Tempo: health check.", (), ("text/plain",)),
    "/api/status/buildinfo": ("Tempo: the Tempo API version served.", (), JSON),
    "/api/search": (
        "Tempo: TraceQL search → SearchResponse JSON; start/end in unix seconds.",
        ("q", "limit", "spss", "start", "end"),
        JSON,
    ),
    "/api/v2/search/tags": (
        "Tempo: attribute names by scope (resource, span, intrinsic).",
        ("scope", "start", "end"),
        JSON,
    ),
    "/api/v2/search/tag/{tag}/values": (
        "Tempo: values of one tag (e.g. resource.room).",
        ("start", "end"),
        JSON,
    ),
    "/api/v2/traces/{trace_id}": (
        "Tempo: one trace as TraceByIDResponse (protobuf with Accept: application/protobuf,"
        " else JSON).",
        ("start", "end"),
        TRACE,
    ),
}
