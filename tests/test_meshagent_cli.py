"""The unmodified ``meshagent`` CLI and ``meshagent-otel`` from PyPI against roomscope (SPEC 13).

A MeshAgent-style service (tests/meshagent_service.py, configured by
``meshagent.otel.otel_config()``) sends tool spans, logs and usage counters to a collector on
free ports; then ``meshagent session list|get|traces|logs|metrics`` run against its query port
and what they print is checked against what the service sent. Both run in a Python 3.13 venv
built once per machine (tests/meshagent_venv.py): the first run takes a minute or two.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningCollector
from meshagent_venv import VenvError, ensure_venv
from test_security import make_tokens

SERVICE = Path(__file__).with_name("meshagent_service.py")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the first run builds the venv


@pytest.fixture(scope="module")
def venv() -> Path:
    try:
        return ensure_venv()
    except VenvError as exc:
        pytest.fail(str(exc))


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.pop("PYTEST_CURRENT_TEST", None)  # the CLI skips its /config call under pytest
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    # The CLI prints -o json through rich, which wraps lines at the terminal's width (80 when
    # not a terminal), inside JSON strings too: a wide "terminal" keeps the JSON valid.
    env.update(HOME=str(home), COLUMNS="100000", NO_COLOR="1", **values)
    return env


def send(venv: Path, tmp_path: Path, endpoint: str, room: str, session: str, **env: str) -> dict:
    """Run the service once; what it sent (span names, log lines, token counts)."""
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(SERVICE)],
        env=_env(
            tmp_path,
            OTEL_ENDPOINT=endpoint,
            MESHAGENT_PROJECT_ID="proj",
            MESHAGENT_ROOM=room,
            MESHAGENT_SESSION_ID=session,
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def settled(rc: RunningCollector, session: str) -> None:
    """Wait until the session's row counts its 4 spans, 2 logs and its error."""
    deadline = time.monotonic() + 30
    sql = "SELECT span_count, log_count, error_count FROM sessions WHERE session_id = ?"
    while rc.query(sql, [session]) != [(4, 2, 1)]:
        assert time.monotonic() < deadline, rc.query(sql, [session])
        time.sleep(0.02)


class Meshagent:
    """``meshagent ARGS`` against a roomscope query port, as a user would run it."""

    def __init__(self, venv: Path, tmp_path: Path, api_url: str, project: str, key: str):
        self.cmd = str(venv / "bin" / "meshagent")
        self.env = _env(
            tmp_path, MESHAGENT_API_URL=api_url, MESHAGENT_PROJECT_ID=project, MESHAGENT_API_KEY=key
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.cmd, "session", *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))


