"""The read side's own errors; the edges turn them into exit 1 (CLI) or 400/404 (API)."""

from __future__ import annotations

from collector.errors import RoomscopeError


class QueryError(RoomscopeError):
    """A query cannot run: bad value, refused SQL, unreachable source (HTTP 400, exit 1)."""

    status = 400


class NotFound(QueryError):
    """An id (session, trace) that is not in the store (HTTP 404, exit 1)."""

    status = 404


class SourceError(QueryError):
    """The store file or the server cannot be reached (exit 1)."""

    status = 503
