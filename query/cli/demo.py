"""``roomscope demo``: a collector on a fresh store, a realistic backdated workload sent through the
OpenTelemetry SDK exporters, then the session list and a few example queries with real output.

:func:`send_workload` is also what the query tests fill their stores with; it returns a manifest
of every span it sent, so tests can compute the rows a query must return.
"""

from __future__ import annotations

import dataclasses
import random
import shlex
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

SEC = 1_000_000_000
MS = 1_000_000


@dataclass
class SentSpan:
    trace_id: str
    span_id: str
    name: str
    room: str
    session: str | None  # explicit id, None when the collector infers the session
    service: str
    duration_ns: int
    status: str  # UNSET / OK / ERROR
    attributes: dict[str, Any]


@dataclass
class Manifest:
    spans: list[SentSpan] = field(default_factory=list)
    logs: int = 0
    explicit_sessions: list[str] = field(default_factory=list)
    rooms: list[str] = field(default_factory=list)


# (room, explicit session id or None, minutes ago the session started, turns)
SESSIONS = [
    ("lobby", "lobby-standup-1", 9.0, 8),
    ("lobby", None, 4.0, 5),
    ("studio", "studio-render-42", 8.0, 10),
    ("support", None, 14.0, 4),
    ("support", None, 5.0, 6),  # > idle timeout after the previous one: a second inferred session
]
TOOLS = ["search", "calendar", "render", "ticket.lookup", "email.send"]
# The model each room's agent calls (GenAI conventions: gen_ai.provider.name, gen_ai.*.model).
MODELS = {
    "lobby": ("openai", "gpt-4o"),
    "studio": ("anthropic", "claude-sonnet-4"),
    "support": ("openai", "gpt-4o-mini"),
}
# Made-up prices for the demo's example queries (USD per million tokens), not real ones.
DEMO_PRICES = """# roomscope demo: illustrative prices, not any provider's.
[usage.prices."gpt-4o"]
input = 2.5
output = 10.0
cached_input = 1.25

[usage.prices."claude-sonnet-4"]
input = 3.0
output = 15.0
cached_input = 0.3
"""


class _MetricsAt(OTLPMetricExporter):
    """The OTLP/gRPC metric exporter, with every point stamped at one fixed time (start and
    collection time) instead of the SDK's wall clock."""

    def __init__(self, time_ns: int, **kw: Any):
        super().__init__(**kw)
        self.time_ns = time_ns

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kw: Any
    ) -> MetricExportResult:
        return super().export(_restamp(metrics_data, self.time_ns), timeout_millis, **kw)


def _restamp(data: MetricsData, t: int) -> MetricsData:
    """``data`` with the start (where it has one) and time of every point set to ``t``."""
    replace = dataclasses.replace

    def point(p: Any) -> Any:
        start = t if p.start_time_unix_nano else p.start_time_unix_nano  # gauges have none
        return replace(p, start_time_unix_nano=start, time_unix_nano=t)

    def metric(m: Any) -> Any:
        return replace(m, data=replace(m.data, data_points=[point(p) for p in m.data.data_points]))

    def scope(sm: Any) -> Any:
        return replace(sm, metrics=[metric(m) for m in sm.metrics])

    def resource(rm: Any) -> Any:
        return replace(rm, scope_metrics=[scope(sm) for sm in rm.scope_metrics])

    return replace(data, resource_metrics=[resource(rm) for rm in data.resource_metrics])


class Signals:
    """One service's SDK pipeline (batched exporters over OTLP/gRPC)."""

    def __init__(
        self,
        service: str,
        endpoint: str,
        id_generator: IdGenerator | None = None,
        metric_time_ns: int | None = None,
    ):
        res = Resource.create({"service.name": service, "project": "demo"})
        kw: dict[str, Any] = {"endpoint": endpoint, "insecure": True}
        self.tp = TracerProvider(resource=res, id_generator=id_generator)
        self.tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(**kw), max_queue_size=8192))
        self.lp = LoggerProvider(resource=res)
        self.lp.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(**kw), max_queue_size=8192)
        )
        metrics = (
            OTLPMetricExporter(**kw) if metric_time_ns is None else _MetricsAt(metric_time_ns, **kw)
        )
        self.reader = PeriodicExportingMetricReader(metrics, export_interval_millis=3_600_000)
        self.mp = MeterProvider(resource=res, metric_readers=[self.reader])
        self.tracer = self.tp.get_tracer("roomscope.demo")
        self.logger = self.lp.get_logger("roomscope.demo")
        self.meter = self.mp.get_meter("roomscope.demo")

    def shutdown(self) -> None:
        """Flush and stop; metrics are collected once, by the meter provider's shutdown."""
        for p in (self.tp, self.lp):
            p.force_flush()
        for p in (self.tp, self.lp, self.mp):
            p.shutdown()


