"""OTLP/HTTP receiver: a small ASGI app for POST /v1/traces, /v1/logs, /v1/metrics.

Statuses follow the OTLP spec: 200 with an Export*ServiceResponse in the request's encoding,
400 for bad payloads, 413 for bodies over limits.max_body_bytes (also after decompression: a
gzip body is inflated in steps and refused as soon as it passes the limit), 415 for unknown
content types and encodings, 503 with Retry-After when the writer's queue is full, 401
(before the body is read) without a valid ingest token when auth.enabled is on. Repeated and
trailing slashes in the path are ignored (``//v1/traces`` is ``/v1/traces``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import zlib
from typing import Any

from google.rpc import status_pb2

from .auth import UNAUTHORIZED, Auth
from .decode import encode_message, response_message
from .errors import (
    DecodeError,
    Overloaded,
    PayloadTooLarge,
    StoreUnavailable,
    UnsupportedMediaType,
)
from .ingest import Ingestor

log = logging.getLogger("roomscope.http")

PATHS = {"/v1/traces": "traces", "/v1/logs": "logs", "/v1/metrics": "metrics"}
CONTENT_TYPES = {"application/x-protobuf": "protobuf", "application/json": "json"}
MEDIA = {"protobuf": b"application/x-protobuf", "json": b"application/json"}
_GRPC_CODES = {400: 3, 401: 16, 404: 5, 405: 12, 408: 4, 413: 8, 415: 3, 429: 8, 500: 13, 503: 14}


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo Content-Encoding, never producing more than ``limit`` bytes.

    A gzip body may hold several members (RFC 1952); each is inflated in turn, and the output is
    capped as it is produced, so a gzip bomb costs at most ``limit`` bytes of memory.
    """
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r} (use gzip)")
    too_large = f"decompressed body exceeds {limit} bytes (limits.max_body_bytes)"
    parts: list[bytes] = []
    size = 0
    data = body
    try:
        while True:
            d = zlib.decompressobj(wbits)
            out = d.decompress(data, limit - size + 1)
            size += len(out)
            if size > limit or d.unconsumed_tail:
                raise PayloadTooLarge(too_large)
            parts.append(out)
            if not d.eof:
                raise DecodeError(f"truncated {encoding} body")
            data = d.unused_data
            if wbits == zlib.MAX_WBITS or not data.strip(b"\0"):
                break  # trailing zero padding after the last gzip member is tolerated
    except zlib.error as exc:
        raise DecodeError(f"invalid {encoding} body: {exc}") from None
    return b"".join(parts)


def signal_path(path: str) -> str:
    """The path with repeated and trailing slashes dropped: an exporter endpoint configured
    with a trailing slash (``http://host:4318/`` + ``/v1/traces``) posts to ``//v1/traces``."""
    return "/" + "/".join(part for part in path.split("/") if part)


class _Tracked:
    """An ASGI ``receive`` that remembers whether the request body was read to its end."""

    def __init__(self, receive: Any):
        self._receive = receive
        self.done = False

    async def __call__(self) -> dict:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message


