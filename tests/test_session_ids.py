"""Issue 19, item 2: session ids are opaque text (SPEC 3). Ids with ``/``, ``..``, ``#``, ``?``,
spaces, ``%`` and Unicode are read through the API (percent-encoded in the path), the CLI
(``--server`` and ``--db``, the same answers) and the console's links and fetches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import test_console
from click.testing import CliRunner, Result
from conftest import BACKENDS, backend_settings
from edge_data import AWKWARD_IDS, send_session, strict_json
from test_query_fixtures import World

from query.cli import main

ROOM = "ids"
SUFFIXES = ("", "/events", "/spans", "/logs", "/metrics", "/metric_series", "/waterfall")


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("ids")
    w = World(root / "ids.duckdb", backend_settings(request, request.param, root))
    try:
        for sid in AWKWARD_IDS:
            send_session(w.http_url, sid, ROOM)
        yield w
    finally:
        w.stop()


def path_segment(sid: str) -> str:
    """The id as one percent-encoded path segment (dots too when it is all dots: HTTP clients
    resolve a bare ``..`` segment away)."""
    quoted = quote(sid, safe="")
    return quoted.replace(".", "%2E") if set(quoted) == {"."} else quoted


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("sid", AWKWARD_IDS)
def test_every_session_route_of_the_api_reads_an_awkward_id(world: World, sid: str) -> None:
    """Was: GET /api/v1/sessions/room%2F42 was a plain-text 404 (the server decoded %2F before
    routing)."""
    base = f"{world.api_url}/api/v1/sessions/{path_segment(sid)}"
    answers = {}
    for suffix in SUFFIXES:
        r = httpx.get(base + suffix, timeout=30)
        assert r.status_code == 200, (sid, suffix, r.status_code, r.text)
        answers[suffix] = strict_json(r.content)
    assert answers[""]["session"]["session_id"] == sid
    assert answers[""]["session"]["span_count"] == 2
    assert answers["/events"]["events"][0]["type"] == "session.started"
    assert {s["session_id"] for s in answers["/spans"]["spans"]} == {sid}
    assert len(answers["/spans"]["spans"]) == 2
    assert [r["body"] for r in answers["/logs"]["logs"]] == [f"info in {sid}", f"error in {sid}"]
    assert {m["session_id"] for m in answers["/metrics"]["metrics"]} == {sid}
    assert answers["/metric_series"]["series"]
    assert len(answers["/waterfall"]["rows"]) == 2
    listed = httpx.get(f"{world.api_url}/api/v1/traces", params={"session": sid}, timeout=30)
    assert {s["session_id"] for s in listed.json()["spans"]} == {sid}


def test_a_slash_in_an_id_is_not_a_route_separator(world: World) -> None:
    """``x%2Fevents`` is the session ``x/events``; ``x/events`` the events of a session ``x``
    (there is none: a JSON 404)."""
    one = httpx.get(f"{world.api_url}/api/v1/sessions/x%2Fevents", timeout=30)
    assert one.status_code == 200 and one.json()["session"]["session_id"] == "x/events"
    none = httpx.get(f"{world.api_url}/api/v1/sessions/x/events", timeout=30)
    assert none.status_code == 404 and none.json() == {"error": "no session 'x'"}
    gone = httpx.get(f"{world.api_url}/api/v1/sessions/room%2F43/logs", timeout=30)
    assert gone.status_code == 404 and gone.json() == {"error": "no session 'room/43'"}


COMMANDS = [
    ("session", "get"),
    ("session", "traces"),
    ("session", "logs"),
    ("session", "metrics"),
]


def test_the_cli_reads_awkward_ids_through_server_and_db_alike(world: World) -> None:
    """Was: `roomscope --server URL session get room/42` said "not found"."""
    outputs: dict[tuple[str, ...], str] = {}
    for sid in AWKWARD_IDS:
        for command in COMMANDS:
            args = (*command, sid, "-o", "json")
            result = run("--server", world.api_url, *args)
            assert result.exit_code == 0, (args, result.stderr)
            outputs[args] = result.stdout
        session = strict_json(outputs["session", "get", sid, "-o", "json"])["session"]
        assert session["session_id"] == sid
        spans = strict_json(outputs["session", "traces", sid, "-o", "json"])["spans"]
        assert len(spans) == 2 and {s["session_id"] for s in spans} == {sid}
        table = run("--server", world.api_url, "session", "traces", sid)
        assert table.exit_code == 0 and "tool.search" in table.stdout
        args = ("traces", "--session", sid, "-o", "json")
        outputs[args] = run("--server", world.api_url, *args).stdout
        assert len(strict_json(outputs[args])["spans"]) == 2
    with world.local() as store:
        for args, out in outputs.items():
            result = run(*store, *args)
            assert result.exit_code == 0 and result.stdout == out, args


# --- the console ---------------------------------------------------------------------------


browser, page = test_console.browser, test_console.page  # fixtures


# A browser resolves a path segment of "..", or "%2E%2E", away before it sends the request
# (WHATWG URL), so an id that is exactly ".." cannot be a path segment of the console's fetches.
CONSOLE_IDS = [sid for sid in AWKWARD_IDS if set(sid) != {"."}]


@pytest.mark.parametrize("sid", CONSOLE_IDS)
def test_the_console_links_to_and_shows_a_session_with_an_awkward_id(
    world: World, page: Any, sid: str
) -> None:
    page.goto(f"{world.api_url}/#/sessions")
    page.wait_for_selector("tr.session-row")
    ids = page.locator("tr.session-row").evaluate_all("rs => rs.map(r => r.dataset.sessionId)")
    assert sid in ids
    page.locator("tr.session-row").nth(ids.index(sid)).locator("td a").first.click()
    page.wait_for_selector(".wf-row[data-span-id]")
    assert page.locator(".summary h2").inner_text() == sid
    names = page.locator(".wf-row[data-span-id]").evaluate_all("rs => rs.map(r => r.dataset.name)")
    assert names == ["turn", "tool.search"]
    page.wait_for_selector("tr.log-row")
    assert page.locator("tr.log-row td.body").all_inner_texts() == [
        f"info in {sid}",
        f"error in {sid}",
    ]
    # The gauge of NaN, ±Infinity and 1.5 is drawn (its one finite point), not an error.
    page.wait_for_selector("figure.chart-box[data-metric='temp'] svg circle")
    page.wait_for_selector(".ev[data-type='span.error']")
    assert page.locator(".ev").first.get_attribute("data-type") == "session.started"
    page.reload()  # the link itself (the URL) opens the same session
    page.wait_for_selector(".wf-row[data-span-id]")
    assert page.locator(".summary h2").inner_text() == sid
