"""``GET /api/v1/sessions/{session_id}/export``: a session streamed as a file (SPEC 12).

``format=otlp-json`` (default: OTLP/JSON lines, ``application/x-ndjson``), ``otlp-proto``
(length-prefixed protobuf) or ``parquet`` with ``table=spans|logs|metric_points`` (one parquet
file per table). The body is produced a chunk at a time on the threadpool, from a read cursor
closed when the stream ends; a session that does not exist is a 404 before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from collector.settings import Settings
from collector.tagging import Tagger

from ..library.otlp_export import FORMATS, MEDIA_TYPES, TABLES
from ..library.reader import Reader
from .gate import current_project
from .paths import RawPathRoute
from .responses import READ_ERRORS, JsonResponse, read_error
from .routes import error_responses

PATH = "/api/v1/sessions/{session_id}/export"
PARAMS = ("format", "table")


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status_code=status)


def export_route(reader: Callable[[str | None], Reader], settings: Settings) -> Route:
    """The route; ``reader(project)`` makes a Reader on a fresh cursor (the API's own)."""
    tagger = Tagger.from_settings(settings)

    def open_export(
        session_id: str, fmt: str, table: str, project: str | None
    ) -> tuple[Iterator[bytes], Callable[[], None]]:
        r = reader(project)
        try:
            return r.export_session(session_id, fmt, tagger, table), r.close
        except BaseException:
            r.close()
            raise

    async def export(request: Request) -> Response:
        query = dict(request.query_params)
        unknown = sorted(set(request.query_params) - set(PARAMS))
        if unknown or len(query) != len(request.query_params.multi_items()):
            what = ", ".join(unknown) if unknown else "a repeated parameter"
            return _error(f"unknown parameters: {what} (allowed: format, table)", 400)
        fmt = query.get("format", "otlp-json")
        table = query.get("table", "spans" if fmt != "parquet" else "")
        if fmt == "parquet" and not table:
            return _error("format=parquet needs table=spans|logs|metric_points", 400)
        try:
            chunks, done = await run_in_threadpool(
                open_export, request.path_params["session_id"], fmt, table, current_project()
            )
        except READ_ERRORS as exc:
            return read_error(exc)

        def stream() -> Iterator[bytes]:
            try:
                yield from chunks
            finally:
                done()

        return StreamingResponse(stream(), media_type=MEDIA_TYPES[fmt])

    return RawPathRoute(PATH, export, methods=["GET"])  # ids may hold "/" (query.http.paths)


def openapi_paths() -> dict[str, Any]:
    """The route's OpenAPI entry (added to the API's document)."""
    content = {t: {"schema": {"type": "string", "format": "binary"}} for t in MEDIA_TYPES.values()}
    return {
        PATH: {
            "get": {
                "summary": "The session's spans, logs and metric points as a file, streamed:"
                " OTLP/JSON lines, length-prefixed OTLP protobuf, or one parquet file per table.",
                "parameters": [
                    {
                        "name": "session_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "description": "otlp-json (default), otlp-proto or parquet.",
                        "schema": {"type": "string", "enum": list(FORMATS)},
                    },
                    {
                        "name": "table",
                        "in": "query",
                        "required": False,
                        "description": "With format=parquet: which table's file.",
                        "schema": {"type": "string", "enum": list(TABLES)},
                    },
                ],
                "responses": {
                    "200": {"description": "OK", "content": content},
                    **error_responses(True),
                },
            }
        }
    }
