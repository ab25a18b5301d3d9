"""The worlds of the console's browser tests, sent through the real OpenTelemetry SDK exporters.

The accessibility, keyboard, waterfall and chart tests share the ``world`` fixture: a collector on
free ports with the demo workload, the shop session, an agent session whose one trace holds 600
spans, and a session of DELTA counters (as MeshAgent sends them); their pages (``open_page``,
``clean_page``) fail the test on any console error or unhandled exception or promise rejection.

The debugging tests (issue #24 part A) build their own worlds from the senders here: many
sessions, a 600-span trace, a session of 10,000 log records, and an active session that keeps
receiving spans and logs; their page (``console_page``) also counts unhandled promise rejections
and lets a test name the errors it expects (a 404)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import make_settings
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode, set_span_in_context
from otel_sdk import pipeline
from screenshots import send_shop_session

from query.cli.demo import send_workload
from query.http.serving import serving_thread

MS = 1_000_000
BIG_ROOM, BIG_SESSION = "agents", "agent-600"
DELTA_ROOM, DELTA_SESSION = "mesh", "mesh-delta-1"
TOOLS = ["web.search", "http.fetch", "db.query", "file.write", "render"]
MIDS, LEAVES = 23, 25  # the agent trace: a root, 23 steps of 25 tool calls each, one last answer
# the debugging worlds
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


def big_trace_names() -> list[tuple[str, int]]:
    """The agent trace's rows as the waterfall shows them: (name, depth), depth first."""
    rows = [("agent.run", 0)]
    for m in range(MIDS):
        rows.append((f"llm.step.{m}", 1))
        rows += [(TOOLS[(m + leaf) % len(TOOLS)], 2) for leaf in range(LEAVES)]
    rows.append(("final.answer", 1))
    return rows


def send_agent_trace(grpc_endpoint: str) -> None:
    """One trace of 600 spans: steps in sequence, each a burst of short tool calls (one fails)."""
    res = Resource.create({"service.name": "agent", "room": BIG_ROOM, "session": BIG_SESSION})
    tp = TracerProvider(resource=res)
    tp.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=grpc_endpoint, insecure=True),
                           max_queue_size=1000, max_export_batch_size=600)
    )  # fmt: skip
    tracer = tp.get_tracer("agent")
    t = time.time_ns() - 300_000 * MS
    root = tracer.start_span("agent.run", start_time=t)
    at = t + MS
    for m in range(MIDS):
        step = tracer.start_span(f"llm.step.{m}", context=set_span_in_context(root), start_time=at)
        for leaf in range(LEAVES):
            tool = tracer.start_span(
                TOOLS[(m + leaf) % len(TOOLS)], context=set_span_in_context(step),
                start_time=at + leaf * MS, attributes={"step": m, "call": leaf},
            )  # fmt: skip
            if m == 7 and leaf == 3:
                tool.set_status(Status(StatusCode.ERROR, "timeout"))
            tool.end(end_time=at + (leaf + 3) * MS)  # tool calls overlap: 3 ms each, 1 ms apart
        step.end(end_time=at + (LEAVES + 5) * MS)
        at += (LEAVES + 10) * MS
    final = tracer.start_span("final.answer", context=set_span_in_context(root), start_time=at)
    final.end(end_time=at + 40 * MS)
    root.end(end_time=at + 50 * MS)
    tp.shutdown()


def send_delta_counter(grpc_endpoint: str, exports: int = 4) -> None:
    """A counter exported with DELTA temporality (as MeshAgent's are), several exports apart."""
    res = Resource.create({"service.name": "mesh", "room": DELTA_ROOM, "session": DELTA_SESSION})
    exporter = OTLPMetricExporter(
        endpoint=grpc_endpoint, insecure=True,
        preferred_temporality={Counter: AggregationTemporality.DELTA},
    )  # fmt: skip
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    mp = MeterProvider(resource=res, metric_readers=[reader])
    counter = mp.get_meter("mesh").create_counter("messages.sent", unit="{message}")
    tags = {"room": DELTA_ROOM, "session": DELTA_SESSION}
    for i in range(exports):
        counter.add(10 * (i + 1), tags)
        reader.force_flush()
    mp.shutdown()


class World:
    """A collector on a fresh store, on free ports, for a test module."""

    def __init__(self, db: Path):
        self.thread = serving_thread(make_settings(db))
        c = self.thread.start()
        self.api = f"http://127.0.0.1:{c.ports['api']}"
        self.http = f"http://127.0.0.1:{c.ports['http']}"
        self.grpc = f"127.0.0.1:{c.ports['grpc']}"
        self.big_trace = ""  # the debugging worlds' 600-span trace id

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.api + path, params=params, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_for(self, path: str, ready: Any, **params: Any) -> Any:
        deadline = time.monotonic() + 30
        while not ready(answer := self.get(path, **params)):
            assert time.monotonic() < deadline, answer
            time.sleep(0.05)
        return answer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("console-world") / "world.duckdb")
    try:
        send_workload(w.grpc)
        send_shop_session(w.http, w.grpc)
        send_agent_trace(w.grpc)
        send_delta_counter(w.grpc)
        w.wait_for(f"/api/v1/sessions/{BIG_SESSION}", lambda a: a["session"]["span_count"] == 600)
        w.wait_for(
            f"/api/v1/sessions/{DELTA_SESSION}/metric_series",
            lambda a: sum(len(s["points"]) for s in a["series"]) == 4,
        )
        yield w
    finally:
        w.thread.stop()


def open_page(browser: Any, **context: Any) -> tuple[Any, list[str]]:
    """A page of a fresh context, and the list its console errors, uncaught exceptions and
    unhandled promise rejections are written to."""
    ctx = browser.new_context(**{"viewport": {"width": 1360, "height": 900}, **context})
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
    return page, errors


@pytest.fixture
def clean_page(browser: Any) -> Iterator[Any]:
    """A page at 1360×900 that must end the test without a console error."""
    page, errors = open_page(browser)
    yield page
    page.context.close()
    assert not errors, errors


# The debugging tests' data sets and page.


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
