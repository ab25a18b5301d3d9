"""The console with the keyboard alone (no click, no mouse): Tab into a list, arrow keys through its
rows, Enter to open, Esc to close the span panel, Left/Right to collapse and expand, `/` to
search; in Debian's headless Chromium, with no console error on the way."""

from __future__ import annotations

from typing import Any

import console_world
import test_console
from console_world import BIG_SESSION
from screenshots import SHOP_ROOM, SHOP_SESSION

world, clean_page = console_world.world, console_world.clean_page  # fixtures
browser = test_console.browser  # fixture

FOCUSED = """() => { const e = document.activeElement; if (!e) return null;
  return [e.tagName, e.className, e.dataset.name || e.dataset.sessionId || e.id || ""]; }"""


def _focused(page: Any) -> list[str]:
    return page.evaluate(FOCUSED)


def _tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Tab until the focused element matches selector (each Tab stop visited at most once)."""
    for _ in range(limit):
        if page.evaluate(f"document.activeElement.matches({selector!r})"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}; at {_focused(page)}")


def _press_until(page: Any, key: str, selector: str, limit: int = 60) -> None:
    for _ in range(limit):
        if page.evaluate(f"document.activeElement.matches({selector!r})"):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{key} never reached {selector}; at {_focused(page)}")


def test_sessions_rows_by_arrow_keys_and_enter_opens_one(world: Any, clean_page: Any) -> None:
    page = clean_page
    page.goto(f"{world.api}/#/sessions?refresh=off")
    page.wait_for_selector("tr.session-row")
    _tab_to(page, "tr.session-row")
    rows = page.locator("tr.session-row")
    assert _focused(page)[2] == rows.first.get_attribute("data-session-id")
    assert rows.evaluate_all("rs => rs.filter(r => r.tabIndex === 0).length") == 1  # one Tab stop
    page.keyboard.press("ArrowDown")
    assert _focused(page)[2] == rows.nth(1).get_attribute("data-session-id")
    page.keyboard.press("End")
    assert _focused(page)[2] == rows.last.get_attribute("data-session-id")
    page.keyboard.press("Home")
    _press_until(page, "ArrowDown", f"tr[data-session-id='{SHOP_SESSION}']")
    page.keyboard.press("Enter")
    page.wait_for_function(f"location.hash === '#/session/{SHOP_SESSION}'")
    page.wait_for_selector(".wf-row[data-span-id]")


def test_waterfall_by_keys_enter_opens_a_span_and_esc_closes_it(
    world: Any, clean_page: Any
) -> None:
    page = clean_page
    page.goto(f"{world.api}/#/session/{SHOP_SESSION}")
    page.wait_for_selector(".wf-row[data-span-id]")
    _tab_to(page, "[role=treeitem]")
    assert page.locator(".wf-inner").get_attribute("role") == "tree"
    _press_until(page, "ArrowDown", ".wf-row[data-name='payment.charge']")
    row = page.locator(".wf-row[data-name='payment.charge']")
    assert row.get_attribute("aria-level") == "3" and row.get_attribute("aria-expanded") == "true"
    page.keyboard.press("Enter")
    page.wait_for_selector(".span-detail h3")
    assert page.locator(".span-detail h3").inner_text() == "payment.charge"
    assert "span=" in page.url and row.get_attribute("aria-selected") == "true"
    assert _focused(page)[2] == "payment.charge"  # the focus stays in the tree
    page.keyboard.press("Escape")
    assert page.locator(".span-detail").count() == 0 and "span=" not in page.url
    assert _focused(page)[2] == "payment.charge"
    page.keyboard.press("ArrowLeft")  # collapse: card.tokenize hidden
    assert row.get_attribute("aria-expanded") == "false"
    assert page.locator(".wf-row[data-name='card.tokenize']").count() == 0
    page.keyboard.press("ArrowRight")  # expand
    assert page.locator(".wf-row[data-name='card.tokenize']").count() == 1
    page.keyboard.press("ArrowRight")  # into the first child
    assert _focused(page)[2] == "card.tokenize"
    page.keyboard.press("ArrowLeft")  # a leaf: to its parent
    assert _focused(page)[2] == "payment.charge"
    page.keyboard.press("Home")
    assert "wf-trace" in _focused(page)[1]


def test_slash_focuses_find_and_enter_walks_the_matches(world: Any, clean_page: Any) -> None:
    page = clean_page
    page.goto(f"{world.api}/#/session/{BIG_SESSION}")
    page.wait_for_selector(".wf-row[data-span-id]")
    page.keyboard.press("/")
    assert "wf-find" in _focused(page)[1]
    page.keyboard.type("render")
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    assert page.locator(".wf-count").inner_text().startswith("2 of ")
    assert page.locator(".wf-row.current").get_attribute("data-name") == "render"
    page.keyboard.press("Escape")  # clears the find text
    assert (
        page.locator(".wf-find").input_value() == "" and page.locator(".wf-row.match").count() == 0
    )
    _tab_to(page, ".wf-critical")  # the tool bar's buttons take Enter
    page.keyboard.press("Enter")
    assert page.locator(".wf-critical").get_attribute("aria-pressed") == "true"
    assert page.locator(".wf-row.critical").count() > 0


def test_timeline_item_opens_its_span_by_keyboard(world: Any, clean_page: Any) -> None:
    page = clean_page
    page.goto(f"{world.api}/#/session/{SHOP_SESSION}")
    page.wait_for_selector("li.ev[data-type='span.error']")
    _tab_to(page, "li.ev")
    _press_until(page, "ArrowDown", "li.ev[data-type='span.error']")
    page.keyboard.press("Enter")
    page.wait_for_selector(".span-detail h3")
    assert page.locator(".span-detail h3").inner_text() == "payment.charge"
    assert page.locator(".wf-row.selected").get_attribute("data-name") == "payment.charge"


def test_slash_opens_search_and_the_keyboard_runs_it_and_opens_a_result(
    world: Any, clean_page: Any
) -> None:
    page = clean_page
    page.goto(f"{world.api}/#/sessions?refresh=off")
    page.wait_for_selector("tr.session-row")
    page.keyboard.press("/")  # no search field here: the search page, its first field
    page.wait_for_function("location.hash === '#/search'")
    page.wait_for_function("document.activeElement.matches('.search-form input')")
    page.keyboard.type(SHOP_ROOM)
    page.keyboard.press("Enter")  # submits the form
    page.wait_for_selector("#search-results table tbody tr")
    assert f"room={SHOP_ROOM}" in page.url
    _tab_to(page, "#search-results tbody tr")
    page.keyboard.press("Enter")  # its first link: the trace
    page.wait_for_function("location.hash.startsWith('#/trace/')")
    page.wait_for_selector(".wf-row[data-span-id]")


def test_log_severity_trace_page_and_usage_rows_by_keyboard(world: Any, clean_page: Any) -> None:
    page = clean_page
    page.goto(f"{world.api}/#/session/{SHOP_SESSION}")
    page.wait_for_selector("tr.log-row")
    _tab_to(page, "#log-severity")
    page.keyboard.press("ArrowDown")  # all -> debug+
    page.keyboard.press("ArrowDown")  # -> info+
    page.wait_for_function("location.hash.includes('severity=info')")
    page.wait_for_function("document.querySelectorAll('tr.log-row').length === 4")  # no DEBUG
    _tab_to(page, "tr.log-row")
    page.keyboard.press("End")
    assert "finished" in page.evaluate("document.activeElement.innerText")
    _tab_to(page, "[role=treeitem]")
    page.keyboard.press("Home")  # the trace's header: Space collapses it, Enter opens its page
    page.keyboard.press(" ")
    assert page.locator(".wf-row[data-span-id]").count() == 0
    page.keyboard.press(" ")
    assert page.locator(".wf-row[data-span-id]").count() == 6
    page.keyboard.press("Enter")
    page.wait_for_function("location.hash.startsWith('#/trace/')")
    page.wait_for_selector(".wf-row[data-span-id]")
    page.goto(f"{world.api}/#/usage")
    page.wait_for_selector("tr.usage-row")
    _tab_to(page, "table[data-by=room] tr.usage-row")
    room = page.evaluate("document.activeElement.dataset.key")
    page.keyboard.press("Enter")
    page.wait_for_function(f"location.hash === '#/sessions?room={room}'")
