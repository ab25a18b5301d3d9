"""The REST API served on the query port (SPEC 6): JSON, read-only, over the query library.

Routes are declared once in :data:`query.http.routes.ROUTES` (path, parameters, the Reader
call); the handlers here validate with those declarations and ``/openapi.json`` is generated from
them. Reads run in a threadpool on a fresh read cursor of the collector's store. With
``auth.enabled``, :class:`query.http.gate.TokenGate` requires a query token on ``/api/`` and the
cursor is scoped to its project (:mod:`query.library.sandbox`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from collector.settings import Settings

from ..library.errors import QueryError
from ..library.reader import Reader, Result
from ..library.usage import parse_prices
from . import grafana
from . import params as P
from .console import Console
from .export import export_route, openapi_paths
from .gate import ReadSide, TokenGate, current_project
from .meshagent import meshagent_routes
from .paths import RawPathRoute
from .responses import EXCEPTION_HANDLERS, READ_ERRORS, JsonResponse, read_error
from .responses import error as _error
from .routes import ROUTES, ApiRoute, openapi


def create_app(side: ReadSide, settings: Settings) -> Starlette:
    """The query port's app: REST API, OpenAPI document, health checks and the console."""
    limit, timeout = settings.get("query.default_limit"), settings.get("query.timeout")
    max_rows = settings.get("query.max_rows")
    idle = settings.get("sessions.idle_timeout")  # the collector's own: readers agree with it

    def reader(project: str | None) -> Reader:
        """A Reader on a fresh cursor of the store (close it when done)."""
        return Reader(
            side.cursor(),
            default_limit=limit,
            timeout=timeout,
            max_rows=max_rows,
            idle_timeout=idle,
            prices=prices,
            project=project,
        )

    prices = parse_prices(settings.get("usage.prices"))

    def read(fn: Callable[[Reader], Result], project: str | None) -> Result:
        r = reader(project)
        try:
            return fn(r)
        finally:
            r.close()

    async def run(fn: Callable[[Reader], Result]) -> Result:
        return await run_in_threadpool(read, fn, current_project())

    async def answer(fn: Callable[[Reader], Result]) -> JsonResponse:
        try:
            return JsonResponse(await run(fn))
        except READ_ERRORS as exc:
            return read_error(exc)

    def handler(route: ApiRoute) -> Callable[[Request], Any]:
        async def get(request: Request) -> JsonResponse:
            try:
                query = P.parse_params(route.params, request.query_params.multi_items())
            except QueryError as exc:
                return _error(str(exc), 400)
            path = dict(request.path_params)
            assert route.call is not None
            call = route.call
            return await answer(lambda r: call(r, path, query))

        return get

    async def sql(request: Request) -> JsonResponse:
        if request.query_params:
            return _error("unknown parameters: POST /api/v1/sql takes a JSON body only", 400)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error('expected a JSON body {"sql": "SELECT ..."}', 400)
        if not isinstance(body, dict) or set(body) != {"sql"} or not isinstance(body["sql"], str):
            return _error('expected a JSON body {"sql": "SELECT ..."} and nothing else', 400)
        return await answer(lambda r: r.sql(body["sql"]))

    async def healthz(request: Request) -> JsonResponse:
        return JsonResponse({"status": "ok"})

    async def readyz(request: Request) -> JsonResponse:
        if side.ready():
            return JsonResponse({"status": "ready"})
        return JsonResponse({"status": "not ready"}, status_code=503)

    console = Console(side, answer)
    document = console.document(openapi(ROUTES + console.api_routes))
    document["paths"].update(grafana.summary())  # Tempo and Jaeger (SPEC 9)
    document["paths"].update(openapi_paths())  # the session export route (query.http.export)

    async def openapi_json(request: Request) -> JsonResponse:
        return JsonResponse(document)

    routes: list[BaseRoute] = [Route("/healthz", healthz), Route("/readyz", readyz)]
    routes.append(Route("/openapi.json", openapi_json))
    for r in ROUTES:
        if r.call is None:
            routes.append(Route(r.path, sql, methods=["POST"]))
        else:  # ids in the path are matched still encoded (query.http.paths)
            routes.append(RawPathRoute(r.path, handler(r), methods=["GET"]))
    routes.append(export_route(reader, settings))
    routes.extend(console.routes)
    routes.extend(meshagent_routes(read, side.auth))  # SPEC 13
    routes.extend(grafana.routes(run))  # SPEC 9
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    if side.auth is not None:
        app.add_middleware(TokenGate, auth=side.auth)
    return app
