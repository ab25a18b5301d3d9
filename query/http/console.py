"""The web console: static pages under ``query/http/static`` (served at ``/``, no CDN), plus the API
the console needs beyond SPEC 6, declared like every other route (``query/params.py``) so they
appear in ``/openapi.json``:

- ``GET /api/v1/live`` — new spans and log records of a room or session as server-sent events
  (``Accept: text/event-stream``), fed by one poller for all subscribers (:mod:`query.http.live`);
  any other ``Accept`` gets a JSON snapshot of the newest rows. With auth on, both hold only
  the rows of the query token's project (from :class:`query.http.gate.TokenGate`).
- ``GET /api/v1/sessions/{session_id}/metric_series`` — metric points as chart-ready series.
- ``GET /api/v1/sessions/{session_id}/waterfall`` — the session's spans, compact and columnar.
- ``GET /api/v1/traces/{trace_id}/waterfall`` — one trace's spans, compact and columnar.
- ``GET /api/v1/trace_rows`` — trace search as trace rows (:mod:`query.library.trace_rows`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from collector.auth import UNAUTHORIZED

from ..library.errors import QueryError
from ..library.filters import MetricFilter, SpanFilter
from ..library.reader import Reader, Result
from ..library.records import fetch_records, select_list
from ..library.search import where_sql
from ..library.series import metric_series
from ..library.sessions import resolve_session
from ..library.waterfall import session_waterfall, trace_waterfall
from . import params as P
from .gate import ReadSide, token_project
from .live import LiveHub
from .paths import RawPathRoute
from .responses import error
from .routes import ApiRoute

STATIC = Path(__file__).parent / "static"
Answer = Callable[[Callable[[Reader], Result]], Awaitable[Response]]

LIVE = ApiRoute(
    "/api/v1/live",
    "Live tail of a room or session: with Accept: text/event-stream, server-sent events"
    " (`span` and `log`, data = the record as JSON) as rows arrive; otherwise a JSON snapshot"
    " of the newest spans and logs. With auth on, only rows of the query token's project.",
    None,
    P.LIVE,
    "spans",
)
SERIES = ApiRoute(
    "/api/v1/sessions/{session_id}/metric_series",
    "The session's metrics as time series for charts: gauges/sums as values, histograms as"
    " count/p50/p99 per interval.",
    lambda r, p, q: {
        "session_id": p["session_id"],
        "series": metric_series(r.con, p["session_id"], MetricFilter(**q)),
    },
    P.SESSION_METRICS,
    "series",
)
WATERFALL = ApiRoute(
    "/api/v1/sessions/{session_id}/waterfall",
    "The session's spans (as .../spans) in a compact columnar form for the waterfall: ids,"
    " parent, name, service, kind, status, start offset from base_time and duration in ns.",
    lambda r, p, q: session_waterfall(r.con, p["session_id"], SpanFilter(**q)),
    P.SESSION_SPANS,
    "rows",
)
TRACE_WATERFALL = ApiRoute(
    "/api/v1/traces/{trace_id}/waterfall",
    "One trace's spans in the waterfall's compact columnar form, with its root's session and room.",
    lambda r, p, q: trace_waterfall(r.con, p["trace_id"]),
    (),
    "rows",
)
TRACE_ROWS = ApiRoute(
    "/api/v1/trace_rows",
    "Trace search as trace rows (the console's search): the newest traces holding a span that"
    " matches the filters (those of /api/v1/traces), each with root service and name, start,"
    " duration, span and error counts, rooms, sessions and its newest matching spans; paged.",
    lambda r, p, q: r.trace_rows(SpanFilter(**q)),
    P.TRACES,
    "traces",
)
API_ROUTES = (LIVE, SERIES, WATERFALL, TRACE_WATERFALL, TRACE_ROWS)


def live_snapshot(r: Reader, q: dict[str, Any]) -> Result:
    """The newest spans and logs (by receive time) of the room/session, oldest first."""
    conds, args = [], []
    for key, column in (("room", "room"), ("session", "session_id")):
        if key in q:
            conds.append(f"{column} = ?")
            args.append(q[key])
    limit = q.get("limit") or r.default_limit
    out: Result = {}
    for key, table in (("spans", "spans"), ("logs", "logs")):
        sql = (
            f"SELECT {select_list(table)} FROM {table}{where_sql(conds)}"
            " ORDER BY received_at DESC LIMIT ?"
        )
        out[key] = fetch_records(r.con, sql, [*args, limit])[::-1]
    return out


class Console:
    def __init__(self, side: ReadSide, answer: Answer):
        self.hub = LiveHub(side.cursor, side.accepting)
        self.auth = side.auth is not None
        self.answer = answer
        self.api_routes = API_ROUTES
        self.routes: list[BaseRoute] = [
            Route("/", self.index),
            Route(LIVE.path, self.live),
            RawPathRoute(SERIES.path, self.session_read(SERIES)),
            RawPathRoute(WATERFALL.path, self.session_read(WATERFALL)),
            RawPathRoute(TRACE_WATERFALL.path, self.read(TRACE_WATERFALL)),
            Route(TRACE_ROWS.path, self.read(TRACE_ROWS)),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]

    def document(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The OpenAPI document with the live route's two media types."""
        ok = doc["paths"][LIVE.path]["get"]["responses"]["200"]
        ok["content"]["text/event-stream"] = {"schema": {"type": "string"}}
        ok["content"]["application/json"]["schema"]["properties"] = {"spans": {}, "logs": {}}
        return doc

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    def _params(self, route: ApiRoute, request: Request) -> dict[str, Any] | Response:
        try:
            return P.parse_params(route.params, request.query_params.multi_items())
        except QueryError as exc:
            return error(str(exc), 400)

    def read(self, route: ApiRoute) -> Callable[[Request], Awaitable[Response]]:
        """A GET handler for a declared route: 400 on bad parameters, else the route's call."""
        assert route.call is not None
        call = route.call

        async def handler(request: Request) -> Response:
            q = self._params(route, request)
            if isinstance(q, Response):
                return q
            path = dict(request.path_params)
            return await self.answer(lambda r: call(r, path, q))

        return handler

    def session_read(self, route: ApiRoute) -> Callable[[Request], Awaitable[Response]]:
        """A GET handler for a declared per-session route: 400 on bad parameters, 404 on an
        unknown session, else the route's call."""
        assert route.call is not None
        call = route.call

        async def handler(request: Request) -> Response:
            q = self._params(route, request)
            if isinstance(q, Response):
                return q
            path = dict(request.path_params)

            def read(r: Reader) -> Result:
                resolve_session(r.con, path["session_id"])
                return call(r, path, q)

            return await self.answer(read)

        return handler

    async def live(self, request: Request) -> Response:
        q = self._params(LIVE, request)
        if isinstance(q, Response):
            return q
        if "text/event-stream" not in request.headers.get("accept", ""):
            return await self.answer(lambda r: live_snapshot(r, q))
        project = token_project(request.scope)  # the token's project, never a parameter
        if project is None and self.auth:  # unreachable past TokenGate; never stream it all
            return error(UNAUTHORIZED, 401)
        return StreamingResponse(
            self.hub.stream(q.get("room"), q.get("session"), project),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
