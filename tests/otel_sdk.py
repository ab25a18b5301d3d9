"""Real OpenTelemetry SDK pipelines (traces, logs, metrics) exporting over OTLP gRPC or HTTP."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


def _exporters(protocol: str, http_url: str, grpc_endpoint: str, headers: Mapping[str, str] | None):
    headers = dict(headers or {})
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        kw: dict[str, Any] = {
            "endpoint": grpc_endpoint,
            "insecure": True,
            "headers": headers or None,
        }
        return OTLPSpanExporter(**kw), OTLPLogExporter(**kw), OTLPMetricExporter(**kw)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return (
        OTLPSpanExporter(endpoint=f"{http_url}/v1/traces", headers=headers),
        OTLPLogExporter(endpoint=f"{http_url}/v1/logs", headers=headers),
        OTLPMetricExporter(endpoint=f"{http_url}/v1/metrics", headers=headers),
    )


@dataclass
class Pipeline:
    """Providers wired to OTLP exporters; ``shutdown()`` flushes everything (synchronously)."""

    tracer_provider: TracerProvider
    logger_provider: LoggerProvider
    meter_provider: MeterProvider

    def tracer(self, name: str = "roomscope.tests"):
        return self.tracer_provider.get_tracer(name)

    def logger(self, name: str = "roomscope.tests") -> logging.Logger:
        """A stdlib logger whose records go through the OTel logs pipeline only."""
        log = logging.getLogger(f"{name}.{id(self)}")
        log.propagate = False
        log.setLevel(logging.DEBUG)
        log.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=self.logger_provider))
        return log

    def meter(self, name: str = "roomscope.tests"):
        return self.meter_provider.get_meter(name)

    def shutdown(self) -> None:
        self.tracer_provider.force_flush()
        self.logger_provider.force_flush()
        self.meter_provider.force_flush()
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
        self.meter_provider.shutdown()


def pipeline(
    protocol: str,
    http_url: str,
    grpc_endpoint: str,
    resource: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
) -> Pipeline:
    """protocol "grpc" or "http"; spans and logs export synchronously (Simple processors)."""
    span_exp, log_exp, metric_exp = _exporters(protocol, http_url, grpc_endpoint, headers)
    res = Resource.create(dict(resource))
    tp = TracerProvider(resource=res)
    tp.add_span_processor(SimpleSpanProcessor(span_exp))
    lp = LoggerProvider(resource=res)
    lp.add_log_record_processor(SimpleLogRecordProcessor(log_exp))
    reader = PeriodicExportingMetricReader(metric_exp, export_interval_millis=3_600_000)
    mp = MeterProvider(resource=res, metric_readers=[reader])
    return Pipeline(tp, lp, mp)