def send_workload(
    grpc_endpoint: str,
    seed: int = 7,
    now_ns: int | None = None,
    id_generator: IdGenerator | None = None,
    metric_time_ns: int | None = None,
) -> Manifest:
    """Send the demo sessions (backdated several minutes) and return what was sent.

    By default trace and span ids are the SDK's random ones and metric points carry the wall
    clock of their collection. ``id_generator`` (one for both services' tracer providers) and
    ``metric_time_ns`` (the start and time of every metric point) make those reproducible too:
    with a fixed ``now_ns`` the same workload is sent every time (tests/test_golden.py)."""
    rng = random.Random(seed)
    now_ns = now_ns or time.time_ns()
    agent, tools = (
        Signals(service, grpc_endpoint, id_generator, metric_time_ns)
        for service in ("agent", "tools")
    )
    m = Manifest(rooms=sorted({s[0] for s in SESSIONS}))
    counter = 0
    for room, session, minutes_ago, turns in SESSIONS:
        tags = {"room": room, **({"session": session} if session else {})}
        if session:
            m.explicit_sessions.append(session)
        t = now_ns - int(minutes_ago * 60 * SEC)
        emit_log(agent, m, t, SeverityNumber.INFO, "INFO", f"participant joined {room}", tags)
        for turn in range(turns):
            counter += 1
            t = agent_turn(agent, tools, m, rng, t, tags, room, session, turn, counter)
            t += rng.randint(5, 40) * SEC
        if session:
            agent.meter.create_counter("agent.turns", unit="1").add(turns, tags)
            agent.meter.create_histogram("llm.latency", unit="ms").record(850.0, tags)
            tools.meter.create_gauge("tools.queue.depth").set(rng.randint(0, 5), tags)
    agent.shutdown()
    tools.shutdown()
    return m


def agent_turn(
    agent: Signals,
    tools: Signals,
    m: Manifest,
    rng: random.Random,
    t: int,
    tags: dict[str, str],
    room: str,
    session: str | None,
    turn: int,
    counter: int,
) -> int:
    """One agent turn: agent.turn → llm.call, tool.X (slow or failing now and then)."""
    fail = counter % 4 == 0 or counter % 5 == 3
    slow = counter % 3 == 0
    tool = TOOLS[counter % len(TOOLS)]
    llm_ms = rng.randint(300, 900) + (900 if slow else 0)
    tool_ms = rng.randint(20, 200) + (1200 if slow and fail else 0)
    total_ms = llm_ms + tool_ms + rng.randint(10, 60)
    root = agent.tracer.start_span(
        "agent.turn",
        kind=SpanKind.SERVER,
        attributes={**tags, "turn": turn, "user": f"user-{counter % 3}"},
        start_time=t,
    )
    ctx = trace.set_span_in_context(root)
    provider, model = MODELS[room]
    llm = agent.tracer.start_span(
        "llm.call",
        context=ctx,
        kind=SpanKind.CLIENT,
        attributes={
            **tags, "llm.model": "gpt-demo", "llm.tokens": 200 + counter * 17,
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
            "gen_ai.request.model": model, "gen_ai.usage.input_tokens": 200 + counter * 17,
            "gen_ai.usage.output_tokens": 40 + counter * 3,
            **({"gen_ai.usage.cache_read.input_tokens": 128} if turn % 2 else {}),
        },
        start_time=t + 5 * MS,
    )  # fmt: skip
    llm.end(end_time=t + (5 + llm_ms) * MS)
    tstart = t + (10 + llm_ms) * MS
    span = tools.tracer.start_span(
        f"tool.{tool}", context=ctx, kind=SpanKind.INTERNAL,
        attributes={**tags, "tool": tool, "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": tool},
        start_time=tstart,
    )  # fmt: skip
    if fail:
        span.set_status(Status(StatusCode.ERROR, f"{tool} failed: upstream timeout"))
        span.add_event("exception", {"exception.message": "upstream timeout"}, tstart + MS)
    span.end(end_time=tstart + tool_ms * MS)
    root.set_status(Status(StatusCode.ERROR, "turn failed") if fail else Status(StatusCode.OK))
    root.end(end_time=t + total_ms * MS)
    for s, svc, dur in (
        (root, "agent", total_ms),
        (llm, "agent", llm_ms),
        (span, "tools", tool_ms),
    ):
        c = s.get_span_context()
        m.spans.append(
            SentSpan(
                f"{c.trace_id:032x}", f"{c.span_id:016x}", s.name, room, session, svc,
                dur * MS, s.status.status_code.name, dict(s.attributes or {}),
            )
        )  # fmt: skip
    rc, lc = root.get_span_context(), llm.get_span_context()
    tokens = f"llm request: {200 + counter * 17} tokens"
    trace_level = SeverityNumber.TRACE
    emit_log(agent, m, t + 5 * MS, trace_level, "TRACE", tokens, tags, lc.trace_id, lc.span_id)
    emit_log(tools, m, tstart, SeverityNumber.DEBUG, "DEBUG", f"calling {tool}", tags)
    if fail and counter % 8 == 0:
        level, text, message = (
            SeverityNumber.FATAL,
            "FATAL",
            f"turn {turn}: agent crashed in {tool}",
        )
    elif fail:
        level, text, message = SeverityNumber.ERROR, "ERROR", f"turn {turn}: {tool} failed"
    elif slow:
        level, text, message = SeverityNumber.WARN, "WARN", f"turn {turn}: slow ({total_ms} ms)"
    else:
        level, text, message = SeverityNumber.INFO, "INFO", f"turn {turn}: done in {total_ms} ms"
    emit_log(agent, m, t + total_ms * MS, level, text, message, tags, rc.trace_id, rc.span_id)
    return t + total_ms * MS


