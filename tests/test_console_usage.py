"""The console's Usage page, the session page's usage and the session list's tokens and cost, in
headless Chromium (Playwright), against the demo workload (GenAI spans through the OTel SDK);
every number on the page equals the API's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import make_settings
from test_console import browser, page  # noqa: F401  (fixtures)

from query.cli.demo import send_workload
from query.http.serving import serving_thread

PRICES = {
    "gpt-4o": {"input": 2.5, "output": 10.0},
    "claude-sonnet-4": {"input": 3.0, "output": 15.0},
}


class Store:
    def __init__(self, db: Path):
        self.thread = serving_thread(make_settings(db, **{"usage.prices": PRICES}))
        c = self.thread.start()
        self.api = f"http://127.0.0.1:{c.ports['api']}"
        send_workload(f"127.0.0.1:{c.ports['grpc']}")

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.api + path, params=params, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store(tmp_path_factory.mktemp("console-usage") / "usage.duckdb")
    try:
        yield s
    finally:
        s.thread.stop()


def _ms(text: str) -> float:
    return float(text.removesuffix(" ms"))


def test_usage_page_numbers_equal_the_api(store: Store, page: Any) -> None:  # noqa: F811
    api = store.get("/api/v1/usage", by="model")
    page.goto(f"{store.api}/#/usage")
    page.wait_for_selector("#usage-calls")
    t = api["totals"]
    assert page.text_content("#usage-calls") == str(t["llm_calls"])
    assert page.text_content("#usage-input") == str(t["input_tokens"])
    assert page.text_content("#usage-output") == str(t["output_tokens"])
    assert page.text_content("#usage-cost") == "unpriced"  # gpt-4o-mini has no price
    assert "gpt-4o-mini" in page.text_content("#usage-unpriced")
    assert page.text_content("#usage-tools") == str(t["tool_calls"])
    rows = page.eval_on_selector_all(
        "table[data-by=model] tr.usage-row",
        "rows => rows.map(r => [...r.cells].map(c => c.textContent))",
    )
    want = sorted((r for r in api["usage"] if r["input_tokens"]), key=lambda r: -r["input_tokens"])
    assert [row[:4] for row in rows] == [
        [r["model"], str(r["llm_calls"]), str(r["input_tokens"]), str(r["output_tokens"])]
        for r in want
    ]
    priced = {r["model"]: r["cost_usd"] for r in api["usage"]}
    for row in rows:
        assert row[4] == ("unpriced" if priced[row[0]] is None else f"${priced[row[0]]:.4f}")
    tools = store.get("/api/v1/usage", by="tool")["usage"]
    shown = page.eval_on_selector_all(
        "table[data-by=tool] tr.usage-row",
        "rows => rows.map(r => [...r.cells].map(c => c.textContent))",
    )
    by_tool = {r["tool"]: r for r in tools if r["tool"]}
    assert {row[0] for row in shown} == set(by_tool)
    for name, calls, errors, p50, p95 in shown:
        r = by_tool[name]
        assert calls == str(r["tool_calls"])
        assert _ms(p50) == pytest.approx(r["tool_p50_ms"], abs=0.051)  # shown to 0.1 ms
        assert _ms(p95) == pytest.approx(r["tool_p95_ms"], abs=0.051)
        assert float(errors.removesuffix("%")) == pytest.approx(
            r["tool_error_rate"] * 100, abs=0.051
        )
    assert page.locator("figure[data-chart=tokens] svg path").count() == 2
    # A room row leads to that room's sessions.
    page.click("table[data-by=room] tr.usage-row >> nth=0 >> a")
    page.wait_for_function("location.hash.startsWith('#/sessions?room=')")


def test_session_page_and_list_carry_tokens_and_cost(store: Store, page: Any) -> None:  # noqa: F811
    usage = store.get("/api/v1/sessions/studio-render-42")["usage"]
    page.goto(f"{store.api}/#/session/studio-render-42")
    page.wait_for_selector("#session-cost")
    assert page.text_content("#session-cost") == f"${usage['cost_usd']:.4f}"
    page.goto(f"{store.api}/#/sessions")
    page.wait_for_selector("tr.session-row[data-session-id='studio-render-42']")
    row = "tr.session-row[data-session-id='studio-render-42']"
    page.wait_for_selector(f"{row} td.session-cost:not(:empty)")  # usage fills in after the rows
    tokens = page.text_content(f"{row} td.session-tokens")
    assert tokens == str(usage["input_tokens"] + usage["output_tokens"])
    assert page.text_content(f"{row} td.session-cost") == f"${usage['cost_usd']:.4f}"
