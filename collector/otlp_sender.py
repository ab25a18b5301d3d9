"""Sending export requests to an OTLP endpoint as an exporter does, with the OTLP spec's retry
rules: ``http(s)://host:port`` is OTLP/HTTP protobuf (``POST /v1/{signal}``), ``grpc://`` and
``grpcs://`` (TLS) are OTLP/gRPC.

Only what the spec calls retryable is retried: HTTP 429, 502, 503 and 504, gRPC UNAVAILABLE and
RESOURCE_EXHAUSTED; after the server's ``Retry-After`` (HTTP) when it gives one, else after an
exponential backoff (0.5 s, doubling, at most 30 s) until ``attempts`` are spent. Any other
answer is final. ``roomscope import --otlp`` sends through here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import grpc
import httpx

from .decode import SIGNALS, parse_json
from .errors import RoomscopeError

RETRY_HTTP = frozenset({429, 502, 503, 504})
RETRY_GRPC = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
FIRST_DELAY, MAX_DELAY = 0.5, 30.0
_GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}


class Unreachable(RoomscopeError):
    """The endpoint cannot be reached at all (no connection, bad address)."""


@dataclass(frozen=True)
class Sent:
    ok: bool
    status: str  # "HTTP 200", "gRPC UNAVAILABLE", …
    message: str  # the server's error text (not ok), or its partial-success message
    rejected: int = 0  # records the server rejected (partial success)
    attempts: int = 1
    retryable: bool = False  # not ok, with an answer the spec retries (attempts ran out)


class Sender(Protocol):
    url: str

    def send(self, signal: str, body: bytes, encoding: str) -> Sent: ...

    def close(self) -> None: ...


def _backoff(attempt: int) -> float:
    return min(FIRST_DELAY * (2**attempt), MAX_DELAY)


def _retry_after(header: str | None) -> float | None:
    try:
        return min(max(float(header), 0.0), MAX_DELAY) if header else None
    except ValueError:
        return None


def _partial(signal: str, content: bytes) -> tuple[int, str]:
    """(rejected records, message) of an Export*ServiceResponse body."""
    try:
        message = SIGNALS[signal][1].FromString(content)
    except Exception:
        return 0, ""
    ps = message.partial_success
    for name in ("rejected_spans", "rejected_log_records", "rejected_data_points"):
        if hasattr(ps, name):
            return getattr(ps, name), ps.error_message
    return 0, ""


class HttpSender:
    """OTLP/HTTP: protobuf (or an OTLP/JSON body as it is) POSTed to ``{url}/v1/{signal}``."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        timeout: float,
        attempts: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, timeout=timeout, headers=dict(headers))
        self.attempts = attempts
        self.sleep = sleep

    def send(self, signal: str, body: bytes, encoding: str) -> Sent:
        content_type = "application/json" if encoding == "json" else "application/x-protobuf"
        for attempt in range(self.attempts):
            try:
                r = self.client.post(
                    f"/v1/{signal}", content=body, headers={"Content-Type": content_type}
                )
            except httpx.HTTPError as exc:
                raise Unreachable(f"cannot reach {self.url}: {exc}") from None
            if r.status_code in RETRY_HTTP and attempt + 1 < self.attempts:
                delay = _retry_after(r.headers.get("Retry-After"))
                self.sleep(_backoff(attempt) if delay is None else delay)
                continue
            status = f"HTTP {r.status_code}"
            if r.status_code != 200:
                retry = r.status_code in RETRY_HTTP
                return Sent(False, status, _error_text(r), attempts=attempt + 1, retryable=retry)
            if encoding == "json":
                return Sent(True, status, "", attempts=attempt + 1)
            rejected, message = _partial(signal, r.content)
            return Sent(True, status, message, rejected, attempt + 1)
        raise AssertionError("unreachable")  # the last attempt always returns

    def close(self) -> None:
        self.client.close()


def _error_text(r: httpx.Response) -> str:
    text = r.text.strip()
    if "json" in r.headers.get("content-type", ""):
        try:
            doc = r.json()
            text = str(doc.get("error") or doc.get("message") or text)
        except (ValueError, AttributeError):
            pass
    return text[:300] or f"HTTP {r.status_code}"


class GrpcSender:
    """OTLP/gRPC: the request's protobuf bytes to the signal's Export method (an OTLP/JSON body
    is parsed and sent as protobuf)."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        timeout: float,
        attempts: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ):
        parts = urlsplit(url)
        if not parts.hostname or not parts.port:
            raise Unreachable(f"{url}: give grpc://HOST:PORT")
        self.url = url
        target = f"{parts.hostname}:{parts.port}"
        if parts.scheme == "grpcs":
            self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials())
        else:
            self.channel = grpc.insecure_channel(target)
        self.metadata = tuple((k.lower(), v) for k, v in headers.items())
        self.timeout = timeout
        self.attempts = attempts
        self.sleep = sleep

    def send(self, signal: str, body: bytes, encoding: str) -> Sent:
        if encoding == "json":
            body = parse_json(signal, body).SerializeToString()
        call = self.channel.unary_unary(_GRPC_METHODS[signal])
        for attempt in range(self.attempts):
            try:
                content = call(body, timeout=self.timeout, metadata=self.metadata)
            except grpc.RpcError as exc:
                code = exc.code()
                if code in RETRY_GRPC and attempt + 1 < self.attempts:
                    self.sleep(_backoff(attempt))
                    continue
                return Sent(
                    False,
                    f"gRPC {code.name}",
                    exc.details() or "",
                    attempts=attempt + 1,
                    retryable=code in RETRY_GRPC,
                )
            rejected, message = _partial(signal, content)
            return Sent(True, "gRPC OK", message, rejected, attempt + 1)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.channel.close()


def open_sender(
    url: str,
    headers: Mapping[str, str],
    timeout: float,
    attempts: int = 8,
    sleep: Callable[[float], None] = time.sleep,
) -> Sender:
    """The sender for an endpoint URL: http(s):// (OTLP/HTTP) or grpc(s):// (OTLP/gRPC).
    ``sleep`` waits between attempts (the forwarder's returns early when it stops)."""
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https"):
        return HttpSender(url, headers, timeout, attempts, sleep)
    if scheme in ("grpc", "grpcs"):
        return GrpcSender(url, headers, timeout, attempts, sleep)
    raise Unreachable(f"{url}: an OTLP endpoint is http(s)://HOST:PORT or grpc(s)://HOST:PORT")
