"""What the Tempo and Jaeger endpoints share: the read runner they are given, content
negotiation, and their lenient-but-checked query parameters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request

from ..library.errors import QueryError
from ..library.reader import Reader, Result

# Runs a read on a fresh (project-scoped) Reader in the threadpool (query.http.api).
Run = Callable[[Callable[[Reader], Result]], Awaitable[Result]]
PROTOBUF = ("application/protobuf", "application/x-protobuf")


def wants_protobuf(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return any(kind in accept for kind in PROTOBUF)


def query_params(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The request's parameters (empty ones dropped); unknown or repeated ones are a 400."""
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            raise QueryError(f"unknown parameter {key!r} (expected: {', '.join(allowed)})")
        if key in out:
            raise QueryError(f"parameter {key} given more than once")
        if value != "":
            out[key] = value
    return out


def whole(params: dict[str, str], key: str, default: int, low: int, high: int) -> int:
    if key not in params:
        return default
    try:
        value = int(params[key])
    except ValueError:
        raise QueryError(f"parameter {key}: expected a whole number, got {params[key]!r}") from None
    if not low <= value <= high:
        raise QueryError(f"parameter {key}: must be {low} to {high:,}")
    return value


def unix_range(params: dict[str, str], scale: int) -> tuple[int | None, int | None]:
    """``start``/``end`` (unix time in units of 1/scale s) as epoch nanoseconds, as the
    filters' since/until hold times."""
    out: list[int | None] = []
    for key in ("start", "end"):
        if key not in params:
            out.append(None)
            continue
        value = whole(params, key, 0, 0, 9_000_000_000 * scale)
        out.append(value * (1_000_000_000 // scale))
    return out[0], out[1]


def ns_range(since: int | None, until: int | None) -> tuple[int, int] | None:
    if since is None and until is None:
        return None
    return since or 0, until if until is not None else 2**62