def emit_log(
    sig: Signals,
    m: Manifest,
    t: int,
    level: SeverityNumber,
    text: str,
    body: str,
    tags: dict[str, str],
    trace_id: int | None = None,
    span_id: int | None = None,
) -> None:
    sig.logger.emit(
        LogRecord(
            timestamp=t, observed_timestamp=t, severity_number=level, severity_text=text,
            body=body, attributes=tags, trace_id=trace_id, span_id=span_id,
        )
    )  # fmt: skip
    m.logs += 1


@contextmanager
def demo_collector(db: Path, **overrides: Any) -> Iterator[Any]:
    from collector.server import loopback_settings

    from ..http.serving import serving_thread

    thread = serving_thread(loopback_settings(db, **overrides))
    collector = thread.start()
    try:
        yield collector
    finally:
        thread.stop()


def fresh_store(db: str | None) -> Path:
    """The demo's store file: ``db`` (which must not exist yet) or one in a new temp dir."""
    path = Path(db) if db else Path(tempfile.mkdtemp(prefix="roomscope-demo-")) / "demo.duckdb"
    if path.exists():
        raise click.ClickException(f"{path} exists; the demo wants a fresh store")
    return path


def run_demo(cli: click.Group, db: str | None = None) -> None:
    """The demo: ``cli`` (the ``roomscope`` group) runs the example queries it prints."""
    path = fresh_store(db)
    started = time.monotonic()
    click.echo(f"roomscope demo: starting a collector on a fresh store {path}", err=True)
    with demo_collector(path) as collector:
        grpc = f"127.0.0.1:{collector.ports['grpc']}"
        click.echo(f"sending telemetry over OTLP/gRPC to {grpc} ...", err=True)
        manifest = send_workload(grpc)
    took = time.monotonic() - started
    prices = path.with_name(path.stem + "-prices.toml")
    prices.write_text(DEMO_PRICES)
    click.echo(
        f"sent {len(manifest.spans)} spans and {manifest.logs} log records for rooms"
        f" {', '.join(manifest.rooms)} in {took:.1f}s; collector stopped, store kept.\n",
        err=True,
    )
    session = manifest.explicit_sessions[0]
    slow_failed = next(s for s in manifest.spans if s.status == "ERROR" and s.duration_ns > SEC)
    examples = [
        ["session", "list"],
        ["session", "get", session],
        ["session", "traces", session, "--min-duration", "1s"],
        ["traces", "--min-duration", "1000", "--attrs", "status=error"],
        ["trace", slow_failed.trace_id, "--show-attrs"],
        ["sql", "SELECT room, count(*) AS spans, round(avg(duration_ns) / 1e6) AS avg_ms"
         " FROM spans GROUP BY room ORDER BY room"],
        ["--config", str(prices), "usage", "--by", "model"],
        ["--config", str(prices), "usage", "--by", "tool"],
    ]  # fmt: skip
    for args in examples:
        full = ["--db", str(path), *args]
        click.secho("$ roomscope " + shlex.join(full), bold=True)
        cli.main(full, prog_name="roomscope", standalone_mode=False)
        click.echo()
    db_arg = shlex.quote(str(path))
    click.echo("Try next:")
    for hint in (
        "rooms",
        f"session logs {session} --severity warn",
        "session metrics studio-render-42",
        "traces --room studio --name llm -o json",
        f"--config {shlex.quote(str(prices))} usage --by room",
        'sql "SELECT name, count(*) FROM spans GROUP BY name"',
    ):
        click.echo(f"  roomscope --db {db_arg} {hint}")
    click.echo(
        f"Or keep a collector running on it (roomscope serve --db {db_arg}) and query it with"
        " --server http://127.0.0.1:4320 while it collects."
    )