@pytest.fixture(scope="module")
def world(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two sessions of two rooms from the service, read by the CLI (module-wide: slow)."""
    from conftest import make_settings

    from query.http.serving import serving_thread

    tmp = tmp_path_factory.mktemp("meshagent")
    thread = serving_thread(make_settings(tmp / "roomscope.duckdb"))
    thread.start()
    rc = RunningCollector(thread, tmp / "roomscope.duckdb")
    try:
        first = send(venv, tmp, rc.http_url, "gettingstarted", "sess-a")
        second = send(venv, tmp, rc.http_url, "lobby", "sess-b")
        settled(rc, "sess-a")
        settled(rc, "sess-b")
        yield rc, Meshagent(venv, tmp, rc.api_url, "proj", "anything"), first, second
    finally:
        thread.stop()


def test_session_list_and_list_room(world) -> None:
    _, cli, _, _ = world
    sessions = cli.json("list")["sessions"]
    assert [s["id"] for s in sessions] == ["sess-b", "sess-a"]  # newest first
    a = sessions[1]
    assert (a["room_name"], a["room_id"], a["is_active"], a["kind"]) == (
        "gettingstarted",
        "gettingstarted",
        True,
        "room",
    )
    assert a["participants"] is None and a["agent_id"] is None and a["agent_name"] is None
    assert [s["id"] for s in cli.json("list", "--limit", "1")["sessions"]] == ["sess-b"]
    assert [s["id"] for s in cli.json("list", "--room", "gettingstarted")["sessions"]] == ["sess-a"]
    table = cli.ok("list", "--room", "lobby")
    assert "sess-b" in table and "sess-a" not in table
    missing = cli.run("list", "--room", "nowhere")
    assert missing.returncode != 0 and "room not found" in missing.stdout + missing.stderr


def test_session_get_prints_lifecycle_events_logs_and_errors(world) -> None:
    _, cli, _, _ = world
    out = cli.ok("get", "sess-a")
    for text in ("session.started", "otel.log", "turn started", "a tool failed", "span.error"):
        assert text in out
    assert "sess-b" not in out


def test_session_traces_json_is_what_the_service_sent(world) -> None:
    _, cli, first, _ = world
    spans = cli.json("traces", "sess-a")["spans"]
    by_name = {s["span_name"]: s for s in spans}
    assert sorted(by_name) == sorted(first["spans"])
    assert {s["trace_id"] for s in spans} == {first["trace_id"]}
    root = by_name["agent.turn"]
    assert root["parent_span_id"] is None
    for name in first["spans"][1:]:
        assert by_name[name]["parent_span_id"] == root["span_id"]
    slow = by_name["execute.demo.slow_lookup"]
    assert slow["duration"] >= first["slow_ns"]
    assert slow["span_attributes"]["toolkit"] == "demo"
    assert slow["span_attributes"]["tool"] == "slow_lookup"


def test_session_traces_tree_with_room_name_min_duration_and_attrs(world) -> None:
    _, cli, _, _ = world
    out = cli.ok("traces", "--room", "gettingstarted", "--name", "slow", "--min-duration", "500ms")
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("execute.demo.slow_lookup")
    took = float(lines[1].split()[-1].removesuffix("ms"))
    assert 600 <= took < 900, lines[1]  # the tool sleeps 600 ms (more under load)
    tree = cli.ok("traces", "--room", "gettingstarted", "--min-duration", "500ms", "--attrs")
    names = [line.split()[0] for line in tree.strip().splitlines()[1:]]
    assert names == ["agent.turn", "execute.demo.slow_lookup"]
    assert "toolkit=demo" in tree and "tool=slow_lookup" in tree
    whole = cli.ok("traces", "sess-a").strip().splitlines()[1:]
    assert whole[0].startswith("agent.turn") and all(x.startswith("  ") for x in whole[1:])
    assert cli.run("traces", "sess-a", "--name", "nothing-like-this").returncode == 0


def test_session_logs_are_the_records_sent(world) -> None:
    _, cli, first, second = world
    logs = cli.json("logs", "sess-a")["logs"]
    assert [[e["data"]["severity_text"], e["data"]["body"]] for e in logs] == first["logs"]
    assert logs[1]["data"]["log_attributes"]["tool"] == "explode"
    table = cli.ok("logs", "--room", "gettingstarted", "--attrs")
    assert "a tool failed" in table and "tool=explode" in table and "WARN" in table
    newest = cli.json("logs")["logs"]  # no id: the newest session (sess-b)
    assert {e["data"]["resource_attributes"]["session"] for e in newest} == {"sess-b"}
    assert len(newest) == len(second["logs"])


def test_session_metrics_are_the_usage_counters_sent(world) -> None:
    _, cli, first, _ = world
    metrics = cli.json("metrics", "sess-a")["metrics"]
    usage = [m for m in metrics if m["scope_name"] == "meshagent.usage"]
    totals: dict[str, float] = {}
    for m in usage:
        assert (m["kind"], m["metric_unit"], m["temporality"]) == ("sum", "tokens", "delta")
        assert m["metric_attributes"] == {"model": "gpt-test", "provider": "openai"}
        totals[m["metric_name"]] = totals.get(m["metric_name"], 0) + m["value"]
    assert totals == first["tokens"]
    table = cli.ok("metrics", "--room", "gettingstarted", "--attrs")
    assert "input_tokens" in table and "1200" in table and "model=gpt-test" in table


def test_trailing_slash_endpoint_delivers_everything(venv, start_collector, tmp_path) -> None:
    rc = start_collector()
    send(venv, tmp_path, rc.http_url + "/", "gettingstarted", "sess-slash")
    settled(rc, "sess-slash")
    (points,) = rc.query("SELECT count(*) FROM metric_points WHERE session_id = 'sess-slash'")[0]
    assert points >= 2


def test_with_auth_a_query_token_of_the_project_reads(venv, start_collector, tmp_path) -> None:
    tokens_file = tmp_path / "tokens.toml"
    tokens = make_tokens(tokens_file)
    rc = start_collector(**{"auth.enabled": True, "auth.tokens_file": str(tokens_file)})
    # meshagent-otel's exporters take their headers from the standard OTel variable.
    header = f"authorization=Bearer%20{tokens['alpha-ingest']}"
    send(venv, tmp_path, rc.http_url, "r1", "sess-auth", OTEL_EXPORTER_OTLP_HEADERS=header)
    settled(rc, "sess-auth")
    assert rc.query("SELECT DISTINCT project FROM spans") == [("alpha",)]  # the token's
    alpha = Meshagent(venv, tmp_path, rc.api_url, "alpha", tokens["alpha-query"])
    assert [s["id"] for s in alpha.json("list")["sessions"]] == ["sess-auth"]
    assert "execute.demo.echo" in alpha.ok("traces", "sess-auth")
    for project, key, status in (
        ("alpha", tokens["beta-query"], "404"),  # another project's token: as if unknown
        ("alpha", tokens["alpha-ingest"], "401"),
        ("alpha", "wrong", "401"),
    ):
        done = Meshagent(venv, tmp_path, rc.api_url, project, key).run("traces", "sess-auth")
        assert done.returncode != 0 and f"Status={status}" in done.stdout + done.stderr
