"""The query port's JSON answers (SPEC 6/8): always valid JSON, every error ``{"error": ...}``.

:class:`JsonResponse` is the only JSON writer of the port; :func:`error` the only error shape;
:data:`EXCEPTION_HANDLERS` give Starlette's own errors (404 for an unknown path, 405 for a
wrong method) and anything unexpected (500) that shape too, never plain text.
"""

from __future__ import annotations

from typing import Any

import duckdb
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from collector.errors import StoreUnavailable

from ..library.errors import QueryError
from ..library.values import json_text


class JsonResponse(JSONResponse):
    """JSON that never holds NaN or Infinity (:func:`query.library.values.json_text`)."""

    def render(self, content: Any) -> bytes:
        return json_text(content, ensure_ascii=False, separators=(",", ":")).encode()


def error(message: str, status: int, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse({"error": message}, status_code=status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's HTTPException (unknown path, wrong method, missing static file) as JSON."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        message = f"not found: {path}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"method {request.method} not allowed on {path}" + (
            f"; use {allowed}" if allowed else ""
        )
    else:
        message = str(exc.detail)
    if exc.status_code in (204, 304):  # no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    return error(message, exc.status_code, exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected: a 500 that is still JSON (the exception is logged by Starlette's
    ServerErrorMiddleware, which re-raises it to the server after this answer)."""
    return error(f"internal error: {type(exc).__name__}", 500)


EXCEPTION_HANDLERS = {HTTPException: http_error, Exception: server_error}


# What a failed read is answered with (the API, the console, the export and MeshAgent routes).
READ_ERRORS = (QueryError, StoreUnavailable, duckdb.Error)


def read_error(exc: Exception) -> JsonResponse:
    """The answer to a read that raised one of :data:`READ_ERRORS`: a user's mistake with its
    status, the store unavailable (503), a query over the memory budget (503: retryable, others'
    queries hold memory), any other DuckDB error (500)."""
    if isinstance(exc, QueryError):
        return error(str(exc), exc.status)
    if isinstance(exc, StoreUnavailable):
        return error(str(exc), 503)
    message = str(exc).splitlines()[0]
    if isinstance(exc, duckdb.OutOfMemoryException):
        return error(f"query needs more memory than store.memory_limit: {message}", 503)
    return error(f"query failed: {message}", 500)
