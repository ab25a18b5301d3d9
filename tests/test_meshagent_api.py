"""MeshAgent's account routes on the query port (SPEC 13), field by field, against a collector
filled by the real OTel SDK exporters. The real ``meshagent`` CLI runs against them in
tests/test_meshagent_cli.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RunningCollector
from opentelemetry.trace import StatusCode
from otel_sdk import pipeline
from test_security import make_tokens

from query.http.meshagent import roomscope_version

P = "/accounts/projects"


def get(rc: RunningCollector, path: str, token: str | None = "anything", **params: Any):
    headers = {"Authorization": f"Bearer {token}", "Consistency": "fast"}
    return httpx.get(rc.api_url + path, params=params, headers=headers, timeout=30)


def send(rc: RunningCollector, resource: dict[str, str], headers: dict | None = None) -> str:
    """One turn (a root span with a slow and a failing child), two logs, a usage counter."""
    p = pipeline("http", rc.http_url, rc.grpc_endpoint, resource, headers)
    tracer = p.tracer("meshagent.tools")
    with tracer.start_as_current_span("agent.turn") as root:
        with tracer.start_as_current_span("execute.demo.slow", attributes={"toolkit": "demo"}):
            time.sleep(0.01)
        with tracer.start_as_current_span("execute.demo.fail") as span:
            span.set_status(StatusCode.ERROR, "boom")
        log = p.logger("meshagent.service")
        log.info("turn started")
        log.warning("a tool failed", extra={"tool": "fail"})
    counter = p.meter("meshagent.usage").create_counter("input_tokens", "tokens")
    counter.add(120, {"model": "gpt-test", "provider": "openai"})
    p.shutdown()
    return format(root.get_span_context().trace_id, "032x")


@pytest.fixture
def filled(collector: RunningCollector) -> RunningCollector:
    send(collector, {"project": "p1", "room": "gettingstarted", "session": "s-1"})
    send(collector, {"project": "p1", "room": "lobby", "session": "dir/s ?2"})
    send(collector, {"project": "p1", "room": "lobby"})  # an inferred session
    send(collector, {"project": "p1", "session": "roomless"})
    send(collector, {"project": "p1", "room": "attic", "session": "a/b"})
    send(collector, {"project": "p2", "room": "gettingstarted", "session": "s-other"})
    settled(collector, 6)
    return collector


def settled(rc: RunningCollector, turns: int) -> None:
    """Wait until the session rows count every sent turn (the tracker writes them in batches)."""
    deadline = time.monotonic() + 20
    want = (3 * turns, 2 * turns, turns)
    while rc.query("SELECT sum(span_count), sum(log_count), sum(error_count) FROM sessions") != [
        want
    ]:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_config_answers_meshagent_deployment_config_without_auth(collector: RunningCollector):
    r = httpx.get(collector.api_url + "/config")
    assert r.status_code == 200
    assert r.json() == {"domains": {}, "version": roomscope_version()}
    assert roomscope_version()[0].isdigit()


def test_session_list_is_newest_first_in_meshagent_fields_and_keeps_roomscope_facts(filled):
    sessions = get(filled, f"{P}/p1/sessions").json()["sessions"]
    assert len(sessions) == 5  # p2's session is not listed
    assert [s["created_at"] for s in sessions] == sorted(
        (s["created_at"] for s in sessions), reverse=True
    )
    by_id = {s["id"]: s for s in sessions}
    s1 = by_id["s-1"]
    assert s1["room_id"] == "gettingstarted" and s1["room_name"] == "gettingstarted"
    assert s1["is_active"] is True and s1["kind"] == "room"
    assert s1["participants"] is None and s1["agent_id"] is None and s1["agent_name"] is None
    assert s1["source"] == "explicit" and s1["error_count"] == 1 and s1["ended_at"] is None
    (inferred,) = [s for s in sessions if s["source"] == "inferred"]
    assert inferred["room_name"] == "lobby"
    assert by_id["roomless"]["room_id"] is None and by_id["roomless"]["room_name"] == ""
    assert [s["id"] for s in get(filled, f"{P}/p1/sessions", limit=1).json()["sessions"]] == [
        sessions[0]["id"]
    ]
    lobby = get(filled, f"{P}/p1/sessions", limit=1000, room_id="lobby").json()["sessions"]
    assert {s["id"] for s in lobby} == {"dir/s ?2", inferred["id"]}


def test_room_is_found_by_name_in_its_project_only(filled):
    room = get(filled, f"{P}/p1/rooms/gettingstarted").json()
    assert {k: room[k] for k in ("id", "name", "metadata", "annotations", "enabled")} == {
        "id": "gettingstarted",
        "name": "gettingstarted",
        "metadata": {},
        "annotations": {},
        "enabled": True,
    }
    assert room["sessions"] == 1
    assert get(filled, f"{P}/p1/rooms/nowhere").status_code == 404
    assert get(filled, f"{P}/p3/rooms/gettingstarted").status_code == 404


def test_events_hold_lifecycle_log_records_as_otel_log_and_error_spans(filled):
    events = get(filled, f"{P}/p1/sessions/s-1/events").json()["events"]
    types = [e["type"] for e in events]
    assert types[0] == "session.started" and "span.error" in types
    logs = [e["data"] for e in events if e["type"] == "otel.log"]
    assert [(d["severity_text"], d["body"]) for d in logs] == [
        ("INFO", "turn started"),
        ("WARN", "a tool failed"),
    ]
    assert logs[1]["scope_name"].startswith("meshagent.service")
    assert logs[1]["log_attributes"]["tool"] == "fail"
    assert logs[1]["resource_attributes"]["room"] == "gettingstarted"
    (error,) = [e["data"] for e in events if e["type"] == "span.error"]
    assert error["span"] == "execute.demo.fail: boom"
    assert [e["created_at"] for e in events] == sorted(e["created_at"] for e in events)


def test_spans_carry_meshagent_names_with_null_parent_for_roots(filled):
    spans = get(filled, f"{P}/p1/sessions/s-1/spans").json()["spans"]
    by_name = {s["span_name"]: s for s in spans}
    assert set(by_name) == {"agent.turn", "execute.demo.slow", "execute.demo.fail"}
    root = by_name["agent.turn"]
    assert root["parent_span_id"] is None
    assert by_name["execute.demo.slow"]["parent_span_id"] == root["span_id"]
    slow = by_name["execute.demo.slow"]
    assert isinstance(slow["duration"], int) and slow["duration"] >= 10_000_000
    assert slow["span_attributes"] == {"toolkit": "demo"} and slow["created_at"].endswith("Z")
    assert by_name["execute.demo.fail"]["status_code"] == "ERROR"


def test_metrics_carry_meshagent_names(filled):
    metrics = get(filled, f"{P}/p1/sessions/s-1/metrics").json()["metrics"]
    # the SDK's own metrics too; the pipeline's flush and shutdown each export a cumulative point
    m = [m for m in metrics if m["scope_name"] == "meshagent.usage"][-1]
    assert (m["kind"], m["metric_name"], m["metric_unit"], m["value"]) == (
        "sum",
        "input_tokens",
        "tokens",
        120,
    )
    assert m["metric_attributes"] == {"model": "gpt-test", "provider": "openai"}
    assert m["ended_at"] and m["created_at"] <= m["ended_at"]


def test_session_ids_holding_slashes_spaces_and_question_marks_work_percent_encoded(filled):
    sid = httpx.URL(f"{filled.api_url}{P}/p1/sessions/dir%2Fs%20%3F2/spans")
    assert {s["span_name"] for s in httpx.get(sid).json()["spans"]} >= {"agent.turn"}
    # as the meshagent CLI sends it (no percent-encoding): "/" still works
    assert get(filled, f"{P}/p1/sessions/a/b/metrics").json()["metrics"][0]["value"] == 120


def test_unknown_ids_other_projects_and_bad_parameters_are_json_errors(filled):
    assert get(filled, f"{P}/p1/sessions/nope/spans").status_code == 404
    assert get(filled, f"{P}/p1/sessions/s-other/events").status_code == 404  # p2's session
    assert get(filled, f"{P}/p2/sessions/s-other/events").status_code == 200
    for params in ({"limit": "x"}, {"limit": 0}, {"bogus": 1}):
        r = get(filled, f"{P}/p1/sessions", **params)
        assert r.status_code == 400 and "error" in r.json()
    r = get(filled, f"{P}/p1/sessions/s-1/spans", limit=3)
    assert r.status_code == 400 and "limit" in r.json()["error"]


def test_an_ended_session_is_not_active(start_collector):
    rc = start_collector(**{"sessions.idle_timeout": 1, "sessions.sweep_interval": 0.1})
    send(rc, {"project": "p1", "room": "r", "session": "short"})
    deadline = time.monotonic() + 20
    while True:
        (s,) = get(rc, f"{P}/p1/sessions").json()["sessions"]
        if not s["is_active"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert s["is_active"] is False and s["ended_at"] is not None
    types = [e["type"] for e in get(rc, f"{P}/p1/sessions/short/events").json()["events"]]
    assert types[-1] == "session.ended"


def test_with_auth_only_a_query_token_of_the_path_project_reads(start_collector, tmp_path: Path):
    tokens_file = tmp_path / "tokens.toml"
    tokens = make_tokens(tokens_file)
    rc = start_collector(**{"auth.enabled": True, "auth.tokens_file": str(tokens_file)})
    ingest = {"authorization": f"Bearer {tokens['alpha-ingest']}"}
    send(rc, {"room": "gettingstarted", "session": "a-1"}, headers=ingest)
    ok = get(rc, f"{P}/alpha/sessions", token=tokens["alpha-query"])
    assert ok.status_code == 200 and [s["id"] for s in ok.json()["sessions"]] == ["a-1"]
    assert get(rc, f"{P}/alpha/sessions/a-1/spans", token=tokens["alpha-query"]).status_code == 200
    for token in (None, "wrong", tokens["alpha-ingest"]):
        r = get(rc, f"{P}/alpha/sessions", token=token)
        assert r.status_code == 401 and "error" in r.json()
    other = get(rc, f"{P}/alpha/sessions/a-1/spans", token=tokens["beta-query"])
    assert other.status_code == 404 and "error" in other.json()
    assert get(rc, f"{P}/beta/sessions", token=tokens["beta-query"]).json() == {"sessions": []}
    assert httpx.get(rc.api_url + "/config").status_code == 200
