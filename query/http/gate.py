"""Who reads what on the query port: the read side a running collector hands the API
(:class:`ReadSide`) and the token gate that scopes every ``/api/`` request to its query token's
project (auth on)."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

import duckdb

from collector.auth import UNAUTHORIZED, Auth

from .responses import error

# The project of the request's query token (auth on); None: every project (auth off).
_PROJECT: ContextVar[str | None] = ContextVar("roomscope_project", default=None)


def current_project() -> str | None:
    """The project of the request being answered (auth on); None: every project."""
    return _PROJECT.get()


def token_project(scope: dict) -> str | None:
    """The project :class:`TokenGate` validated for this request (``request.state.project``);
    None when auth is off."""
    return scope.get("state", {}).get("project")


class TokenGate:
    """ASGI middleware: with auth on, every ``/api/`` request needs a query token (401 with the
    same message whatever was wrong); its project is what every read of the request sees, and
    is put in the request's state (:func:`token_project`) for handlers that read without a
    Reader, like the live event stream (filtered to that project by :mod:`query.http.live`)."""

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
            response = error(UNAUTHORIZED, 401, {"WWW-Authenticate": "Bearer"})
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
