"""The web console end to end: a collector filled through the OTel SDK exporters, the console
opened in Debian's headless Chromium (Playwright), and the console's API additions (live tail
over server-sent events, metric series, static assets)."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import make_settings
from screenshots import (
    PERF_SESSION,
    SHOP_DEPTHS,
    SHOP_LOGS,
    SHOP_ROOM,
    SHOP_SESSION,
    SHOP_TRACE,
    chromium_missing,
    launch,
    send_live_span,
    send_many_spans,
    send_shop_session,
    sse_events,
)

from collector.auth import create_token
from query.cli.demo import send_workload
from query.http.console import STATIC
from query.http.live import LiveHub
from query.http.serving import serving_thread
from query.library.series import quantile

PAGE_LOAD_BUDGET_MS = 300


class Store:
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


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store(tmp_path_factory.mktemp("console") / "console.duckdb")
    try:
        send_workload(s.grpc)
        send_shop_session(s.http, s.grpc)
        send_many_spans(s.grpc)
        yield s
    finally:
        s.thread.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    p = context.new_page()
    p.set_default_timeout(15_000)
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    context.close()
    assert not errors, errors


# --- API additions (no browser) ---------------------------------------------------------------


def test_console_and_its_assets_are_served_by_roomscope(store: Store) -> None:
    index = httpx.get(store.api + "/", timeout=10)
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    refs = re.findall(r'(?:src|href)="([^"]+)"', index.text)
    assert "/static/js/app.js" in refs and all(r[0] in "/#" or r == "data:," for r in refs)
    for module in Path(STATIC, "js").glob("*.js"):  # every import is one of ours, relative
        imports = re.findall(r'from "([^"]+)"', module.read_text())
        assert all(i.startswith("./") for i in imports), module
    js = httpx.get(store.api + "/static/js/app.js", timeout=10)
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert httpx.get(store.api + "/static/nope.js", timeout=10).status_code == 404


def test_openapi_documents_the_live_and_metric_series_routes(store: Store) -> None:
    paths = store.get("/openapi.json")["paths"]
    live = paths["/api/v1/live"]["get"]
    assert [p["name"] for p in live["parameters"]] == ["room", "session", "limit"]
    assert "text/event-stream" in live["responses"]["200"]["content"]
    assert "/api/v1/sessions/{session_id}/metric_series" in paths
    r = httpx.get(store.api + "/api/v1/live", params={"nope": "1"}, timeout=10)
    assert r.status_code == 400 and "unknown parameter" in r.json()["error"]


def test_metric_series_turn_histograms_into_count_p50_p99(store: Store) -> None:
    series = store.get(f"/api/v1/sessions/{SHOP_SESSION}/metric_series")["series"]
    (hist,) = [s for s in series if s["name"] == "checkout.latency"]
    first = hist["points"][0]
    assert first["count"] == 5
    assert 100 <= first["p50"] <= 250 and 750 <= first["p99"] <= 900
    demo = store.get("/api/v1/sessions/studio-render-42/metric_series")["series"]
    assert {s["name"] for s in demo} == {"agent.turns", "llm.latency", "tools.queue.depth"}
    assert all("value" in s["points"][0] for s in demo if s["type"] != "histogram")
    r = httpx.get(store.api + "/api/v1/sessions/no-such/metric_series", timeout=10)
    assert r.status_code == 404


def test_quantile_interpolates_inside_the_bucket() -> None:
    assert quantile(0.5, [0, 4, 0], [10.0, 20.0], None, None) == 15.0
    assert quantile(0.5, [0, 0, 0], [10.0], None, None) is None
    assert quantile(1.0, [0, 0, 2], [10.0, 20.0], 5.0, 30.0) == 30.0


def test_live_without_event_stream_accept_is_a_json_snapshot(store: Store) -> None:
    snap = store.get("/api/v1/live", session=SHOP_SESSION, limit=3)
    assert len(snap["spans"]) == 3 and len(snap["logs"]) == 3
    assert {s["session_id"] for s in snap["spans"] + snap["logs"]} == {SHOP_SESSION}


def test_live_streams_new_spans_and_logs_of_the_room_only(store: Store) -> None:
    headers = {"Accept": "text/event-stream"}
    timeout = httpx.Timeout(10, read=15)
    with httpx.stream(
        "GET", store.api + "/api/v1/live", params={"room": "sse"}, headers=headers, timeout=timeout
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.iter_raw())
        assert next(events)[0] == "ready"
        send_live_span(store.http, store.grpc, "other.room.span", room="elsewhere")
        send_live_span(store.http, store.grpc, "sse.span", room="sse")
        got: list[tuple[str, str]] = []
        for kind, row in events:
            assert row["room"] == "sse"
            got.append((kind, row.get("name") or row.get("body")))
            if len(got) == 2:
                break
    assert sorted(got) == [("log", "sse.span finished"), ("span", "sse.span")]


def test_live_hub_runs_one_poller_for_all_subscribers_and_stops_without_them(
    store: Store,
) -> None:
    async def scenario() -> tuple[int, int, bool]:
        access = store.thread.collector.read_access()
        hub = LiveHub(access.cursor, access.accepting, poll_seconds=0.05)
        first, second = hub.stream(SHOP_ROOM, None), hub.stream(None, SHOP_SESSION)
        await first.__anext__()
        task = hub._task
        await second.__anext__()
        assert hub._task is task and len(hub.subscribers) == 2
        await asyncio.sleep(0.5)
        polls = hub.polls
        await first.aclose()
        assert hub._task is task  # one subscriber left: still polling
        await second.aclose()
        await asyncio.sleep(0)
        return polls, len(hub.subscribers), task is not None and task.cancelled()

    loop = store.thread._loop
    assert loop is not None
    polls, left, cancelled = asyncio.run_coroutine_threadsafe(scenario(), loop).result(10)
    assert 3 <= polls <= 12  # ~0.5 s / 0.05 s, once per tick for both subscribers
    assert left == 0 and cancelled


# --- the console in Chromium ------------------------------------------------------------------


def _waterfall(page: Any) -> list[tuple[str, int]]:
    rows = page.locator(".wf-row[data-span-id]")
    pairs = rows.evaluate_all("rs => rs.map(r => [r.dataset.name, r.dataset.depth])")
    return [(name, int(depth)) for name, depth in pairs]


def test_sessions_list_into_session_waterfall_in_nesting_and_order(store: Store, page: Any) -> None:
    page.goto(f"{store.api}/#/sessions")
    row = page.locator(f"tr.session-row[data-session-id='{SHOP_SESSION}']")
    assert row.locator("td").nth(2).inner_text() == SHOP_ROOM  # id, project, room, ...
    assert page.locator("tr.session-row").count() == len(store.get("/api/v1/sessions")["sessions"])
    page.locator("#sessions-room").select_option(SHOP_ROOM)
    page.wait_for_function("location.hash.includes('room=shop')")
    page.wait_for_function("document.querySelectorAll('tr.session-row').length === 1")
    page.locator(f"tr.session-row[data-session-id='{SHOP_SESSION}']").click()
    page.wait_for_selector(".wf-row[data-span-id]")
    assert page.url.endswith(f"#/session/{SHOP_SESSION}")
    assert page.locator(".summary h2").inner_text() == SHOP_SESSION
    # Depth-first, children by start time: exactly the order and nesting that was sent.
    assert _waterfall(page) == [(name, SHOP_DEPTHS[name]) for name, *_ in SHOP_TRACE]
    errors = page.locator(".wf-row.error").evaluate_all("rs => rs.map(r => r.dataset.name)")
    assert errors == [name for name, *_rest, err in SHOP_TRACE if err]
    # Bars on the trace's time axis: the child starts after its parent and fits inside it.
    bars = page.locator(".wf-row[data-span-id] .wf-bar").evaluate_all(
        "bs => bs.map(b => [parseFloat(b.style.left), parseFloat(b.style.width)])"
    )
    assert bars[0] == [0, 100] and all(0 <= left < 100 for left, _w in bars)
    assert bars[4][0] > bars[2][0] > bars[1][0]  # payment.charge after cart.load after auth
    _assert_time_axis(page, trace_ms=420)
    page.locator(".wf-row[data-name='payment.charge']").click()
    detail = page.locator(".span-detail")
    assert "ERROR: card expired" in detail.inner_text()
    assert "exception" in detail.locator("ul.events").inner_text()
    assert "span=" in page.url
    page.locator(".wf-row[data-name='db.query']").click()
    assert page.locator(".span-detail ul.links li").count() == 1
    page.wait_for_selector("figure.chart-box[data-metric='checkout.latency'] svg circle")
    timeline = page.locator(".ev").evaluate_all("es => es.map(e => e.dataset.type)")
    assert timeline[0] == "session.started" and "span.error" in timeline


def _assert_time_axis(page: Any, trace_ms: float) -> None:
    """The waterfall header's ticks: nice 1/2/5 steps from 0 across the trace, 4 to 10 of them,
    each over one of the grid lines that run through the trace's rows."""
    ticks = page.locator(".wf-axis .wf-tick").evaluate_all(
        "ts => ts.map(t => [parseFloat(t.dataset.t), t.textContent,"
        " t.getBoundingClientRect().left + (t.classList.contains('first') ? 0"
        " : t.getBoundingClientRect().width / 2)])"
    )
    values = [t for t, _label, _x in ticks]
    assert 4 <= len(ticks) <= 10, ticks
    assert values[0] == 0 and ticks[0][1] == "0"
    assert all(a < b for a, b in itertools.pairwise(values)), values
    step = values[1]
    assert all(abs(v - i * step) < 1e-6 for i, v in enumerate(values)) and values[-1] <= trace_ms
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(abs(mantissa - m) < 1e-9 for m in (1, 2, 5)), step
    assert all(re.fullmatch(r"\d+(\.\d+)? (ns|µs|ms|s)", label) for _t, label, _x in ticks[1:])
    # The grid lines under the first trace's rows sit right under the ticks (same track).
    grid = page.locator(".wf-grid").first.locator(".wf-gridline")
    lines = grid.evaluate_all("ls => ls.map(l => l.getBoundingClientRect().left)")
    assert len(lines) == len(ticks) - 1
    assert all(abs(x - line) <= 1.5 for (_t, _l, x), line in zip(ticks[1:], lines, strict=True))


