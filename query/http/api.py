"""The REST API served on the query port (SPEC 6): JSON, read-only, over the query library.

Routes are declared once in :data:`ROUTES` (path, parameters, the Reader call); the handlers
validate with those declarations and ``/openapi.json`` is generated from them. Reads run in a
threadpool on a fresh reader cursor of the collector's store. With ``auth.enabled``,
:class:`TokenGate` requires a query token on ``/api/`` and the cursor is scoped to its project
(:mod:`query.sandbox`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from collector.auth import UNAUTHORIZED, Auth
from collector.errors import StoreUnavailable
from collector.settings import Settings

from ..library.errors import QueryError
from ..library.filters import LogFilter, MetricFilter, SessionFilter, SpanFilter
from ..library.reader import Reader, Result
from ..library.traces import check_trace_id
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
        lambda r, p, q: r.session_events(_sid(p)),
        key="events",
    ),
    ApiRoute(
        "/api/v1/sessions/{session_id}/spans",
        "Spans of the session's traces in which at least one span matches the filters.",
        lambda r, p, q: r.session_spans(_sid(p), SpanFilter(**q)),
        P.SESSION_SPANS,
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
        P.SESSION_METRICS,
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
        lambda r, p, q: r.rooms(),
        key="rooms",
    ),
    ApiRoute(
        "/api/v1/sql", 'Read-only SQL: {"sql": "SELECT ..."}.', None, key="rows", method="POST"
    ),
)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def openapi(routes: tuple[ApiRoute, ...] = ROUTES) -> dict[str, Any]:
    """The OpenAPI 3.1 document, derived from the route and parameter declarations."""
    error = {"description": "Bad parameter or value", "content": _json_schema(["error"])}
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
                "200": {"description": "OK", "content": _json_schema([route.key])},
                "400": error,
                **({"404": {"description": "Unknown id"}} if path_params else {}),
            },
        }
        if route.method == "POST":
            op["requestBody"] = {"required": True, "content": _json_schema(["sql"])}
            op["responses"]["200"]["content"] = _json_schema(["columns", "rows"])
        paths[route.path] = {route.method.lower(): op}
    for path, summary in (("/healthz", "Alive."), ("/readyz", "Store open, accepting.")):
        paths[path] = {"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "roomscope query API", "version": "1"},
        "paths": paths,
    }


def _json_schema(keys: list[str]) -> dict[str, Any]:
    props = {k: {} for k in keys}
    return {"application/json": {"schema": {"type": "object", "properties": props}}}


# The project of the request's query token (auth on); None: every project (auth off).
_PROJECT: ContextVar[str | None] = ContextVar("roomscope_project", default=None)


def token_project(scope: dict) -> str | None:
    """The project :class:`TokenGate` validated for this request (``request.state.project``);
    None when auth is off."""
    return scope.get("state", {}).get("project")


class TokenGate:
    """ASGI middleware: with auth on, every ``/api/`` request needs a query token (401 with the
    same message whatever was wrong); its project is what every read of the request sees, and
    is put in the request's state (:func:`token_project`) for handlers that read without a
    Reader, like the live event stream (filtered to that project by :mod:`query.live`)."""

    def __init__(self, app: Any, auth: Auth | None):
        self.app = app
        self.auth = auth

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.auth is None or scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        project = self.auth.project(headers.get("authorization"), "query")
        if project is None:
            response = JSONResponse(
                {"error": UNAUTHORIZED}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        scope = {**scope, "state": {**scope.get("state", {}), "project": project}}
        token = _PROJECT.set(project)
        try:
            await self.app(scope, receive, send)
        finally:
            _PROJECT.reset(token)


class ReadSide(Protocol):
    """What the API needs of a running collector (collector.server.ReadAccess): read cursors,
    readiness, whether it still accepts data, and the token checker (None: auth is off)."""

    @property
    def cursor(self) -> Callable[[], duckdb.DuckDBPyConnection]: ...

    @property
    def ready(self) -> Callable[[], bool]: ...

    @property
    def accepting(self) -> Callable[[], bool]: ...

    @property
    def auth(self) -> Auth | None: ...


def create_app(side: ReadSide, settings: Settings) -> Starlette:
    """The query port's app: REST API, OpenAPI document, health checks and the console."""
    limit, timeout = settings.get("query.default_limit"), settings.get("query.timeout")
    max_rows = settings.get("query.max_rows")

    def read(fn: Callable[[Reader], Result], project: str | None) -> Result:
        cur = side.cursor()
        try:
            return fn(
                Reader(
                    cur, default_limit=limit, timeout=timeout, max_rows=max_rows, project=project
                )
            )
        finally:
            cur.close()

    async def answer(fn: Callable[[Reader], Result]) -> JSONResponse:
        try:
            return JSONResponse(await run_in_threadpool(read, fn, _PROJECT.get()))
        except QueryError as exc:
            return _error(str(exc), exc.status)
        except StoreUnavailable as exc:
            return _error(str(exc), 503)
        except duckdb.Error as exc:
            return _error(f"query failed: {str(exc).splitlines()[0]}", 500)

    def handler(route: ApiRoute) -> Callable[[Request], Any]:
        async def get(request: Request) -> JSONResponse:
            try:
                query = P.parse_params(route.params, request.query_params.multi_items())
            except QueryError as exc:
                return _error(str(exc), 400)
            path = dict(request.path_params)
            assert route.call is not None
            call = route.call
            return await answer(lambda r: call(r, path, query))

        return get

    async def sql(request: Request) -> JSONResponse:
        if request.query_params:
            return _error("unknown parameters: POST /api/v1/sql takes a JSON body only", 400)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error('expected a JSON body {"sql": "SELECT ..."}', 400)
        if not isinstance(body, dict) or set(body) != {"sql"} or not isinstance(body["sql"], str):
            return _error('expected a JSON body {"sql": "SELECT ..."} and nothing else', 400)
        return await answer(lambda r: r.sql(body["sql"]))

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        if side.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    from .console import Console  # the web console: static pages, live tail, metric series

    console = Console(side, answer)
    document = console.document(openapi(ROUTES + console.api_routes))

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(document)

    routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
    routes.append(Route("/openapi.json", openapi_json))
    for r in ROUTES:
        if r.call is None:
            routes.append(Route(r.path, sql, methods=["POST"]))
        else:
            routes.append(Route(r.path, handler(r), methods=["GET"]))
    routes.extend(console.routes)
    app = Starlette(routes=routes)
    if side.auth is not None:
        app.add_middleware(TokenGate, auth=side.auth)
    return app