class OTLPHttpApp:
    def __init__(
        self,
        ingestor: Ingestor,
        max_body_bytes: int,
        request_timeout: float,
        auth: Auth | None,
    ):
        self.ingestor = ingestor
        self.max_body_bytes = max_body_bytes
        self.request_timeout = request_timeout
        self.auth = auth  # None: no tokens (auth.enabled = false)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        encoding = CONTENT_TYPES.get(headers.get("content-type", "").split(";")[0].strip().lower())
        status, body, extra = await self._handle(scope, headers, encoding, receive)
        media = MEDIA[encoding or "json"]
        out_headers = [(b"content-type", media), (b"content-length", str(len(body)).encode())]
        out_headers += extra
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": body})

    def _error(self, status: int, message: str, encoding: str | None) -> bytes:
        st = status_pb2.Status(code=_GRPC_CODES.get(status, 2), message=message)
        if encoding == "protobuf":
            return st.SerializeToString()
        return json.dumps({"code": st.code, "message": message}).encode()

    async def _discard_rest(self, receive: Any) -> None:
        """Read and drop what is left of a refused body (bounded in bytes and time), so that the
        client reads our 413 instead of a connection reset caused by unread data."""
        if not isinstance(receive, _Tracked):
            return

        async def drain() -> None:
            dropped = 0
            while not receive.done and dropped <= self.max_body_bytes:
                dropped += len((await receive()).get("body", b""))

        with contextlib.suppress(Exception):
            await asyncio.wait_for(drain(), min(self.request_timeout, 5.0))

    async def _read_body(self, receive: Any, declared: int | None) -> bytes:
        if declared is not None and declared > self.max_body_bytes:
            raise PayloadTooLarge(
                f"body of {declared} bytes exceeds {self.max_body_bytes} (limits.max_body_bytes)"
            )
        chunks = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionError("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise PayloadTooLarge(
                    f"body exceeds {self.max_body_bytes} bytes (limits.max_body_bytes)"
                )
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _handle(
        self, scope: dict, headers: dict[str, str], encoding: str | None, receive: Any
    ) -> tuple[int, bytes, list]:
        path = scope["path"]
        signal = PATHS.get(signal_path(path))
        if signal is None:
            return (
                404,
                self._error(
                    404, f"unknown path {path}; use /v1/traces, /v1/logs or /v1/metrics", encoding
                ),
                [],
            )
        if scope["method"] != "POST":
            msg = f"method {scope['method']} not allowed on {path}; use POST"
            return 405, self._error(405, msg, encoding), [(b"allow", b"POST")]
        if encoding is None:
            ctype = headers.get("content-type", "")
            msg = (
                f"unsupported Content-Type {ctype!r}; use application/x-protobuf or"
                " application/json"
            )
            return 415, self._error(415, msg, None), []
        project = None
        if self.auth is not None:
            project = self.auth.project(headers.get("authorization"), "ingest")
            if project is None:  # same answer whatever was wrong with the token
                await self._discard_rest(_Tracked(receive))
                challenge = [(b"www-authenticate", b"Bearer"), (b"connection", b"close")]
                return 401, self._error(401, UNAUTHORIZED, encoding), challenge
        try:
            declared = headers.get("content-length")
            size = int(declared) if declared and declared.isdigit() else None
            receive = _Tracked(receive)
            raw = await asyncio.wait_for(self._read_body(receive, size), self.request_timeout)
            content_encoding = headers.get("content-encoding", "").strip().lower()
            if content_encoding in ("", "identity"):
                body = raw
            else:  # inflating up to max_body_bytes takes a while: keep the loop serving
                body = await asyncio.get_running_loop().run_in_executor(
                    None, inflate, raw, content_encoding, self.max_body_bytes
                )
            if not self.ingestor.accepting:
                raise StoreUnavailable("collector is shutting down")
            decoded = await self.ingestor.export_body(signal, body, encoding, project)
        except PayloadTooLarge as exc:
            await self._discard_rest(receive)
            return 413, self._error(413, str(exc), encoding), [(b"connection", b"close")]
        except UnsupportedMediaType as exc:
            return 415, self._error(415, str(exc), encoding), []
        except DecodeError as exc:
            return 400, self._error(400, str(exc), encoding), []
        except Overloaded as exc:
            retry = [(b"retry-after", str(exc.retry_after).encode())]
            return 503, self._error(503, str(exc), encoding), retry
        except StoreUnavailable as exc:
            return 503, self._error(503, str(exc), encoding), [(b"retry-after", b"1")]
        except TimeoutError:
            msg = f"request body not received within {self.request_timeout}s"
            return 408, self._error(408, msg, encoding), [(b"connection", b"close")]
        except ConnectionError:
            return 400, b"", []
        except Exception as exc:  # never let a request take the server down
            log.exception("unexpected error handling %s", path)
            return 500, self._error(500, f"internal error: {type(exc).__name__}", encoding), []
        return 200, encode_message(response_message(signal, decoded), encoding), []