def test_logs_filter_by_severity_and_text(store: Store, page: Any) -> None:
    """The filters are the server's (severity, grep): the table shows what it answers."""
    from playwright.sync_api import expect

    page.goto(f"{store.api}/#/session/{SHOP_SESSION}")
    page.wait_for_selector("tr.log-row")
    rows = page.locator("tr.log-row td.body")
    expect(rows).to_have_text([text for _lvl, text in SHOP_LOGS])
    page.locator("#log-severity").select_option("WARN")
    expect(rows).to_have_text([text for lvl, text in SHOP_LOGS if lvl in ("WARN", "ERROR")])
    page.locator("#log-severity").select_option("")
    page.locator("#log-grep").fill("ORDER 1001")
    expect(rows).to_have_text([text for _lvl, text in SHOP_LOGS if "order 1001" in text])
    assert "grep=ORDER" in page.url
    page.reload()  # the URL holds the filter
    page.wait_for_selector("tr.log-row")
    assert page.locator("#log-grep").input_value() == "ORDER 1001"
    expect(rows).to_have_count(2)


def test_session_logs_are_read_a_page_at_a_time_as_the_table_scrolls(
    store: Store, page: Any
) -> None:
    """A session of more log records than a page (200): the first page, then more on scroll."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from playwright.sync_api import expect

    provider = LoggerProvider()
    provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(f"{store.http}/v1/logs"))
    )
    tags = {"room": "chatty", "session": "chatty-1"}
    start = time.time_ns() - 120 * 10**9
    for i in range(450):
        t = start + i * 10**6
        provider.get_logger("t").emit(
            LogRecord(timestamp=t, observed_timestamp=t, severity_number=SeverityNumber.INFO,
                      severity_text="INFO", body=f"line {i:03d}", attributes=tags)
        )  # fmt: skip
    provider.shutdown()
    busiest = {"session_id": "chatty-1", "log_count": 450}
    deadline = time.monotonic() + 30
    while (
        len(
            httpx.get(f"{store.api}/api/v1/sessions/chatty-1/logs?limit=1000")
            .json()
            .get("logs", [])
        )
        < 450
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    page.goto(f"{store.api}/#/session/{busiest['session_id']}")
    table = page.locator("#logs-scroll")
    expect(table).to_have_attribute("data-loaded", "100")  # the first page, small
    table.evaluate("el => el.scrollTop = el.scrollHeight")
    expect(table).to_have_attribute("data-loaded", "450")  # the next page (of 500) on scroll
    table.evaluate("el => el.scrollTop = el.scrollHeight")
    page.wait_for_selector("tr.log-row td.body >> text=line 449")
    # Only the rows in view are drawn; each at its place in time order (row i: line i).
    drawn = page.locator("tr.log-row").evaluate_all(
        "rs => rs.map(r => [Number(r.dataset.index), r.querySelector('td.body').textContent])"
    )
    assert 10 < len(drawn) < 100
    assert all(body == f"line {i:03d}" for i, body in drawn)
    assert [i for i, _ in drawn] == list(range(drawn[0][0], drawn[0][0] + len(drawn)))
    assert page.locator("#logs-more").inner_text() == ""


def test_session_list_shows_the_total_and_reads_more_pages(store: Store, page: Any) -> None:
    """#/sessions?limit=2: pages of two sessions, a total, a more button until the last page;
    the rows are the API's list in its order, each session once."""
    everything = store.get("/api/v1/sessions", limit=10_000)["sessions"]
    assert len(everything) > 4
    page.goto(f"{store.api}/#/sessions?limit=2&refresh=off")
    page.wait_for_selector("tr.session-row")
    total = page.locator("#sessions-total")
    assert total.get_attribute("data-total") == str(len(everything))
    assert total.inner_text() == f"2 of {len(everything)} sessions"
    shown = 2
    while shown < len(everything):
        assert page.locator("#sessions-more").is_visible()
        page.locator("#sessions-more").click()
        shown = min(shown + 2, len(everything))
        page.wait_for_function(f"document.querySelectorAll('tr.session-row').length === {shown}")
    assert page.locator("#sessions-more").is_hidden()
    ids = page.locator("tr.session-row").evaluate_all("rs => rs.map(r => r.dataset.sessionId)")
    assert ids == [s["session_id"] for s in everything]
    assert total.inner_text() == f"{len(everything)} of {len(everything)} sessions"


