"""The console's waterfall tools (collapse, find, zoom, critical path, duration labels) on a trace
of 600 spans, and its metric charts (time axis, y ticks and unit, hover read-out equal to the stored
point, p50 over p99, DELTA counters as rates), in Debian's headless Chromium (Playwright)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import console_world
import pytest
import test_console
from console_world import BIG_SESSION, DELTA_SESSION, LEAVES, MIDS, big_trace_names, open_page
from screenshots import SHOP_SESSION

world, clean_page = console_world.world, console_world.clean_page  # fixtures
browser = test_console.browser  # fixture
ALL_ROWS = 1 + 600  # the trace's header and its spans


def _rows(page: Any) -> int:
    return int(page.locator(".waterfall").get_attribute("data-rows"))


def _names(page: Any) -> list[str]:
    return page.locator(".wf-row[data-span-id]").evaluate_all("rs => rs.map(r => r.dataset.name)")


def _open_big(page: Any, api: str) -> None:
    """The session page, once nothing above the waterfall moves any more: the summary (and an
    active session's follow bar) is drawn after the waterfall and pushes it ~115 px down; a click
    whose mouseup comes after that lands on the summary, not on the tool pressed."""
    page.goto(f"{api}/#/session/{BIG_SESSION}")
    page.wait_for_selector(".wf-row[data-span-id]")
    page.wait_for_selector(".summary")


def test_collapse_hides_a_subtree_and_expand_shows_it_again(world: Any, clean_page: Any) -> None:
    page = clean_page
    _open_big(page, world.api)
    assert _rows(page) == ALL_ROWS
    shown = [(n, int(d)) for n, d in page.locator(".wf-row[data-span-id]").evaluate_all(
        "rs => rs.map(r => [r.dataset.name, r.dataset.depth])")]  # fmt: skip
    assert shown == big_trace_names()[: len(shown)]
    step0 = page.locator(".wf-row[data-name='llm.step.0']")
    assert step0.get_attribute("aria-expanded") == "true"
    step0.locator(".wf-toggle").click()
    assert _rows(page) == ALL_ROWS - LEAVES
    assert page.locator(".wf-row[data-name='llm.step.0']").get_attribute("aria-expanded") == "false"
    assert _names(page)[:3] == ["agent.run", "llm.step.0", "llm.step.1"]
    assert page.locator(".wf-row[data-name='llm.step.0'] .wf-hidden").inner_text() == f"+{LEAVES}"
    page.locator(".wf-row[data-name='llm.step.0'] .wf-toggle").click()
    assert _rows(page) == ALL_ROWS and _names(page)[2] == big_trace_names()[2][0]
    page.locator(".wf-collapse-all").click()
    assert _rows(page) == 2 and _names(page) == ["agent.run"]  # the header and the root
    page.locator(".wf-expand-all").click()
    assert _rows(page) == ALL_ROWS
    page.locator(".wf-trace .wf-toggle").click()  # a whole trace
    assert _rows(page) == 1


def test_find_counts_matches_and_steps_through_them_into_collapsed_subtrees(
    world: Any,
    clean_page: Any,
) -> None:
    page = clean_page
    _open_big(page, world.api)
    want = [i for i, (name, _d) in enumerate(big_trace_names()) if name == "db.query"]
    page.locator(".wf-collapse-all").click()
    page.locator(".wf-find").fill("DB.QUERY")  # any case
    matches = f"document.querySelector('.waterfall').dataset.matches === '{len(want)}'"
    page.wait_for_function(matches)
    assert page.locator(".wf-count").inner_text() == f"0 of {len(want)}"
    page.locator(".wf-find").press("Enter")  # the first match: its ancestors expanded, shown
    assert page.locator(".wf-count").inner_text() == f"1 of {len(want)}"
    current = page.locator(".wf-row.current")
    assert current.get_attribute("data-name") == "db.query" and current.is_visible()
    assert "match" in current.get_attribute("class")
    page.locator(".wf-find").press("Shift+Enter")  # back past the first: the last one
    assert page.locator(".wf-count").inner_text() == f"{len(want)} of {len(want)}"
    assert page.locator(".wf-row.current").get_attribute("data-name") == "db.query"
    page.locator(".wf-next").click()
    assert page.locator(".wf-count").inner_text() == f"1 of {len(want)}"
    page.locator(".wf-find").fill("no such span")
    page.wait_for_function("document.querySelector('.waterfall').dataset.matches === '0'")
    assert page.locator(".wf-count").inner_text() == "no match"
    assert page.locator(".wf-row.match").count() == 0


def test_zoom_by_dragging_on_the_axis_and_reset(world: Any, clean_page: Any) -> None:
    page = clean_page
    _open_big(page, world.api)
    axis = page.locator(".wf-axis").bounding_box()
    assert axis
    y = axis["y"] + axis["height"] / 2
    page.mouse.move(axis["x"] + axis["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(axis["x"] + axis["width"] * 0.5, y, steps=4)
    page.mouse.up()
    zoom = page.locator(".waterfall").get_attribute("data-zoom")
    lo, hi = (float(x) for x in zoom.split("-"))
    assert abs(lo - 0.25) < 0.01 and abs(hi - 0.5) < 0.01
    ticks = page.locator(".wf-axis .wf-tick").evaluate_all("ts => ts.map(t => +t.dataset.t)")
    root = world.get(f"/api/v1/sessions/{BIG_SESSION}/spans", limit=1000)["spans"]
    trace_ms = max(s["duration_ns"] for s in root) / 1e6
    assert len(ticks) >= 3 and all(lo * trace_ms - 1e-6 <= t <= hi * trace_ms + 1e-6 for t in ticks)
    bar = page.locator(".wf-row[data-name='agent.run'] .wf-bar")
    left, width = bar.evaluate("b => [parseFloat(b.style.left), parseFloat(b.style.width)]")
    assert abs(left + 100) < 5 and abs(width - 400) < 20  # 4× wider, starting off the left edge
    page.locator(".wf-zoom-reset").click()
    assert page.locator(".waterfall").get_attribute("data-zoom") == ""
    assert bar.evaluate("b => [parseFloat(b.style.left), parseFloat(b.style.width)]") == [0, 100]
    page.locator(".wf-zoom-in").click()
    page.locator(".wf-zoom-in").click()
    assert page.locator(".waterfall").get_attribute("data-zoom") == "0.3750-0.6250"
    page.locator(".wf-zoom-out").click()
    assert page.locator(".waterfall").get_attribute("data-zoom") == "0.2500-0.7500"


def test_critical_path_marks_the_spans_the_trace_waited_for(world: Any, clean_page: Any) -> None:
    """Each step's tool calls overlap (3 ms long, 1 ms apart): the path goes back from the last
    one to the one that ended before it started, every third call; steps run in sequence."""
    page = clean_page
    _open_big(page, world.api)
    page.locator(".wf-critical").click()
    on_path = 1 + 1 + MIDS + MIDS * len(range(0, LEAVES, 3))  # root, final answer, steps, calls
    assert page.locator(".waterfall").get_attribute("data-critical") == str(on_path)
    calls = page.locator(".wf-row").evaluate_all(
        "rs => rs.filter(r => r.dataset.depth === '2').slice(0, 25)"
        ".map(r => r.classList.contains('critical'))"
    )
    assert [i for i, c in enumerate(calls) if c] == list(range(0, LEAVES, 3))
    assert page.locator(".wf-critical").get_attribute("aria-pressed") == "true"
    page.locator(".wf-critical").click()
    assert page.locator(".wf-row.critical").count() == 0


@pytest.mark.parametrize("width", [1360, 600, 360])
def test_duration_labels_are_whole_and_outside_narrow_bars(
    world: Any,
    browser: Any,
    width: int,
) -> None:
    page, errors = open_page(browser, viewport={"width": width, "height": 800})
    _open_big(page, world.api)
    boxes = page.locator(".wf-row[data-span-id]").evaluate_all(
        """rs => rs.map(r => {
          const d = r.querySelector('.wf-dur'), l = d.getBoundingClientRect();
          const b = r.querySelector('.wf-bar').getBoundingClientRect();
          const t = r.querySelector('.wf-track').getBoundingClientRect();
          return [d.textContent, d.classList.contains('inside'), l.left, l.right, b.left, b.right,
                  t.left, t.right, d.scrollWidth <= d.clientWidth + 1];
        })"""
    )
    assert len(boxes) > 10
    for text, inside, ll, lr, bl, br, tl, tr, whole in boxes:
        assert text.endswith(("ms", "µs", "s")) and text[0].isdigit() and whole, text
        assert tl - 1 <= ll and lr <= tr + 1, (text, ll, lr, tl, tr)  # within the track
        if inside:
            assert bl - 1 <= ll and lr <= br + 1  # inside only a bar it fits in
        else:
            assert lr <= bl + 1 or ll >= br - 1, (text, ll, lr, bl, br)  # beside its bar
    page.context.close()
    assert not errors, errors


def _hover_each_point(page: Any, chart: Any) -> list[tuple[str, float, str]]:
    """Move the mouse onto each of the chart's dots: (series, value, time) the read-out shows."""
    seen = []
    for dot in chart.locator("circle.dot").all():
        box = dot.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        data = chart.evaluate(
            "c => [c.dataset.hoverLabel, +c.dataset.hoverValue, c.dataset.hoverTime]"
        )
        seen.append((data[0], data[1], data[2]))
    return seen


def _ms(ts: str) -> str:
    """An API time (RFC 3339, ns) at millisecond precision, as JavaScript's toISOString."""
    return ts[:23] + "Z"


def test_chart_hover_shows_the_stored_points_with_axes_and_unit(
    world: Any,
    clean_page: Any,
) -> None:
    page = clean_page
    page.goto(f"{world.api}/#/session/{SHOP_SESSION}")
    page.wait_for_selector(".summary")  # drawn late, it moves the charts down (see _open_big)
    fig = page.locator("figure.chart-box[data-metric='checkout.latency']")
    fig.locator("svg circle.dot").first.wait_for()
    chart = fig.locator("svg.chart").first
    (series,) = [s for s in world.get(f"/api/v1/sessions/{SHOP_SESSION}/metric_series")["series"]
                 if s["name"] == "checkout.latency"]  # fmt: skip
    points = [p for p in series["points"] if p["p50"] is not None]  # empty intervals are gaps
    stored = {(q, p[q], _ms(p["time"])) for p in points for q in ("p50", "p99")}
    assert set(_hover_each_point(page, chart)) == stored
    assert "p50" in chart.locator("text.read").text_content()
    # p50 is drawn over p99 (later in the document), solid, p99 dashed
    paths = chart.locator("path.line").evaluate_all(
        "ps => ps.map(p => [p.classList[1], getComputedStyle(p).strokeDasharray])"
    )
    assert [c for c, _ in paths] == ["p99", "p50"] and paths[1][1] == "none" != paths[0][1]
    assert chart.locator("text.unit").text_content() == "ms"
    assert chart.locator("text.ytick").count() >= 3
    assert chart.locator("text.xtick").count() >= 1


def test_delta_counter_is_drawn_as_a_rate_per_second(world: Any, clean_page: Any) -> None:
    page = clean_page
    (series,) = world.get(f"/api/v1/sessions/{DELTA_SESSION}/metric_series")["series"]
    assert series["type"] == "sum" and series["temporality"] == "delta"
    raw = world.get(f"/api/v1/sessions/{DELTA_SESSION}/metrics", limit=100)["metrics"]
    for point, row in zip(series["points"], sorted(raw, key=lambda r: r["time"]), strict=True):
        seconds = (_ns(row["time"]) - _ns(row["start_time"])) / 1e9
        assert point["value"] == row["value"]
        assert point["rate"] == pytest.approx(row["value"] / seconds, rel=1e-9)
    page.goto(f"{world.api}/#/session/{DELTA_SESSION}")
    page.wait_for_selector(".summary")  # drawn late, it moves the charts down (see _open_big)
    fig = page.locator("figure.chart-box[data-metric='messages.sent']")
    fig.locator("svg circle.dot").first.wait_for()
    assert "as rate per second" in fig.locator("figcaption").inner_text()
    chart = fig.locator("svg.chart")
    assert chart.locator("text.unit").text_content() == "{message}/s"
    got = sorted(_hover_each_point(page, chart), key=lambda r: r[2])
    assert [v for _l, v, _t in got] == [p["rate"] for p in series["points"]]
    assert [t for _l, _v, t in got] == [_ms(p["time"]) for p in series["points"]]


def _ns(ts: str) -> int:
    """RFC 3339 with nanoseconds -> epoch nanoseconds."""
    whole = datetime.fromisoformat(ts[:19] + "+00:00")
    return int(whole.timestamp()) * 10**9 + int(ts[20:29])
