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

import duckdb
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from collector.errors import StoreUnavailable
from collector.settings import Settings

from ..library.errors import QueryError
from ..library.reader import Reader, Result
from ..library.usage import parse_prices
from . import params as P
from .console import Console
from .gate import ReadSide, TokenGate, current_project
from .routes import ROUTES, ApiRoute, openapi


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(side: ReadSide, settings: Settings) -> Starlette:
    """The query port's app: REST API, OpenAPI document, health checks and the console."""
    limit, timeout = settings.get("query.default_limit"), settings.get("query.timeout")
    max_rows = settings.get("query.max_rows")
    prices = parse_prices(settings.get("usage.prices"))

    def read(fn: Callable[[Reader], Result], project: str | None) -> Result:
        cur = side.cursor()
        try:
            return fn(
                Reader(
                    cur,
                    default_limit=limit,
                    timeout=timeout,
                    max_rows=max_rows,
                    prices=prices,
                    project=project,
                )
            )
        finally:
            cur.close()

    async def answer(fn: Callable[[Reader], Result]) -> JSONResponse:
        try:
            return JSONResponse(await run_in_threadpool(read, fn, current_project()))
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