def test_search_runs_from_the_form_keeps_the_query_in_the_url_and_links_to_the_trace(
    store: Store, page: Any
) -> None:
    page.goto(f"{store.api}/#/search")
    page.locator("#search-room").fill(SHOP_ROOM)
    page.locator("#search-min_duration").fill("100ms")
    page.locator("#search-max_duration").fill("0.3s")
    page.locator("#search-attrs").fill("order.id=1001")
    page.locator("#search-form button[type=submit]").click()
    page.wait_for_selector("#search-count")
    assert "min_duration=100ms" in page.url and "attrs=order.id%3D1001" in page.url
    want = {n for n, _p, _s, dur, _svc, _e in SHOP_TRACE if 100 <= dur <= 300}
    (row,) = page.locator("tr.trace-row").all()  # one trace: the shop's
    assert row.locator(".trace-root").inner_text() == "web: checkout"
    assert row.locator(".trace-spans").inner_text() == str(len(SHOP_TRACE))
    names = [m.split(" ")[0] for m in row.locator("a.matched-span").all_inner_texts()]
    assert set(names) == want == {"cart.load", "payment.charge"}
    api = store.get(
        "/api/v1/traces", room=SHOP_ROOM, min_duration="100ms", max_duration="0.3s",
        attrs="order.id=1001",
    )["spans"]  # fmt: skip
    assert names == [s["name"] for s in api]  # the same spans, newest first
    page.reload()  # a shared URL runs the same search
    page.wait_for_selector("#search-count")
    assert page.locator("#search-min_duration").input_value() == "100ms"
    page.locator("a.matched-span", has_text="payment.charge").click()
    page.wait_for_selector(".span-detail")
    assert page.locator(".span-detail h3").inner_text() == "payment.charge"
    assert page.locator(".wf-row.selected").get_attribute("data-name") == "payment.charge"
    assert len(_waterfall(page)) == len(SHOP_TRACE)
    bad = f"{store.api}/#/search?min_duration=fast&run=1"
    page.goto(bad)
    assert "invalid duration" in page.locator("#search-error").inner_text()


