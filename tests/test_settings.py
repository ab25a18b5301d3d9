"""Settings (SPEC 7): defaults < TOML < ROOMSCOPE_* env < flags; invalid or unknown settings stop
start-up with a message naming them; the documented config file is generated from the declaration;
`roomscope serve` runs on port 0 and shuts down cleanly on SIGTERM with acked data committed."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
import pytest
from click.testing import CliRunner
from otlp_factory import trace_request
from reliability import start_serve

from collector.errors import SettingsError
from collector.settings import SETTINGS, load_settings, render_toml
from query.cli import main

ROOT = Path(__file__).parent.parent


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roomscope.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_declared_ones():
    s = load_settings(env={})
    assert s.get("server.grpc_port") == 4317 and s.get("server.http_port") == 4318
    assert s.get("limits.max_body_bytes") == 16 * 1024 * 1024
    assert s.get("tagging.room_keys") == ["room", "room.name", "meshagent.room"]
    assert s.as_dict() == {setting.key: setting.default for setting in SETTINGS}


def test_precedence_defaults_toml_env_flags(tmp_path):
    path = write_toml(
        tmp_path,
        '[server]\ngrpc_port = 5001\nhttp_port = 5002\napi_port = 5003\nhost = "10.0.0.1"\n'
        '[tagging]\nroom_keys = ["space"]\n',
    )
    env = {"ROOMSCOPE_SERVER_HTTP_PORT": "6002", "ROOMSCOPE_SERVER_API_PORT": "6003"}
    flags = {"server.api_port": 7003, "server.grpc_port": None}  # None = flag not given
    s = load_settings(path, env=env, flags=flags)
    assert s.get("server.host") == "10.0.0.1"  # file over default
    assert s.get("server.grpc_port") == 5001  # file (flag not given)
    assert s.get("server.http_port") == 6002  # env over file
    assert s.get("server.api_port") == 7003  # flag over env over file
    assert s.get("tagging.room_keys") == ["space"]
    assert s.get("limits.retry_after") == 1  # untouched default


def test_env_values_are_parsed_by_type():
    env = {
        "ROOMSCOPE_TAGGING_ROOM_KEYS": "space, room ,",
        "ROOMSCOPE_SESSIONS_IDLE_TIMEOUT": "12.5",
        "ROOMSCOPE_LIMITS_MAX_BODY_BYTES": "1024",
    }
    s = load_settings(env=env)
    assert s.get("tagging.room_keys") == ["space", "room"]
    assert s.get("sessions.idle_timeout") == 12.5
    assert s.get("limits.max_body_bytes") == 1024


def test_config_file_from_roomscope_config_env(tmp_path):
    path = write_toml(tmp_path, "[server]\ngrpc_port = 5999\n")
    assert load_settings(env={"ROOMSCOPE_CONFIG": str(path)}).get("server.grpc_port") == 5999


@pytest.mark.parametrize(
    ("source", "value", "expected"),
    [
        ("toml", "grpc_port = 70000", "invalid setting server.grpc_port"),
        ("toml", 'grpc_port = "4317"', "invalid setting server.grpc_port"),
        ("toml", "grpc_port = 4317.0", "is not an integer"),
        ("env", "seventy", "invalid setting server.grpc_port (ROOMSCOPE_SERVER_GRPC_PORT)"),
        ("env", "-1", "must be a port number"),
        ("flag", 99999, "invalid setting server.grpc_port (command line)"),
    ],
)
def test_invalid_values_name_the_setting(tmp_path, source, value, expected):
    kwargs: dict = {"env": {}}
    if source == "toml":
        kwargs["config_file"] = write_toml(tmp_path, f"[server]\n{value}\n")
    elif source == "env":
        kwargs["env"] = {"ROOMSCOPE_SERVER_GRPC_PORT": value}
    else:
        kwargs["flags"] = {"server.grpc_port": value}
    with pytest.raises(SettingsError) as info:
        load_settings(**kwargs)
    assert expected in str(info.value)
    assert "server.grpc_port" in str(info.value)


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("ROOMSCOPE_LIMITS_MAX_BODY_BYTES", "0", "limits.max_body_bytes"),
        ("ROOMSCOPE_SESSIONS_IDLE_TIMEOUT", "soon", "sessions.idle_timeout"),
        ("ROOMSCOPE_TAGGING_ROOM_KEYS", " , ", "tagging.room_keys"),
        ("ROOMSCOPE_STORE_PATH", "", "store.path"),
    ],
)
def test_invalid_values_of_other_kinds(key, text, expected):
    with pytest.raises(SettingsError, match=f"invalid setting {expected} "):
        load_settings(env={key: text})


def test_toml_list_of_non_strings_is_refused(tmp_path):
    path = write_toml(tmp_path, "[tagging]\nroom_keys = [1, 2]\n")
    with pytest.raises(SettingsError, match=r"invalid setting tagging\.room_keys"):
        load_settings(path, env={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\ngrcp_port = 1\n", "unknown setting server.grcp_port"),
        ("[srever]\nhost = 'x'\n", "unknown setting srever.host"),
        ("host = 'x'\n", "invalid setting host"),
        ("[server\n", "cannot read config file"),
    ],
)
def test_unknown_keys_and_broken_files_are_refused(tmp_path, text, expected):
    path = write_toml(tmp_path, text)
    with pytest.raises(SettingsError, match=expected):
        load_settings(path, env={})


def test_unknown_env_variables_and_flags_are_refused(tmp_path):
    with pytest.raises(SettingsError, match="unknown setting ROOMSCOPE_SERVER_GRCP_PORT"):
        load_settings(env={"ROOMSCOPE_SERVER_GRCP_PORT": "1"})
    with pytest.raises(SettingsError, match=r"unknown setting server\.nope"):
        load_settings(env={}, flags={"server.nope": 1})
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings(tmp_path / "missing.toml", env={})


def test_config_file_is_generated_from_the_declaration():
    """Docs can't drift: regenerate with `python -m collector.settings > config/roomscope.toml`."""
    documented = (ROOT / "config" / "roomscope.toml").read_text()
    assert documented == render_toml()
    for setting in SETTINGS:
        assert setting.env in documented and f"{setting.name} =" in documented


