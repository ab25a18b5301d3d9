"""OTLP/gRPC receiver: TraceService, LogsService and MetricsService on one grpc.aio server.

gRPC decompresses gzip itself and enforces the message size limit (limits.max_body_bytes) on
the decompressed message. Errors map to INVALID_ARGUMENT (bad payload), UNAVAILABLE (queue full,
with a RetryInfo-style retry delay in the message, or store trouble).
"""

from __future__ import annotations

import logging

import grpc
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from .decode import response_message
from .errors import DecodeError, Overloaded, StoreUnavailable
from .ingest import Ingestor

log = logging.getLogger("roomscope.grpc")


async def _export(ingestor: Ingestor, signal: str, request: Message, context) -> Message:
    try:
        if not ingestor.accepting:
            raise StoreUnavailable("collector is shutting down")
        decoded = await ingestor.export_message(signal, request)
    except DecodeError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except Overloaded as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc} (retry after {exc.retry_after}s)")
    except StoreUnavailable as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    return response_message(signal, decoded)


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, ingestor: Ingestor):
        self.ingestor = ingestor

    async def Export(self, request, context):
        return await _export(self.ingestor, "traces", request, context)


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, ingestor: Ingestor):
        self.ingestor = ingestor

    async def Export(self, request, context):
        return await _export(self.ingestor, "logs", request, context)


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, ingestor: Ingestor):
        self.ingestor = ingestor

    async def Export(self, request, context):
        return await _export(self.ingestor, "metrics", request, context)


def create_grpc_server(
    ingestor: Ingestor, host: str, port: int, max_message_bytes: int
) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server bound to host:port (0 = free port); returns it with the bound port."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=256,
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(ingestor), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(ingestor), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(ingestor), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind OTLP/gRPC to {host}:{port}")
    return server, bound
