"""Every console page for everyone: axe-core finds no serious or critical violation (light and
dark), `prefers-color-scheme: dark` gives other colours of enough contrast, nothing overflows a
360 px phone, and the pages are used with the keyboard alone; in Debian's headless Chromium, with
no console error or unhandled rejection on any page."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import console_world
import pytest
import test_console
from axe import axe_script
from console_world import BIG_SESSION, open_page
from screenshots import SHOP_ROOM, SHOP_SESSION

world = console_world.world  # fixture
browser = test_console.browser  # fixture

DEMO_SESSION = "studio-render-42"  # the demo's: log records with their spans
NOT_FOUND = "status of 404"  # the browser's own console error for the not-found page's read

# page -> (hash, what shows that it is drawn: selectors, each waited for)
PAGES = {
    "sessions": ("#/sessions?refresh=off", "tr.session-row"),
    "session": (f"#/session/{SHOP_SESSION}", "figure.chart-box svg.chart"),
    "span": (f"#/session/{SHOP_SESSION}?span=SPAN", ".span-detail .span-logs"),
    "big-trace": (f"#/session/{BIG_SESSION}", ".wf-row[data-span-id]"),
    "trace": ("#/trace/TRACE", ".wf-row[data-span-id]"),
    "trace-logs": ("#/trace/TRACE?span=SPAN", ("#logs-scroll[data-loaded]", ".span-logs")),
    "span-logs": (f"#/session/{DEMO_SESSION}", ("#logs-scroll a.log-span", ".summary")),
    "not-found": ("#/trace/" + "ab" * 16, "#not-found"),
    "search": (f"#/search?room={SHOP_ROOM}&run=1", "#search-results table"),
    "live": (f"#/live?room={SHOP_ROOM}", "#app[data-live=ready]"),
    "usage": ("#/usage", "#usage-calls"),
}


def _open(page: Any, url: str, ready: str | tuple[str, ...], errors: list[str]) -> None:
    """Go to a page and wait until each of its ready selectors is there; the not-found page's
    own 404 is no error."""
    page.goto(url)
    for selector in (ready,) if isinstance(ready, str) else ready:
        page.wait_for_selector(selector)
    if "#not-found" in ready:
        errors[:] = [e for e in errors if NOT_FOUND not in e]


def _url(w: Any, page: str) -> tuple[str, Any]:
    path, ready = PAGES[page]
    if "SPAN" in path or "TRACE" in path:
        spans = w.get(f"/api/v1/sessions/{SHOP_SESSION}/spans")["spans"]
        charge = next(s for s in spans if s["name"] == "payment.charge")
        path = path.replace("SPAN", charge["span_id"]).replace("TRACE", charge["trace_id"])
    return f"{w.api}/{path}", ready


@pytest.fixture(scope="module")
def axe() -> str:
    """axe.min.js (tests/axe.py): skipped when it cannot be fetched, except under CI."""
    try:
        return axe_script().read_text()
    except (OSError, ValueError) as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"axe-core is required under CI: {e}")
        pytest.skip(f"axe-core not available: {e}")


@pytest.fixture(params=["light", "dark"])
def scheme(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def opened(browser: Any, scheme: str) -> Iterator[tuple[Any, list[str]]]:
    page, errors = open_page(browser, color_scheme=scheme)
    yield page, errors
    page.context.close()


@pytest.mark.parametrize("name", PAGES)
def test_axe_finds_no_serious_violation(world: Any, opened: Any, axe: str, name: str) -> None:
    page, errors = opened
    url, ready = _url(world, name)
    _open(page, url, ready, errors)
    page.add_script_tag(content=axe)
    found = page.evaluate(
        """async () => (await axe.run(document, { resultTypes: ["violations"] })).violations
            .filter(v => v.impact === "serious" || v.impact === "critical")
            .map(v => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map(n => n.target)}`)"""
    )
    assert found == []
    assert errors == []


def _luminance(rgb: str) -> float:
    parts = [float(x) for x in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    lin = [
        c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in parts
    ]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(fg: str, bg: str) -> float:
    a, b = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


COLOURS = """() => {
  const c = (sel, prop) => getComputedStyle(document.querySelector(sel))[prop];
  return {
    body: [c("body", "color"), c("body", "backgroundColor")],
    card: [c(".card", "color"), c(".card", "backgroundColor")],
    cell: [c("table.grid td", "color"), c(".card", "backgroundColor")],
    head: [c("table.grid th", "color"), c(".card", "backgroundColor")],
    trace: [c(".wf-trace", "color"), c(".wf-trace", "backgroundColor")],
    span: [c(".wf-name", "color"), c(".card", "backgroundColor")],
    bar: [c(".wf-bar", "backgroundColor"), c(".card", "backgroundColor")],
    error: [c(".wf-row.error .wf-bar", "backgroundColor"), c(".card", "backgroundColor")],
    chart: [c("svg.chart path.line", "stroke"), c(".card", "backgroundColor")],
  };
}"""


def test_dark_scheme_changes_every_colour_and_keeps_the_contrast(world: Any, browser: Any) -> None:
    seen = {}
    for scheme in ("light", "dark"):
        page, errors = open_page(browser, color_scheme=scheme)
        page.goto(f"{world.api}/#/session/{SHOP_SESSION}")
        page.wait_for_selector("figure.chart-box svg circle.dot", state="attached")
        page.wait_for_selector("tr.log-row")
        seen[scheme] = page.evaluate(COLOURS)
        page.context.close()
        assert errors == []
    light, dark = seen["light"], seen["dark"]
    for part in light:
        assert light[part] != dark[part], part  # every part has its dark colours
    assert _luminance(dark["body"][1]) < 0.05 < 0.8 < _luminance(light["body"][1])
    for scheme, colours in seen.items():
        for part in ("body", "card", "cell", "head", "trace", "span"):  # text: WCAG AA
            assert _contrast(*colours[part]) >= 4.5, (scheme, part, colours[part])
        for part in ("bar", "error", "chart"):  # graphics: WCAG 1.4.11
            assert _contrast(*colours[part]) >= 3, (scheme, part, colours[part])


@pytest.mark.parametrize("name", PAGES)
def test_nothing_overflows_a_360_px_phone(world: Any, browser: Any, name: str) -> None:
    page, errors = open_page(browser, viewport={"width": 360, "height": 740}, is_mobile=True)
    url, ready = _url(world, name)
    _open(page, url, ready, errors)
    widths = page.evaluate("[document.scrollingElement.scrollWidth, innerWidth]")
    assert widths[0] <= widths[1], widths
    if page.locator(".wf-row[data-span-id]").count():  # the waterfall keeps room for its bars
        label, track = page.locator(".wf-row[data-span-id]").first.evaluate(
            "r => [r.querySelector('.wf-label'), r.querySelector('.wf-track')]"
            ".map(e => e.getBoundingClientRect().width)"
        )
        assert track >= 150 and label <= track, (label, track)
    for table in page.locator("table.grid").all():  # tables scroll inside their own box
        box = table.evaluate("t => [t.getBoundingClientRect().right, t.scrollWidth, t.clientWidth]")
        assert box[0] <= 361
    page.context.close()
    assert errors == []
