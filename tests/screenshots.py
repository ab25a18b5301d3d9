"""The console's browser tooling, shared by ``tests/test_console.py``: Debian's Chromium driven by
Playwright, and the workloads the console tests show (sent through the real OTel SDK exporters).

Run as a script, it starts a collector on a fresh store, sends the demo workload plus these, and
writes ``docs/console-*.png`` (light) and ``docs/console-*-dark.png`` (``prefers-color-scheme:
dark``), each the first 1280×900 pixels of its page::

    python tests/screenshots.py
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, set_span_in_context

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from otel_sdk import pipeline

CHROMIUM = os.environ.get("ROOMSCOPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MS = 1_000_000
SHOP_ROOM, SHOP_SESSION = "shop", "shop-checkout-1"
PERF_ROOM, PERF_SESSION = "perf", "perf-5k"

# The shop session's one trace: (name, parent, start ms, duration ms, service, error), sent in a
# scrambled order; the waterfall must show it in this order with these depths.
SHOP_TRACE = [
    ("checkout", None, 0, 420, "web", False),
    ("auth.verify", "checkout", 3, 40, "auth", False),
    ("cart.load", "checkout", 50, 120, "cart", False),
    ("db.query", "cart.load", 60, 80, "cart", False),
    ("payment.charge", "checkout", 180, 230, "payments", True),
    ("card.tokenize", "payment.charge", 185, 30, "payments", False),
]
SHOP_DEPTHS = {"checkout": 0, "auth.verify": 1, "cart.load": 1, "db.query": 2}
SHOP_DEPTHS |= {"payment.charge": 1, "card.tokenize": 2}
SHOP_LOGS = [
    ("DEBUG", "cart has 3 items"),
    ("INFO", "checkout started for order 1001"),
    ("WARN", "payment provider slow: 230 ms"),
    ("ERROR", "payment declined: card expired"),
    ("INFO", "checkout finished for order 1001"),
]


def chromium_missing() -> str | None:
    """Why the browser tests can't run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not installed (tests/install-browser.sh installs Debian's chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed (pip install -e '.[test]')"
    return None


def launch(pw: Any) -> Any:
    """Debian's Chromium, headless, with a fresh profile (Playwright makes a temp user-data-dir)."""
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def send_shop_session(http_url: str, grpc_endpoint: str, base_ns: int | None = None) -> None:
    """The shop session: one nested trace (one error, an event, a link), logs, a histogram."""
    base = base_ns or time.time_ns() - 60_000 * MS
    tags = {"room": SHOP_ROOM, "session": SHOP_SESSION, "project": "demo"}
    p = pipeline("grpc", http_url, grpc_endpoint, {"service.name": "web", **tags})
    tracer = p.tracer("shop")
    spans: dict[str, Any] = {}
    for name, parent, start, _dur, service, _err in SHOP_TRACE:
        ctx = set_span_in_context(spans[parent]) if parent else None
        links = [Link(spans["auth.verify"].get_span_context())] if name == "db.query" else None
        spans[name] = tracer.start_span(
            name,
            context=ctx,
            kind=SpanKind.SERVER if parent is None else SpanKind.INTERNAL,
            attributes={"peer.service": service, "order.id": "1001"},
            start_time=base + start * MS,
            links=links,
        )
    # End in a scrambled order: children before parents, later siblings first.
    for name, _parent, start, dur, _service, err in sorted(SHOP_TRACE, key=lambda r: -r[2]):
        span = spans[name]
        if err:
            span.set_status(Status(StatusCode.ERROR, "card expired"))
            span.add_event("exception", {"exception.message": "card expired"}, base + 400 * MS)
        span.end(end_time=base + (start + dur) * MS)
    log = p.logger("shop")
    for level, text in SHOP_LOGS:
        getattr(log, level.lower() if level != "WARN" else "warning")(text)
    hist = p.meter("shop").create_histogram("checkout.latency", unit="ms")
    for v in (120, 180, 250, 420, 900):
        hist.record(v, {"room": SHOP_ROOM, "session": SHOP_SESSION})
    p.shutdown()


