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
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otel_sdk import pipeline
from otlp_factory import kv

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


# -- item 6: service.joined stands at the service's first record -----------------------------


def joined_events(source: list[str], session_id: str) -> dict[str, Any]:
    """Event type (service.joined: per service) → time (epoch ns), from ``session get``."""
    events = cli_json(source, "session", "get", session_id)["events"]
    out = {}
    for e in events:
        if e["type"] == "service.joined":
            out[json.loads(e["message"])["service"]] = parse_ts(e["time"])
        elif e["type"].startswith("session."):
            out[e["type"]] = parse_ts(e["time"])
    return out


def send_parent_after_children(c: Any, t0: int) -> None:
    """A root span of ``agent``, its child, and two spans of ``tools``, each exported when it
    ends: the earliest record of each service (the root; ``tool.prepare``) arrives last."""
    agent, tools = sdk(c, "agent", room="den"), sdk(c, "tools", room="den")
    root = agent.tracer().start_span("agent.turn", start_time=t0)
    ctx = trace.set_span_in_context(root)
    child = agent.tracer().start_span("llm.call", context=ctx, start_time=t0 + 1 * MS)
    prepare = tools.tracer().start_span("tool.prepare", context=ctx, start_time=t0 + 2 * MS)
    search = tools.tracer().start_span("tool.search", context=ctx, start_time=t0 + 5 * MS)
    child.end(end_time=t0 + 4 * MS)
    search.end(end_time=t0 + 6 * MS)
    prepare.end(end_time=t0 + 3 * MS)  # exported after tool.search, which started later
    root.end(end_time=t0 + 9 * MS)  # exported after its children
    agent.shutdown()
    tools.shutdown()


def test_service_joined_moves_earlier_when_an_earlier_record_arrives_late(start_collector) -> None:
    c = start_collector()
    t0 = time.time_ns() - 60 * SEC
    send_parent_after_children(c, t0)
    (s,) = api(c, "/sessions", room="den")["sessions"]
    sid = s["session_id"]
    expected = {"session.started": t0, "agent": t0, "tools": t0 + 2 * MS}
    assert joined_events(["--server", c.api_url], sid) == expected
    events = api(c, f"/sessions/{sid}/events")["events"]
    assert [e["type"] for e in events] == ["session.started", *["service.joined"] * 2]
    assert (s["services"], duration(s)) == (["agent", "tools"], 9 * MS)
    c.stop()
    assert joined_events(["--db", str(c.db)], sid) == expected


def post_span(c: Any, service: str, start_ns: int, end_ns: int) -> None:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", service), kv("room", "den")])
    rs.scope_spans.add().spans.add(
        trace_id=b"\x01" * 16,
        span_id=start_ns.to_bytes(8, "big"),
        name="work",
        start_time_unix_nano=start_ns,
        end_time_unix_nano=end_ns,
    )
    r = httpx.post(
        f"{c.http_url}/v1/traces",
        content=req.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
        timeout=30,
    )
    assert r.status_code == 200, r.text


def test_service_joined_moves_earlier_after_a_restart_too(start_collector, tmp_path) -> None:
    """The times of the service.joined events are read back at start-up."""
    db = tmp_path / "restart.duckdb"
    first = start_collector(db=db)
    t0 = time.time_ns() - 60 * SEC
    post_span(first, "agent", t0 + 5 * MS, t0 + 6 * MS)
    post_span(first, "tools", t0 + 7 * MS, t0 + 8 * MS)
    first.stop()
    second = start_collector(db=db)
    post_span(second, "tools", t0 + 3 * MS, t0 + 4 * MS)
    post_span(second, "agent", t0, t0 + 9 * MS)
    (s,) = api(second, "/sessions", room="den")["sessions"]
    assert joined_events(["--server", second.api_url], s["session_id"]) == {
        "session.started": t0,
        "agent": t0,
        "tools": t0 + 3 * MS,
    }
