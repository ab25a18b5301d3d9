"""The roomscope CLI (SPEC 5) against a store filled by the real OTel SDK exporters: every command,
through --server (collector running) and --db (collector stopped), with identical JSON."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner, Result
from conftest import BACKENDS, make_store
from otel_sdk import pipeline
from test_query_fixtures import World, filled_world

from query.cli import main

SEC = 1_000_000_000
ROOMSCOPE = str(Path(sys.executable).with_name("roomscope"))


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[World]:
    yield from filled_world(tmp_path_factory, request)


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


def server(w: World, *args: str) -> Result:
    return run("--server", w.api_url, *args)


def expected_slow_errors(w: World, room: str) -> set[str]:
    return {
        s.span_id
        for s in w.manifest.spans
        if s.room == room
        and s.duration_ns >= SEC
        and (s.status == "ERROR" or s.attributes.get("status") == "error")
    }


def test_slow_error_spans_same_through_server_api_subprocess_and_db(world: World) -> None:
    args = ["traces", "--room", "studio", "--min-duration", "1000", "--attrs", "status=error"]
    via_server = server(world, *args, "-o", "json")
    assert via_server.exit_code == 0, via_server.stderr
    spans = json.loads(via_server.stdout)["spans"]
    assert {s["span_id"] for s in spans} == expected_slow_errors(world, "studio") != set()
    assert all(s["duration_ns"] >= SEC and s["room"] == "studio" for s in spans)
    api = httpx.get(
        world.api_url + "/api/v1/traces",
        params={"room": "studio", "min_duration": "1000", "attrs": "status=error"},
    ).json()
    assert api == json.loads(via_server.stdout)
    proc = subprocess.run(
        [ROOMSCOPE, "--server", world.api_url, *args, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout) == api
    with world.local() as store:
        via_db = run(*store, *args, "-o", "json")
    assert via_db.exit_code == 0 and via_db.stdout == via_server.stdout


PARITY = [
    ["session", "list"],
    ["session", "list", "--room", "support", "--active", "--since", "1d", "--limit", "5"],
    ["session", "get", "studio-render-42"],
    ["session", "traces", "studio-render-42", "--min-duration", "1.2s", "--show-attrs"],
    ["session", "traces", "--room", "qa", "--attrs", "status=error,service=qa-bot"],
    ["session", "logs", "lobby-standup-1", "--severity", "warn", "--grep", "TURN"],
    ["session", "metrics", "studio-render-42", "--name", "agent.turns"],
    ["traces", "--service", "tools", "--max-duration", "100ms", "--since", "1h", "--limit", "7"],
    ["traces", "--name", "LLM", "--attrs", "llm.model=gpt-demo", "--attrs", "kind=client"],
    ["rooms"],
    ["sql", "SELECT room, count(*) AS n, min(start_time) AS t FROM spans GROUP BY 1 ORDER BY 1"],
]


def test_every_command_returns_the_same_json_through_server_and_db(world: World) -> None:
    outputs = {}
    for args in PARITY:
        for fmt in ("json", "jsonl", "csv"):
            result = server(world, *args, "-o", fmt)
            assert result.exit_code == 0, (args, result.stderr)
            assert result.stdout.strip(), args
            outputs[(*args, fmt)] = result.stdout
    with world.local() as store:
        for key, out in outputs.items():
            result = run(*store, *key[:-1], "-o", key[-1])
            assert result.exit_code == 0 and _paged(result.stdout) == _paged(out), key


def _paged(out: str) -> str:
    """``out`` with a json answer's next cursor as whether there is one: a cursor also names
    its filters, and ``--since 1h`` is another time when the other source reads it."""
    try:
        body = json.loads(out)
    except ValueError:  # jsonl, csv
        return out
    if body.get("next") is not None:
        body["next"] = "more"
    return json.dumps(body)


def test_session_list_table_shows_the_spec_columns(world: World) -> None:
    out = server(world, "session", "list").stdout
    header = out.splitlines()[0].split()
    assert header == [
        "ID",
        "ROOM",
        "PROJECT",
        "STARTED",
        "ENDED",
        "DURATION",
        "SPANS",
        "LOGS",
        "ERRORS",
        "SERVICES",
    ]
    assert "studio-render-42" in out and "active" in out
    assert len(out.splitlines()) == 1 + len(
        json.loads(server(world, "session", "list", "-o", "json").stdout)["sessions"]
    )


def test_session_get_prints_summary_then_timeline(world: World) -> None:
    out = server(world, "session", "get", "studio-render-42").stdout
    assert out.startswith("session   studio-render-42\nroom      studio")
    assert "session.started" in out and "span.error" in out and "upstream timeout" in out
    data = json.loads(server(world, "session", "get", "studio-render-42", "-o", "json").stdout)
    assert data["session"]["session_id"] == "studio-render-42"
    assert {e["type"] for e in data["events"]} >= {"session.started", "log", "span.error"}


def test_trace_trees_are_indented_with_human_durations(world: World) -> None:
    slow = next(s for s in world.manifest.spans if s.status == "ERROR" and s.duration_ns > SEC)
    out = server(world, "trace", slow.trace_id, "--show-attrs").stdout
    lines = out.splitlines()
    assert lines[0].startswith(f"trace {slow.trace_id}  3 spans")
    assert lines[1].startswith("  agent.turn ")
    assert lines[2].startswith("    llm.call ") and lines[3].startswith("    tool.")
    assert "ERROR" in lines[3] and "tool=" in lines[3] and lines[3].rstrip()[-1] != " "
    assert any(u in lines[1] for u in ("s ", "ms "))
    sess = server(world, "session", "traces", slow.session, "--min-duration", "1s").stdout
    assert f"trace {slow.trace_id}" in sess


def test_newest_session_when_no_id_given(world: World) -> None:
    newest = json.loads(server(world, "session", "list", "--room", "qa", "-o", "json").stdout)
    result = server(world, "session", "logs", "--room", "qa", "-o", "json")
    assert json.loads(result.stdout)["session_id"] == newest["sessions"][0]["session_id"]


def test_sql_reads_stdin_and_answers_columns_and_rows(world: World) -> None:
    result = run(
        "--server", world.api_url, "sql", "-", "-o", "json", stdin="SELECT 1 AS one, 'x' AS two"
    )
    assert json.loads(result.stdout) == {"columns": ["one", "two"], "rows": [[1, "x"]]}


def test_query_max_rows_caps_sql_read_from_a_store_file(tmp_path, monkeypatch) -> None:
    """query.max_rows (here from the environment) caps ad-hoc SQL read from a store file too,
    not only through the API (the local source used to leave it at its own default)."""
    store = make_store(tmp_path / "small.duckdb")
    store.open()
    store.close()
    monkeypatch.setenv("ROOMSCOPE_QUERY_MAX_ROWS", "5")
    result = run("--db", str(store.path), "sql", "SELECT * FROM range(12)", "-o", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["rows"]) == 5


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["traces", "--bogus"], 2, "No such option"),
        (["session", "lst"], 2, "No such command"),
        (["traces", "--min-duration", "abc"], 2, "invalid duration 'abc'"),
        (["traces", "--attrs", "novalue"], 2, "expected KEY=VALUE"),
        (["traces", "--since", "yesterday"], 2, "invalid time"),
        (["session", "list", "--limit", "0"], 2, "Invalid value"),
        (["traces", "-o", "xml"], 2, "Invalid value"),
        (["session", "get", "no-such-session"], 1, "no session 'no-such-session'"),
        (["session", "traces", "no-such-session"], 1, "no session 'no-such-session'"),
        (["trace", "0" * 32], 1, "no trace"),
        (["trace", "xyz"], 2, "32 hex digits"),
        (["sql", "DELETE FROM spans"], 1, "read-only"),
        (["sql", "INSTALL httpfs"], 1, "read-only"),
        (["sql", "SELEC 1"], 1, "SQL error"),
    ],
)
def test_bad_input_is_one_clear_line_and_the_right_exit_code(world, args, code, message) -> None:
    result = server(world, *args)
    assert result.exit_code == code, result.stdout
    assert message in result.stderr
    if code == 1:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")


def test_empty_results_exit_0(world: World) -> None:
    result = server(world, "traces", "--room", "nowhere")
    assert result.exit_code == 0 and result.stdout == ""
    result = server(world, "session", "logs", "--room", "nowhere")  # like session list
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == "no sessions found in room nowhere\n"
    assert json.loads(server(world, "traces", "--room", "nowhere", "-o", "json").stdout) == {
        "spans": [],
        "next": None,
    }


def test_unreachable_server_missing_file_and_held_file_are_clean_errors(world, tmp_path) -> None:
    if world.backend == "ducklake":
        pytest.skip("a lake is never held: its readers run beside its collectors")
    result = run("--server", "http://127.0.0.1:9", "rooms")
    assert result.exit_code == 1 and "cannot reach roomscope server" in result.stderr
    result = run("--db", str(tmp_path / "missing.duckdb"), "rooms")
    assert result.exit_code == 1 and "does not exist" in result.stderr
    proc = subprocess.run(
        [ROOMSCOPE, "--db", str(world.db), "rooms"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1 and "in use by a running collector" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_default_source_is_the_configured_server_else_the_configured_file(world, tmp_path) -> None:
    config = tmp_path / "roomscope.toml"
    config.write_text(
        f'[server]\napi_port = {world.collector.ports["api"]}\n[store]\npath = "nowhere.duckdb"\n'
    )
    result = run("--config", str(config), "rooms", "-o", "json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)["rooms"]) == len(
        world.manifest.rooms
    )
    if world.backend == "ducklake":
        lake = world.lake
        config.write_text(
            '[server]\napi_port = 9\n[store]\nbackend = "ducklake"\n'
            f'catalog = "{lake["store.catalog"]}"\ndata_path = "{lake["store.data_path"]}"\n'
        )
        result = run("--config", str(config), "rooms", "-o", "json")
        assert result.exit_code == 0 and len(json.loads(result.stdout)["rooms"]) == len(
            world.manifest.rooms
        )
        return
    with world.offline() as db:
        config.write_text(f'[server]\napi_port = 9\n[store]\npath = "{db}"\n')
        result = run("--config", str(config), "rooms", "-o", "json")
        assert result.exit_code == 0 and len(json.loads(result.stdout)["rooms"]) == len(
            world.manifest.rooms
        )


def test_logs_follow_streams_new_records_until_interrupted(world: World) -> None:
    proc = subprocess.Popen(
        [
            ROOMSCOPE,
            "--server",
            world.api_url,
            "session",
            "logs",
            "qa-1",
            "--follow",
            "-o",
            "jsonl",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    errors: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    threading.Thread(target=lambda: [errors.put(x) for x in proc.stderr], daemon=True).start()
    try:
        assert errors.get(timeout=30).startswith("following new log records of session qa-1")
        p = pipeline("http", world.http_url, world.grpc_endpoint, {"service.name": "qa-bot"})
        log = p.logger()
        bodies = [f"followed record {i}" for i in range(3)]
        for body in bodies:
            log.warning(body, extra={"room": "qa", "session": "qa-1"})
        p.shutdown()
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while len(seen) < len(bodies) and time.monotonic() < deadline:
            try:
                record = json.loads(lines.get(timeout=deadline - time.monotonic()))
            except queue.Empty:
                break
            if record["body"].startswith("followed record"):
                seen.append(record["body"])
        assert seen == bodies
        assert proc.poll() is None  # still following
    finally:
        proc.send_signal(2)  # Ctrl-C
        code = proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
        assert code == 0


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            found += _commands(cmd, f"{prefix}{name} ")
        else:
            found.append((f"{prefix}{name}", cmd))
    return found


def test_every_command_has_help_and_is_documented_with_an_example() -> None:
    docs = (Path(__file__).parent.parent / "README.md").read_text()
    commands = _commands(main)
    assert {c for c, _ in commands} >= {
        "session list", "session get", "session traces", "session logs", "session metrics",
        "traces", "trace", "sql", "rooms", "demo", "serve",
    }  # fmt: skip
    for path, cmd in commands:
        assert cmd.help, path
        assert f"## roomscope {path}\n" in docs, path
        assert f"$ roomscope --db demo.duckdb {path}" in docs or path in (
            "demo",
            "serve",
            "token create",
            "status",  # the demo store forwards nowhere: docs/forwarding.md shows it
        ), path
        result = run(*path.split(), "--help")
        assert result.exit_code == 0 and "Usage:" in result.stdout