def test_live_view_shows_a_span_sent_after_the_page_opened_and_pauses(
    store: Store, page: Any
) -> None:
    page.goto(f"{store.api}/#/live?room={SHOP_ROOM}")
    page.wait_for_selector("#app[data-live=ready]")
    assert page.locator("#live-spans tr[data-name='live.one']").count() == 0
    send_live_span(store.http, store.grpc, "live.one")
    page.wait_for_selector("#live-spans tr[data-name='live.one']")
    page.wait_for_selector("#live-logs td.body >> text=live.one finished")
    page.locator("#live-pause").click()
    assert page.locator("#live-state").inner_text() == "paused"
    send_live_span(store.http, store.grpc, "live.two")
    page.wait_for_function("document.body.innerText.includes('2 held')")  # span + log
    assert page.locator("#live-spans tr[data-name='live.two']").count() == 0
    page.locator("#live-pause").click()
    page.wait_for_selector("#live-spans tr[data-name='live.two']")
    first = page.locator("#live-spans tr").first.get_attribute("data-name")
    assert first == "live.two"  # newest on top


def test_live_view_with_auth_on_shows_only_the_query_tokens_project(
    start_collector: Any, tmp_path: Path, page: Any
) -> None:
    """Auth on: the console asks for the query token, then reads the event stream with it in the
    Authorization header (never in the URL) and shows the token's project's spans only."""
    tokens_file = tmp_path / "tokens.toml"
    query = create_token(tokens_file, "alpha", "query")
    ingest = {p: {"authorization": f"Bearer {create_token(tokens_file, p, 'ingest')}"}
              for p in ("alpha", "beta")}  # fmt: skip
    rc = start_collector(**{"auth.enabled": True, "auth.tokens_file": str(tokens_file)})
    streams: list[Any] = []
    page.on(
        "request",
        lambda r: (
            "/api/v1/live" in r.url
            and "event-stream" in r.headers.get("accept", "")
            and streams.append(r)
        ),
    )
    page.goto(f"{rc.api_url}/#/live?room=lobby")
    page.wait_for_selector("#token-dialog[open]")
    page.locator("#token-input").fill(query)
    page.locator("#token-save").click()
    page.wait_for_selector("#app[data-live=ready]")
    assert streams and streams[-1].headers.get("authorization") == f"Bearer {query}"
    assert all(query not in r.url for r in streams)
    send = lambda project, name: send_live_span(  # noqa: E731
        rc.http_url, rc.grpc_endpoint, name, room="lobby", headers=ingest[project]
    )
    send("beta", "beta.hidden")
    assert rc.query("SELECT count(*) FROM spans WHERE project = 'beta'") == [(1,)]
    send("alpha", "alpha.live")  # received after beta's: the stream would show beta's first
    page.wait_for_selector("#live-spans tr[data-name='alpha.live']")
    page.wait_for_selector("#live-logs td.body >> text=alpha.live finished")
    assert page.locator("#live-spans tr[data-name='beta.hidden']").count() == 0
    assert "beta.hidden" not in page.locator("#live-logs").inner_text()
    page.locator("#live-pause").click()  # pause and resume work on the token's stream too
    send("alpha", "alpha.held")
    page.wait_for_function("document.body.innerText.includes('2 held')")
    assert page.locator("#live-spans tr[data-name='alpha.held']").count() == 0
    page.locator("#live-pause").click()
    page.wait_for_selector("#live-spans tr[data-name='alpha.held']")


