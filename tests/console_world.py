"""The world of the console's accessibility, keyboard, waterfall and chart tests: a collector on
free ports filled through the OTel SDK exporters with the demo workload, the shop session, an
agent session whose one trace holds 600 spans, and a session of DELTA counters (as MeshAgent
sends them); plus the browser page they are opened in, which fails the test on any console error
or unhandled exception or promise rejection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import make_settings
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode, set_span_in_context
from screenshots import send_shop_session

from query.cli.demo import send_workload
from query.http.serving import serving_thread

MS = 1_000_000
BIG_ROOM, BIG_SESSION = "agents", "agent-600"
DELTA_ROOM, DELTA_SESSION = "mesh", "mesh-delta-1"
TOOLS = ["web.search", "http.fetch", "db.query", "file.write", "render"]
MIDS, LEAVES = 23, 25  # the big trace: a root, 23 steps of 25 tool calls each, one last answer


def big_trace_names() -> list[tuple[str, int]]:
    """The big trace's rows as the waterfall shows them: (name, depth), depth first."""
    rows = [("agent.run", 0)]
    for m in range(MIDS):
        rows.append((f"llm.step.{m}", 1))
        rows += [(TOOLS[(m + leaf) % len(TOOLS)], 2) for leaf in range(LEAVES)]
    rows.append(("final.answer", 1))
    return rows


def send_big_trace(grpc_endpoint: str) -> None:
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
    def __init__(self, db: Path):
        self.thread = serving_thread(make_settings(db))
        c = self.thread.start()
        self.api = f"http://127.0.0.1:{c.ports['api']}"
        self.http = f"http://127.0.0.1:{c.ports['http']}"
        self.grpc = f"127.0.0.1:{c.ports['grpc']}"

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
        send_big_trace(w.grpc)
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
