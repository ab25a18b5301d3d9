"""The data sets of the console's debugging tests (issue #24), sent through the real OpenTelemetry
SDK exporters: many sessions, a 600-span trace, a session of 10,000 log records, and an active
session that keeps receiving spans and logs; plus the browser page fixture that counts console
errors and unhandled promise rejections."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from conftest import make_settings
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode, set_span_in_context
from otel_sdk import pipeline

from query.http.serving import serving_thread

MS = 1_000_000
MANY_SESSIONS = 1121
BIG_TRACE_SPANS = 600
BIG_TRACE_SESSION = "trace-600"
LOGS_SESSION, LOG_COUNT = "logs-10k", 10_000
FOLLOW_ROOM = "follow"

# Counts unhandled promise rejections (Chromium also reports them as page errors).
REJECTIONS_SCRIPT = (
    "window.__rejections = [];"
    "addEventListener('unhandledrejection', (e) => window.__rejections.push(String(e.reason)));"
)


class World:
    """A collector on a fresh store, on free ports, for a test module."""

    def __init__(self, db: Path):
        self.thread = serving_thread(make_settings(db))
        c = self.thread.start()
        self.api = f"http://127.0.0.1:{c.ports['api']}"
        self.http = f"http://127.0.0.1:{c.ports['http']}"
        self.grpc = f"127.0.0.1:{c.ports['grpc']}"
        self.big_trace = ""

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.api + path, params=params, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()


def _tracer_provider(grpc: str, resource: dict[str, str], queue: int = 20_000) -> TracerProvider:
    tp = TracerProvider(resource=Resource.create(resource))
    exporter = OTLPSpanExporter(endpoint=grpc, insecure=True)
    tp.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=queue, max_export_batch_size=1000)
    )
    return tp


def send_many_sessions(grpc: str, n: int = MANY_SESSIONS) -> None:
    """``n`` sessions (explicit ids ``many-0000``...) over 50 rooms, one span each."""
    tp = _tracer_provider(grpc, {"service.name": "many", "project": "fleet"})
    tracer = tp.get_tracer("many")
    t = time.time_ns() - 3_600_000 * MS
    for i in range(n):
        attrs = {"session": f"many-{i:04d}", "room": f"fleet-{i % 50:02d}"}
        tracer.start_span("ping", attributes=attrs, start_time=t + i * MS).end(
            end_time=t + i * MS + 5 * MS
        )
    tp.shutdown()


def send_big_trace(grpc: str, n: int = BIG_TRACE_SPANS) -> str:
    """One trace of ``n`` spans (a root, 20 children, leaves under them); its trace id."""
    tp = _tracer_provider(
        grpc, {"service.name": "big", "room": "bigroom", "session": BIG_TRACE_SESSION}
    )
    tracer = tp.get_tracer("big")
    t = time.time_ns() - 600_000 * MS
    root = tracer.start_span("big.request", start_time=t)
    made, kids = 1, []
    while made < n:
        kid = tracer.start_span(
            f"step.{len(kids)}", context=set_span_in_context(root), start_time=t + made * MS
        )
        kids.append(kid)
        made += 1
        for _ in range(min(29, n - made)):
            tracer.start_span(
                "leaf", context=set_span_in_context(kid), start_time=t + made * MS
            ).end(end_time=t + made * MS + 2 * MS)
            made += 1
        kid.end(end_time=t + made * MS)
    root.end(end_time=t + (made + 5) * MS)
    trace_id = f"{root.get_span_context().trace_id:032x}"
    tp.shutdown()
    return trace_id


def send_many_logs(grpc: str, n: int = LOG_COUNT) -> None:
    """A session of ``n`` log records (``line 00000``...), every tenth an ERROR."""
    from opentelemetry._logs import LogRecord, SeverityNumber

    res = Resource.create({"service.name": "chatty", "room": "chat", "session": LOGS_SESSION})
    lp = LoggerProvider(resource=res)
    lp.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=grpc, insecure=True),
            max_queue_size=n + 10,
            max_export_batch_size=1000,
        )
    )
    log = lp.get_logger("chatty")
    start = time.time_ns() - 900_000 * MS
    for i in range(n):
        error = i % 10 == 9
        log.emit(
            LogRecord(
                timestamp=start + i * MS, observed_timestamp=start + i * MS,
                severity_number=SeverityNumber.ERROR if error else SeverityNumber.INFO,
                severity_text="ERROR" if error else "INFO", body=f"line {i:05d}",
            )
        )  # fmt: skip
    lp.shutdown()


def send_follow_turn(http_url: str, grpc: str, session: str, name: str, fail: bool = False) -> None:
    """One span of the (active) session and, inside it, one log record ``<name> says hi``."""
    p = pipeline(
        "http", http_url, grpc, {"service.name": "agent", "room": FOLLOW_ROOM, "session": session}
    )
    tracer = p.tracer("follow")
    with tracer.start_as_current_span(name) as span:
        p.logger("follow").warning(f"{name} says hi")
        if fail:
            span.set_status(Status(StatusCode.ERROR, "it broke"))
    p.shutdown()


def wait_until(check: Any, timeout: float = 60.0, what: str = "") -> Any:
    """Poll ``check()`` until it returns something truthy (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def console_page(browser: Any) -> Iterator[Any]:
    """A fresh page; after the test: no page errors, no console errors, no unhandled
    rejections (a test expecting a 404 lists it in ``page.expected_errors``)."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    p = context.new_page()
    p.set_default_timeout(20_000)
    p.add_init_script(REJECTIONS_SCRIPT)
    errors: list[str] = []
    console: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("console", lambda m: m.type == "error" and console.append(m.text))
    p.expected_errors = []
    yield p
    rejections = p.evaluate("window.__rejections") if not p.is_closed() else []
    context.close()
    unexpected = [c for c in console if not any(x in c for x in p.expected_errors)]
    assert not errors and not rejections and not unexpected, (errors, rejections, console)