def test_session_of_5000_spans_loads_within_budget(store: Store, page: Any) -> None:
    """Navigation start → waterfall drawn (performance.now() at render), a fresh load each time;
    the machine's two cores are shared, so the best of three loads is held to the budget."""
    page.goto(f"{store.api}/#/session/{PERF_SESSION}")
    times = []
    for _ in range(3):
        page.reload()
        page.wait_for_function("window.__wfRendered !== undefined", timeout=30_000)
        times.append(page.evaluate("window.__wfRendered"))
    rows = int(page.locator(".waterfall").get_attribute("data-rows"))
    assert rows == 5000 + 100  # 5,000 spans and 100 trace headers, laid out in one pass
    assert page.locator(".wf-row[data-span-id]").count() < 100  # only visible rows in the DOM
    print(f"5,000-span session, navigation to waterfall rendered: {[round(t) for t in times]} ms")
    assert min(times) < PAGE_LOAD_BUDGET_MS
    page.locator(".wf-scroll").evaluate("el => el.scrollTop = el.scrollHeight")
    page.wait_for_selector(".wf-row[data-name='leaf'] >> nth=-1")
    page.locator(".wf-row[data-name='leaf'] >> nth=-1").click()  # details fetched per trace
    assert page.locator(".span-detail h3").inner_text() == "leaf"


def test_token_from_local_storage_is_sent_and_a_401_asks_for_one(store: Store, page: Any) -> None:
    seen: list[str | None] = []

    def guard(route: Any) -> None:
        auth = route.request.headers.get("authorization")
        seen.append(auth)
        if auth != "Bearer s3cret":
            route.fulfill(status=401, content_type="application/json", body='{"error": "token"}')
        else:
            route.continue_()

    page.route("**/api/v1/**", guard)
    page.goto(f"{store.api}/#/sessions")
    page.wait_for_selector("#token-dialog[open]")
    page.locator("#token-input").fill("s3cret")
    page.locator("#token-save").click()
    page.wait_for_selector("tr.session-row")
    assert seen[0] is None and seen[-1] == "Bearer s3cret"
    assert page.evaluate("localStorage.getItem('roomscope.token')") == "s3cret"
    start = time.monotonic()
    page.reload()
    page.wait_for_selector("tr.session-row")
    assert time.monotonic() - start < 15 and seen[-1] == "Bearer s3cret"
