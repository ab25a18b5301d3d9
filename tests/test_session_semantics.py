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
from conftest import make_reader
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otel_sdk import pipeline
from otlp_factory import kv

from query.cli import main
from query.library.filters import SessionFilter
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
    assert table.exit_code == 0 and " 1.600s " in table.stdout, table.stdout
    via_server = cli_json(["--server", c.api_url], "session", "list", "--room", "den")
    c.stop()
    via_db = cli_json(["--db", str(c.db)], "session", "list", "--room", "den")
    assert via_db == via_server and duration(via_db["sessions"][0]) == 1_600 * MS
    table = run("--db", str(c.db), "session", "list", "--room", "den")
    assert " 1.600s " in table.stdout, table.stdout


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


# -- item 3: the state is the same whoever reads it -------------------------------------------


def send_old_and_new(c: Any, now: int) -> None:
    """Room ``den``: an inferred session 10 minutes old; room ``hall``: session ``hall-1``, a
    minute old."""
    p = sdk(c, "agent", project="acme")
    tracer = p.tracer()
    for room, extra, t in (
        ("den", {}, now - 600 * SEC),
        ("hall", {"session": "hall-1"}, now - 60 * SEC),
    ):
        span = tracer.start_span("agent.turn", attributes={"room": room, **extra}, start_time=t)
        span.end(end_time=t + 2 * SEC)
    p.shutdown()


def states(source: list[str]) -> dict[str, Any]:
    """Per room: (ended_at is set, ended_at == last_seen_at); the rooms' active counts; the
    ids of --ended and --active."""
    listed = cli_json(source, "session", "list")["sessions"]
    return {
        "sessions": {
            s["room"]: (s["ended_at"] is not None, s["ended_at"] in (None, s["last_seen_at"]))
            for s in listed
        },
        "ended": [s["room"] for s in cli_json(source, "session", "list", "--ended")["sessions"]],
        "active": [s["room"] for s in cli_json(source, "session", "list", "--active")["sessions"]],
        "rooms": {r["room"]: r["active_sessions"] for r in cli_json(source, "rooms")["rooms"]},
    }


def test_a_stopped_store_shows_sessions_idle_for_longer_than_idle_as_ended(
    start_collector, tmp_path
) -> None:
    """SPEC 3: a reader shows a session whose last record is older than ``idle`` as ended,
    ``ended_at = last_seen_at``, even when no collector ran since: --db on a stopped store
    (the reader's sessions.idle_timeout, 300 s), the API and --server of a collector (its own),
    and they agree."""
    db = tmp_path / "old.duckdb"
    # A collector whose sweep would end nothing for an hour.
    c = start_collector(db=db, **{"sessions.idle_timeout": 3600})
    send_old_and_new(c, time.time_ns())
    running = states(["--server", c.api_url])
    assert running["sessions"] == {"den": (False, True), "hall": (False, True)}
    assert running["ended"] == [] and running["rooms"] == {"den": 1, "hall": 1}
    c.stop()
    expected = {
        "sessions": {"den": (True, True), "hall": (False, True)},
        "ended": ["den"],
        "active": ["hall"],
        "rooms": {"den": 0, "hall": 1},
    }
    stopped = ["--db", str(db)]
    assert states(stopped) == expected
    table = run(*stopped, "session", "list", "--ended").stdout
    assert "den" in table and "active" not in table and "hall" not in table
    (den,) = cli_json(stopped, "session", "list", "--room", "den")["sessions"]
    got = cli_json(stopped, "session", "get", den["session_id"])
    assert got["session"] == den
    assert got["events"][-1]["type"] == "session.ended"
    assert got["events"][-1]["time"] == den["ended_at"]
    assert json.loads(got["events"][-1]["message"]) == {"reason": "idle"}
    assert (
        "ended     " + den["ended_at"][:23].replace("T", " ")
        in run(*stopped, "session", "get", den["session_id"]).stdout
    )
    # A collector with the default idle timeout on the same store: its API and --server agree.
    again = start_collector(db=db)
    served = ["--server", again.api_url]
    assert states(served) == expected
    assert cli_json(served, "session", "get", den["session_id"]) == got
    assert api(again, "/sessions", active="false")["sessions"] == [den]
    rooms = api(again, "/rooms")["rooms"]  # by name
    assert [(r["room"], r["active_sessions"]) for r in rooms] == [("den", 0), ("hall", 1)]
    assert api(again, f"/sessions/{den['session_id']}")["session"] == den
    assert api(again, f"/sessions/{den['session_id']}/events")["events"] == got["events"]


