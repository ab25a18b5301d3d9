"""MeshAgent's account routes on the query port (SPEC 13), so that the unmodified ``meshagent``
CLI's session commands read roomscope: ``GET /config`` and, under
``/accounts/projects/{project}``, ``sessions``, ``rooms/{name}`` and a session's ``events``,
``spans`` and ``metrics``.

Every read is scoped to the project in the path and goes through the query library
(:mod:`query.library.meshagent_records` over a :class:`Reader`). With auth off any Bearer value
(or none) is accepted; with auth on, a query token of that project: a missing or wrong token is
a 401, another project's token a 404 (as for an unknown id, so project names do not leak).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from collector.auth import UNAUTHORIZED, Auth

from ..library import meshagent_records as M
from ..library.errors import QueryError
from ..library.filters import parse_limit
from ..library.reader import Reader, Result
from .responses import READ_ERRORS, JsonResponse, error, read_error

# create_app's read: run a function on a Reader scoped to a project (None: every project).
Read = Callable[[Callable[[Reader], Result], str | None], Result]
# A route's read: (reader, path parameters, query parameters) → the JSON answer.
Call = Callable[[Reader, dict[str, str], dict[str, str]], Result]

PREFIX = "/accounts/projects/{project}"


def roomscope_version() -> str:
    try:
        return metadata.version("roomscope")
    except metadata.PackageNotFoundError:
        return "unknown"


def _error(message: str, status: int, **headers: str) -> JsonResponse:
    return error(message, status, headers or None)


def _query(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        names = ", ".join(allowed) or "none"
        raise QueryError(f"unknown parameters: {', '.join(unknown)} (this route takes {names})")
    return {k: request.query_params[k] for k in allowed if k in request.query_params}


def meshagent_routes(read: Read, auth: Auth | None) -> list[Route]:
    """The routes MeshAgent's client calls, over ``read`` (see :data:`Read`)."""

    def route(path: str, call: Call, params: tuple[str, ...] = ()) -> Route:
        async def get(request: Request) -> JsonResponse:
            project = request.path_params["project"]
            if auth is not None:
                granted = auth.project(request.headers.get("authorization"), "query")
                if granted is None:
                    return _error(UNAUTHORIZED, 401, **{"WWW-Authenticate": "Bearer"})
                if granted != project:
                    return _error(f"no project {project!r}", 404)
            try:
                query = _query(request, params)
                path_params = dict(request.path_params)
                result = await run_in_threadpool(
                    read, lambda r: call(r, path_params, query), project
                )
            except READ_ERRORS as exc:
                return read_error(exc)
            return JsonResponse(result)

        return Route(PREFIX + path, get, methods=["GET"])

    def list_sessions(r: Reader, p: dict[str, str], q: dict[str, str]) -> Result:
        limit = parse_limit(q["limit"]) if "limit" in q else None
        return M.sessions(r, limit=limit, room_id=q.get("room_id"))

    async def config(request: Request) -> JsonResponse:
        return JsonResponse({"domains": {}, "version": roomscope_version()})

    # Session ids and room names may hold "/": the path convertor takes them whole.
    return [
        Route("/config", config, methods=["GET"]),
        route("/sessions", list_sessions, ("limit", "room_id")),
        route("/rooms/{room_name:path}", lambda r, p, q: M.room(r, p["room_name"])),
        route("/sessions/{session_id:path}/events", lambda r, p, q: M.events(r, p["session_id"])),
        route("/sessions/{session_id:path}/spans", lambda r, p, q: M.spans(r, p["session_id"])),
        route("/sessions/{session_id:path}/metrics", lambda r, p, q: M.metrics(r, p["session_id"])),
    ]