def test_rendered_toml_loads_back_to_the_defaults(tmp_path):
    path = write_toml(tmp_path, render_toml())
    assert load_settings(path, env={}).as_dict() == load_settings(env={}).as_dict()


def test_serve_with_a_bad_setting_exits_nonzero_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("ROOMSCOPE_CONFIG", raising=False)
    runner = CliRunner()
    db = str(tmp_path / "x.duckdb")
    result = runner.invoke(main, ["serve", "--db", db, "--grpc-port", "70000"])
    assert result.exit_code == 1
    assert "invalid setting server.grpc_port (command line): 70000" in result.output

    path = write_toml(tmp_path, "[limits]\nmax_body_bytes = -5\n")
    result = runner.invoke(main, ["--config", str(path), "serve", "--db", db])
    assert result.exit_code == 1
    assert "invalid setting limits.max_body_bytes" in result.output

    result = runner.invoke(main, ["serve", "--db", db], env={"ROOMSCOPE_SERVER_HTTP_PORT": "http"})
    assert result.exit_code == 1
    assert "invalid setting server.http_port (ROOMSCOPE_SERVER_HTTP_PORT)" in result.output
    assert not (tmp_path / "x.duckdb").exists()  # refused before anything was opened


def test_serve_subprocess_with_a_bad_setting_exits_nonzero(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "ROOMSCOPE_SESSIONS_IDLE_TIMEOUT": "-3"}
    proc = subprocess.run(
        [sys.executable, "-c", "from query.cli import main; main()", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "invalid setting sessions.idle_timeout (ROOMSCOPE_SESSIONS_IDLE_TIMEOUT)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "roomscope.duckdb").exists()


def test_serve_subprocess_port_zero_readyz_and_clean_sigterm(tmp_path):
    db = tmp_path / "served.duckdb"
    server = start_serve(db)
    try:
        ready = httpx.get(f"{server.api_url}/readyz", timeout=10)
        assert ready.status_code == 200
        for seed in range(3):
            r = httpx.post(
                f"{server.http_url}/v1/traces",
                content=trace_request(50, seed=seed).SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
                timeout=30,
            )
            assert r.status_code == 200
        server.terminate()
        assert server.proc.wait(30) == 0, server.output()
    finally:
        server.kill()
    assert "Traceback" not in server.output()
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM spans").fetchone()[0] == 150
    finally:
        con.close()


@pytest.mark.parametrize("flag", ["--grpc-port", "--http-port", "--api-port"])
def test_serve_on_a_port_in_use_exits_nonzero_naming_it(tmp_path, monkeypatch, flag):
    monkeypatch.delenv("ROOMSCOPE_CONFIG", raising=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        args = ["serve", "--db", str(tmp_path / "p.duckdb"), "--host", "127.0.0.1"]
        args += ["--api-host", "127.0.0.1"]
        for other in ("--grpc-port", "--http-port", "--api-port"):
            args += [other, str(port) if other == flag else "0"]
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert not isinstance(result.exception, OSError | RuntimeError)
