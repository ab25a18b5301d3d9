"""The foreign query APIs on the query port (SPEC 9): Grafana's Tempo data source
(:mod:`query.http.tempo`) and Grafana's Jaeger data source or the Jaeger UI
(:mod:`query.http.jaeger`), over the same Reader as the REST API.

Both call ``GET /api/traces/{id}``; the one route answers by content negotiation:

* ``Accept`` naming ``application/protobuf`` (or ``application/x-protobuf``): Tempo's answer,
  the bare OTLP ``TracesData`` as protobuf (Grafana's Tempo data source, after a 404 on
  ``/api/v2/traces/{id}``, asks this way);
* anything else: Jaeger's ``{"data": [trace]}`` JSON (Grafana's Jaeger data source and the Jaeger
  UI send ``application/json`` or ``*/*``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import jaeger, tempo
from .compat import Run, wants_protobuf
from .responses import READ_ERRORS, read_error
from .routes import error_responses

Handler = Callable[[Request, Run], Awaitable[Response]]


async def trace_by_id(request: Request, run: Run) -> Response:
    """``GET /api/traces/{id}``: Tempo's TracesData (protobuf Accept) or Jaeger's JSON."""
    if wants_protobuf(request):
        return await tempo.trace_v1(request, run)
    return await jaeger.trace(request, run)


def _guarded(handler: Handler, run: Run) -> Callable[[Request], Awaitable[Response]]:
    """Our errors as ``{"error": ...}`` with their status, as on the REST API."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, run)
        except READ_ERRORS as exc:
            return read_error(exc)

    return endpoint


ENDPOINTS: tuple[tuple[str, Handler], ...] = (
    *tempo.ENDPOINTS,
    ("/api/traces/{trace_id}", trace_by_id),
    *jaeger.ENDPOINTS,
)


def routes(run: Run) -> list[Route]:
    """The Tempo and Jaeger routes, GET only."""
    return [Route(path, _guarded(h, run), methods=["GET"]) for path, h in ENDPOINTS]


def summary() -> dict[str, Any]:
    """OpenAPI entries for these paths: parameters and statuses (the bodies are Tempo's and
    Jaeger's shapes, documented in docs/grafana.md)."""
    docs = {**tempo.SUMMARIES, **jaeger.SUMMARIES}
    docs["/api/traces/{trace_id}"] = (
        "One trace: OTLP TracesData protobuf (Accept: application/protobuf, Tempo) or Jaeger's"
        ' {"data": [trace]} JSON (otherwise).',
        ("start", "end"),
        ("application/protobuf", "application/json"),
    )
    paths: dict[str, Any] = {}
    for path, (text, names, types) in docs.items():
        in_path = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
        params = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in in_path
        ] + [
            {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
            for n in names
        ]
        responses = {
            "200": {"description": "OK", "content": {t: {"schema": {}} for t in types}},
            **error_responses(bool(in_path)),
        }
        paths[path] = {"get": {"summary": text, "parameters": params, "responses": responses}}
    return paths