def send_many_spans(grpc_endpoint: str, n: int = 5000, per_trace: int = 50) -> None:
    """A session of ``n`` spans: traces of ``per_trace`` spans, three levels deep."""
    res = Resource.create({"service.name": "load", "room": PERF_ROOM, "session": PERF_SESSION})
    tp = TracerProvider(resource=res)
    exporter = OTLPSpanExporter(endpoint=grpc_endpoint, insecure=True)
    tp.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=n + 10, max_export_batch_size=1000)
    )
    tracer = tp.get_tracer("perf")
    t = time.time_ns() - 120_000 * MS
    for _trace in range(n // per_trace):
        root = tracer.start_span("request", start_time=t)
        parent, made = root, 1
        while made < per_trace:
            child = tracer.start_span(
                f"step.{made}", context=set_span_in_context(root), start_time=t + made * MS
            )
            made += 1
            if made < per_trace:
                leaf = tracer.start_span(
                    "leaf", context=set_span_in_context(child), start_time=t + made * MS
                )
                leaf.end(end_time=t + (made + 1) * MS)
                made += 1
            child.end(end_time=t + (made + 1) * MS)
            parent = child
        root.end(end_time=t + (per_trace + 2) * MS)
        del parent
        t += 100 * MS
    tp.force_flush()
    tp.shutdown()


def send_live_span(
    http_url: str,
    grpc_endpoint: str,
    name: str,
    room: str = SHOP_ROOM,
    headers: dict[str, str] | None = None,
) -> None:
    """One span and one log record (``<name> finished``) of ``room``; ``headers``: e.g. an
    ingest token's ``authorization``."""
    resource = {"service.name": "web", "room": room}
    p = pipeline("http", http_url, grpc_endpoint, resource, headers=headers)
    span = p.tracer("live").start_span(name, attributes={"live": "yes"})
    span.end()
    p.log = p.logger("live")
    p.log.warning(f"{name} finished")
    p.shutdown()


def sse_events(chunks: Iterator[bytes]) -> Iterator[tuple[str, Any]]:
    """Server-sent events of a raw body: (event, parsed data); ':' comment frames skipped."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            lines = [line for line in block.decode().splitlines() if not line.startswith(":")]
            fields = dict(line.split(": ", 1) for line in lines)
            if "data" in fields:
                yield fields["event"], json.loads(fields["data"])


NOT_CONNECTING = "!document.querySelector('#session-live.follow-connecting')"


def take_screenshots(
    api_url: str, http_url: str, grpc_endpoint: str, out: Path, scheme: str = "light"
) -> list[Path]:
    from playwright.sync_api import sync_playwright

    shots = []
    end = "" if scheme == "light" else f"-{scheme}"
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme=scheme)
        page.goto(f"{api_url}/#/sessions")
        page.wait_for_selector("tr.session-row")
        shots.append(out / f"console-sessions{end}.png")
        page.screenshot(path=shots[-1])
        page.goto(f"{api_url}/#/session/studio-render-42")
        page.wait_for_selector(".wf-row[data-span-id]")
        page.wait_for_selector("figure.chart-box")
        page.wait_for_selector("tr.log-row")
        page.locator(".wf-row.error").first.click()
        page.wait_for_selector(".span-detail .span-logs")  # the span's own log records
        page.wait_for_function(NOT_CONNECTING)  # an active session: following it
        shots.append(out / f"console-session{end}.png")
        page.screenshot(path=shots[-1])
        page.wait_for_selector("li.ev")
        chart = page.locator("figure.chart-box[data-metric='llm.latency'] svg.chart").first
        chart.hover()  # the read-out of the point nearest the pointer
        shots.append(out / f"console-timeline-metrics{end}.png")
        page.locator("main > .two").last.screenshot(path=shots[-1])
        page.goto(f"{api_url}/#/session/{SHOP_SESSION}?severity=info")
        page.wait_for_selector(".wf-row[data-span-id]")
        page.locator(".wf-row[data-name='payment.charge']").click()
        page.wait_for_selector("tr.log-row")
        page.wait_for_selector("figure.chart-box")
        shots.append(out / f"console-waterfall{end}.png")
        page.screenshot(path=shots[-1])
        page.goto(f"{api_url}/#/search?room=studio&min_duration=1s&attrs=status%3Derror&run=1")
        page.wait_for_selector("#search-count")
        page.wait_for_selector("#search-scatter circle.dot")
        shots.append(out / f"console-search{end}.png")
        page.screenshot(path=shots[-1])
        page.goto(f"{api_url}/#/live?room={SHOP_ROOM}")
        page.wait_for_selector("#app[data-live=ready]")
        for i in range(3):
            send_live_span(http_url, grpc_endpoint, f"live.request.{i}")
        page.wait_for_selector("#live-spans tr[data-name='live.request.2']")
        shots.append(out / f"console-live{end}.png")
        page.screenshot(path=shots[-1])
        page.goto(f"{api_url}/#/usage")
        page.wait_for_selector("#usage-calls")
        shots.append(out / f"console-usage{end}.png")
        page.screenshot(path=shots[-1])
        browser.close()
    return shots


def main() -> None:
    from conftest import make_settings

    from query.cli.demo import send_workload
    from query.http.serving import serving_thread

    reason = chromium_missing()
    if reason:
        sys.exit(f"screenshots: {reason}")
    tmp = Path(tempfile.mkdtemp(prefix="roomscope-shots-"))
    out = Path(__file__).parent.parent / "docs"
    thread = serving_thread(make_settings(tmp / "shots.duckdb"))
    c = thread.start()
    api = f"http://127.0.0.1:{c.ports['api']}"
    http = f"http://127.0.0.1:{c.ports['http']}"
    grpc = f"127.0.0.1:{c.ports['grpc']}"
    try:
        send_workload(grpc)
        send_shop_session(http, grpc)
        for scheme in ("light", "dark"):
            for path in take_screenshots(api, http, grpc, out, scheme):
                print(path)
    finally:
        thread.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