def test_the_readers_clock_and_idle_timeout_decide_the_state(start_collector) -> None:
    """The boundary, with the reader's clock injected: ended once ``now - last_seen_at``
    reaches ``idle`` (as the sweep ends a session idle for ``idle``)."""
    c = start_collector()
    send_old_and_new(c, time.time_ns())
    cur = c.collector.store.cursor()
    try:
        (hall,) = make_reader(cur).sessions(SessionFilter(room="hall"))["sessions"]
        last = parse_ts(hall["last_seen_at"])
        for now, idle, ended in (
            (last + 300 * SEC - 1, 300, False),
            (last + 300 * SEC, 300, True),
            (last + 300 * SEC, 301, False),
        ):
            reader = make_reader(cur, now=lambda now=now: now, idle_timeout=idle)
            (s,) = reader.sessions(SessionFilter(room="hall"))["sessions"]
            assert (s["ended_at"] == s["last_seen_at"]) is ended, (now - last, idle)
            assert reader.session("hall-1")["session"] == s
            (room,) = [r for r in reader.rooms()["rooms"] if r["room"] == "hall"]
            assert room["active_sessions"] == (0 if ended else 1)
            types = [e["type"] for e in reader.session_events("hall-1")["events"]]
            assert ("session.ended" in types) is ended
    finally:
        cur.close()


# -- item 9: --room without a session id names the session it searched ----------------------


def send_two_projects(c: Any, now: int) -> None:
    """Room ``lab``: project acme's run of six spans (a minute long, still going), then a newer
    one-span session of project beta that ended before acme's last span."""
    acme = sdk(c, "agent", project="acme", room="lab", session="acme-run")
    tracer = acme.tracer()
    t0 = now - 120 * SEC
    for k in range(6):
        tracer.start_span(f"step.{k}", start_time=t0 + k * 10 * SEC).end(
            end_time=t0 + k * 10 * SEC + SEC
        )
    acme.logger().warning("acme log")
    acme.meter().create_counter("steps").add(6)
    acme.shutdown()
    beta = sdk(c, "probe", project="beta", room="lab", session="beta-ping")
    beta.tracer().start_span("ping", start_time=t0 + 20 * SEC).end(end_time=t0 + 21 * SEC)
    beta.shutdown()


def test_room_without_session_id_reads_the_room_s_current_run_and_names_it(
    start_collector,
) -> None:
    c = start_collector()
    send_two_projects(c, time.time_ns())
    assert [s["session_id"] for s in api(c, "/sessions", room="lab")["sessions"]] == [
        "beta-ping",
        "acme-run",
    ]  # beta's session started last
    assert len(api(c, "/traces", room="lab")["spans"]) == 7

    def check(source: list[str]) -> None:
        for command, key, n in (("traces", "spans", 6), ("logs", "logs", 1)):
            got = cli_json(source, "session", command, "--room", "lab")
            assert (got["session_id"], len(got[key])) == ("acme-run", n)
            table = run(*source, "session", command, "--room", "lab")
            assert table.exit_code == 0, table.stderr
            assert table.stderr == "session acme-run (newest of room lab, project acme)\n"
            assert table.stdout.strip()
        got = cli_json(source, "session", "metrics", "--room", "lab")
        assert got["session_id"] == "acme-run" and got["metrics"]
        # --project picks another project's newest session of the room.
        table = run(*source, "session", "traces", "--room", "lab", "--project", "beta")
        assert table.stderr == "session beta-ping (newest of room lab, project beta)\n"
        assert "ping" in table.stdout
        # An unknown room, or a project without sessions there, is an empty result (exit 0),
        # as it is for session list.
        for extra in (["--room", "nowhere"], ["--room", "lab", "--project", "nobody"]):
            assert run(*source, "session", "list", *extra[:2]).exit_code == 0
            for command, key in (("traces", "spans"), ("logs", "logs"), ("metrics", "metrics")):
                table = run(*source, "session", command, *extra)
                assert (table.exit_code, table.stdout) == (0, ""), table.stderr
                assert table.stderr.startswith("no sessions found in room "), table.stderr
                assert cli_json(source, "session", command, *extra) == {
                    "session_id": None,
                    key: [],
                    "next": None,
                }
                assert run(*source, "session", command, *extra, "-o", "jsonl").stdout == ""

    check(["--server", c.api_url])
    c.stop()
    check(["--db", str(c.db)])
