"""`roomscope demo --serve` end to end: a real subprocess prints the console's URL first, keeps a
collector running with live demo telemetry (the console's active-session page gains spans while
the test watches it in Chromium), and Ctrl-C (SIGINT) stops everything cleanly, the store kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import read_store
from console_world import console_page, wait_until
from screenshots import chromium_missing, launch

ROOMSCOPE = str(Path(sys.executable).with_name("roomscope"))
LIVE_SESSION = "lobby-live-1"


def _count(page: Any, selector: str) -> int:
    return page.locator(selector).count()


def test_demo_serve_keeps_sending_live_telemetry_until_ctrl_c(tmp_path: Path) -> None:
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    db = tmp_path / "demo.duckdb"
    # A shell starts a background job with SIGINT ignored, and a child inherits that: Ctrl-C
    # would never reach the demo when the tests themselves run in the background. A handler
    # of our own is reset to the default in the child, where Python makes it KeyboardInterrupt.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [ROOMSCOPE, "demo", "--serve", "--db", str(db), "--api-port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT prints every thread's stack
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()  # the console's URL comes first
        assert first.startswith("roomscope console: http://127.0.0.1:"), first
        url = first.split(": ", 1)[1]

        def active() -> bool:
            r = httpx.get(url + "api/v1/sessions", params={"active": "true"}, timeout=10)
            return LIVE_SESSION in {s["session_id"] for s in r.json()["sessions"]}

        wait_until(active, 60, "the live session")
        with sync_playwright() as pw:
            browser = launch(pw)
            pages = console_page(browser)
            page = next(pages)
            page.goto(f"{url}#/session/{LIVE_SESSION}")
            page.wait_for_selector("#app[data-follow=live]")
            page.wait_for_selector(".wf-row[data-span-id]")
            spans, logs = (
                _count(page, ".wf-row[data-span-id]"),
                int(page.locator("#logs-scroll").get_attribute("data-loaded") or 0),
            )
            chart = "figure.chart-box[data-metric='tools.queue.depth']"
            page.wait_for_selector(chart)
            points = int(page.locator(chart).get_attribute("data-points") or 0)
            page.evaluate("window.__samePage = true")
            # While the test watches, the page gains spans (new agent turns) and log records.
            page.wait_for_function(
                f"document.querySelectorAll('.wf-row[data-span-id]').length > {spans}",
                timeout=30_000,
            )
            page.wait_for_function(
                f"Number(document.getElementById('logs-scroll').dataset.loaded) > {logs}",
                timeout=30_000,
            )
            page.wait_for_function(  # and its charts move (read again every 5 s)
                f'Number(document.querySelector("{chart}").dataset.points) > {points}',
                timeout=30_000,
            )
            assert page.evaluate("window.__samePage") is True  # no reload
            names = set(
                page.locator(".wf-row[data-span-id]").evaluate_all(
                    "rs => rs.map(r => r.dataset.name)"
                )
            )
            assert {"agent.turn", "llm.call"} <= names
            next(pages, None)  # the page fixture's checks: no errors, no unhandled rejections
            browser.close()
        proc.send_signal(signal.SIGINT)
        try:
            _out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # where it hangs, for the failure's message
            _out, err = proc.communicate(timeout=30)
            pytest.fail(f"no exit within 60 s of Ctrl-C; its threads:\n{err}")
        assert proc.returncode == 0, err
        assert "stopped; the store is kept" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # The store opens afterwards, with the live session's spans, GenAI calls and moving metrics.
    (spans_n, llm_n) = read_store(
        db,
        "SELECT count(*), count(*) FILTER (WHERE attributes['gen_ai.operation.name'] = 'chat')"
        f" FROM spans WHERE session_id = '{LIVE_SESSION}'",
    )[0]
    assert spans_n >= 6 and llm_n >= 2
    (points,) = read_store(
        db,
        "SELECT count(DISTINCT time) FROM metric_points"
        f" WHERE session_id = '{LIVE_SESSION}' AND name = 'tools.queue.depth'",
    )[0]
    assert points >= 2
