"""Session semantics every reader shares (SPEC 3, issue 19): a session lasts as long as its
longest span, service.joined stands at the service's first record, the state (active/ended) is
the same whoever reads it, and ``--room`` names the session it searched.

Everything goes through the real OTel SDK exporters, the real CLI (``--server`` while the
collector runs, ``--db`` after it stopped) and the real HTTP API.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from click.testing import CliRunner, Result
from otel_sdk import pipeline

from query.cli import main
from query.library.records import parse_ts

SEC = 1_000_000_000
MS = 1_000_000


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def cli_json(source: list[str], *args: str) -> dict[str, Any]:
    result = run(*source, *args, "-o", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def api(collector: Any, path: str, **params: Any) -> Any:
    r = httpx.get(collector.api_url + "/api/v1" + path, params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def sdk(collector: Any, service: str, **resource: str) -> Any:
    """An OTel SDK pipeline over OTLP/HTTP; spans export synchronously as they end."""
    return pipeline(
        "http", collector.http_url, collector.grpc_endpoint, {"service.name": service, **resource}
    )


def duration(s: dict[str, Any]) -> int:
    return parse_ts(s["last_seen_at"]) - parse_ts(s["started_at"])


# -- item 4: a session is never shorter than its longest span ---------------------------------


def test_a_session_of_one_long_span_lasts_as_long_as_the_span(start_collector) -> None:
    c = start_collector()
    p = sdk(c, "agent", room="den")
    t0 = time.time_ns() - 60 * SEC
    p.tracer().start_span("agent.turn", start_time=t0).end(end_time=t0 + 1_600 * MS)
    p.shutdown()
    (s,) = api(c, "/sessions", room="den")["sessions"]
    assert (parse_ts(s["started_at"]), duration(s)) == (t0, 1_600 * MS)
    assert api(c, f"/sessions/{s['session_id']}")["session"] == s
    table = run("--server", c.api_url, "session", "list", "--room", "den")
    assert table.exit_code == 0 and " 1.60s " in table.stdout, table.stdout
    via_server = cli_json(["--server", c.api_url], "session", "list", "--room", "den")
    c.stop()
    via_db = cli_json(["--db", str(c.db)], "session", "list", "--room", "den")
    assert via_db == via_server and duration(via_db["sessions"][0]) == 1_600 * MS
    table = run("--db", str(c.db), "session", "list", "--room", "den")
    assert " 1.60s " in table.stdout, table.stdout
