"""OTLP/gRPC receiver: TraceService, LogsService and MetricsService on one grpc.aio server.

gRPC decompresses gzip itself and enforces the message size limit (limits.max_body_bytes) on
the decompressed message. Errors map to INVALID_ARGUMENT (bad payload), UNAVAILABLE (queue full,
with a RetryInfo-style retry delay in the message, or store trouble), UNAUTHENTICATED (auth on and
no valid ingest token in the ``authorization`` metadata).
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from .auth import UNAUTHORIZED, Auth
from .decode import response_message
from .errors import DecodeError, Overloaded, RoomscopeError, StoreUnavailable
from .ingest import Ingestor

log = logging.getLogger("roomscope.grpc")


def _authorization(context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization":
            return value if isinstance(value, str) else None
    return None


async def _export(
    ingestor: Ingestor, signal: str, request: bytes, context, auth: Auth | None = None
) -> Message:
    project = None
    if auth is not None:
        project = auth.project(_authorization(context), "ingest")
        if project is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHORIZED)
    try:
        if not ingestor.accepting:
            raise StoreUnavailable("collector is shutting down")
        # Raw bytes, decoded exactly like an HTTP protobuf body.
        decoded = await ingestor.export_body(signal, request, "protobuf", project)
    except DecodeError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except Overloaded as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc} (retry after {exc.retry_after}s)")
    except StoreUnavailable as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    except Exception as exc:  # never let a request take the server down
        log.exception("unexpected error handling a %s export", signal)
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")
    return response_message(signal, decoded)


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, ingestor: Ingestor, auth: Auth | None = None):
        self.ingestor = ingestor
        self.auth = auth

    async def Export(self, request, context):
        return await _export(self.ingestor, "traces", request, context, self.auth)


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, ingestor: Ingestor, auth: Auth | None = None):
        self.ingestor = ingestor
        self.auth = auth

    async def Export(self, request, context):
        return await _export(self.ingestor, "logs", request, context, self.auth)


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, ingestor: Ingestor, auth: Auth | None = None):
        self.ingestor = ingestor
        self.auth = auth

    async def Export(self, request, context):
        return await _export(self.ingestor, "metrics", request, context, self.auth)


def create_grpc_server(
    ingestor: Ingestor,
    host: str,
    port: int,
    max_message_bytes: int,
    auth: Auth | None = None,
    tls: tuple[bytes, bytes] | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server bound to host:port (0 = free port); returns it with the bound port.

    ``tls``: (PEM key, PEM certificate chain) to serve TLS instead of plaintext."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=256,
    )

    # Every service gets the request's bytes (no deserializer): they take the same decode path
    # as an OTLP/HTTP protobuf body (the C decoder for traces when it is on), and a malformed
    # message is answered INVALID_ARGUMENT instead of grpc's own UNKNOWN.
    def raw(service: str, servicer: Any, response: type[Message]) -> grpc.GenericRpcHandler:
        handler = grpc.unary_unary_rpc_method_handler(
            servicer(ingestor, auth).Export,
            request_deserializer=None,
            response_serializer=response.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(
            f"opentelemetry.proto.collector.{service}", {"Export": handler}
        )

    server.add_generic_rpc_handlers(
        (
            raw("trace.v1.TraceService", _Traces, ExportTraceServiceResponse),
            raw("logs.v1.LogsService", _Logs, ExportLogsServiceResponse),
            raw("metrics.v1.MetricsService", _Metrics, ExportMetricsServiceResponse),
        )
    )
    try:
        if tls is None:
            bound = server.add_insecure_port(f"{host}:{port}")
        else:
            creds = grpc.ssl_server_credentials([tls])
            bound = server.add_secure_port(f"{host}:{port}", creds)
    except RuntimeError:  # newer grpcio raises instead of returning 0
        bound = 0
    if bound == 0:
        raise RoomscopeError(f"cannot listen on {host}:{port} (OTLP/gRPC)")
    return server, bound
