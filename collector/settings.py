"""Every setting of roomscope, declared once as data.

Defaults, help text, validation, the environment variable names and the documented
``config/roomscope.toml`` all come from :data:`SETTINGS`. Precedence (SPEC 7):
defaults < TOML file < ``ROOMSCOPE_*`` environment variables < command-line flags.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SettingsError


@dataclass(frozen=True)
class Setting:
    section: str
    name: str
    default: Any
    help: str
    kind: type  # int, float, str, bool or list (of str)
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env(self) -> str:
        return f"ROOMSCOPE_{self.section}_{self.name}".upper()


def _port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "must be a port number 0-65535 (0 picks a free port)"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be greater than 0"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be 0 or greater"


def _non_empty_list(v: list[str]) -> str | None:
    return None if v and all(isinstance(x, str) and x for x in v) else "must list one key or more"


def _age(v: str) -> str | None:
    from .retention import check_age

    return check_age(v)


def _non_empty(v: str) -> str | None:
    return None if v else "must not be empty"


SETTINGS: tuple[Setting, ...] = (
    Setting("server", "host", "0.0.0.0", "Address the OTLP receivers bind to.", str, _non_empty),
    Setting("server", "grpc_port", 4317, "OTLP/gRPC port.", int, _port),
    Setting("server", "http_port", 4318, "OTLP/HTTP port.", int, _port),
    Setting("server", "api_host", "127.0.0.1", "Address the query API binds to.", str, _non_empty),
    Setting("server", "api_port", 4320, "Query API port (REST API, health checks).", int, _port),
    Setting(
        "server",
        "shutdown_timeout",
        10.0,
        "Seconds a shutdown waits for in-flight requests before it stops them.",
        float,
        _positive,
    ),
    Setting(
        "store",
        "path",
        "./roomscope.duckdb",
        "The DuckDB file telemetry is written to.",
        str,
        _non_empty,
    ),
    Setting(
        "store",
        "threads",
        0,
        "DuckDB worker threads of the collector's database; 0: one less than the cores (at"
        " least 1). Fewer threads make appends cheaper (1 thread: ~40% less per span than 2)"
        " and leave a core to the receivers; queries through this collector's API use them.",
        int,
        _non_negative,
    ),
    Setting(
        "store",
        "checkpoint_wal_bytes",
        256 * 1024 * 1024,
        "Write-ahead log size that forces a checkpoint under load. Checkpoints rewrite the last"
        " row group, so rare large ones cost far less per record than DuckDB's 16 MiB default.",
        int,
        _positive,
    ),
    Setting(
        "store",
        "idle_checkpoint_bytes",
        8 * 1024 * 1024,
        "When ingest pauses (checked every sessions.sweep_interval), checkpoint if the"
        " write-ahead log has grown past this many bytes.",
        int,
        _positive,
    ),
    Setting(
        "tagging",
        "project_keys",
        ["project", "meshagent.project"],
        "Attribute keys naming the project, first present wins (record, then resource).",
        list,
        _non_empty_list,
    ),
    Setting(
        "tagging",
        "room_keys",
        ["room", "room.name", "meshagent.room"],
        "Attribute keys naming the room, first present wins (record, then resource).",
        list,
        _non_empty_list,
    ),
    Setting(
        "tagging",
        "session_keys",
        ["session", "session.id", "meshagent.session.id"],
        "Attribute keys carrying an explicit session id (record, then resource).",
        list,
        _non_empty_list,
    ),
    Setting(
        "tagging",
        "default_project",
        "default",
        "Project of records that name none.",
        str,
        _non_empty,
    ),
    Setting(
        "sessions",
        "idle_timeout",
        300.0,
        "Seconds without a record after which a session ends; also the gap that splits"
        " inferred sessions.",
        float,
        _positive,
    ),
    Setting(
        "sessions",
        "max_future_skew",
        300.0,
        "Records stamped more than this many seconds after their arrival are taken at"
        " their receive time when sessions are tracked (clock skew).",
        float,
        _non_negative,
    ),
    Setting(
        "sessions",
        "sweep_interval",
        5.0,
        "Seconds between sweeps that end idle sessions.",
        float,
        _positive,
    ),
    Setting(
        "sessions",
        "enabled",
        True,
        "Track sessions (tag records with session ids, keep the sessions table). Turning it off"
        " leaves inferred session ids NULL and the sessions tables unchanged; for benchmarks.",
        bool,
    ),
    Setting(
        "limits",
        "max_body_bytes",
        16 * 1024 * 1024,
        "Largest request body accepted, after decompression (413 above it).",
        int,
        _positive,
    ),
    Setting(
        "limits",
        "max_queue_records",
        200_000,
        "Records decoded but not yet committed, at most; past it requests get 503/"
        "UNAVAILABLE with Retry-After so exporters retry.",
        int,
        _positive,
    ),
    Setting(
        "limits",
        "retry_after",
        1,
        "Seconds given in Retry-After when the queue is full.",
        int,
        _positive,
    ),
    Setting(
        "limits",
        "request_timeout",
        30.0,
        "Seconds a client has to send a whole request (headers and body).",
        float,
        _positive,
    ),
    Setting(
        "limits",
        "header_timeout",
        10.0,
        "Seconds a client has to send a request's headers before the connection is closed"
        " (slow-loris protection).",
        float,
        _positive,
    ),
    Setting(
        "writer",
        "max_batch_records",
        20_000,
        "Records committed together in one group commit, at most.",
        int,
        _positive,
    ),
    Setting(
        "writer",
        "test_delay",
        0.0,
        "Seconds the writer sleeps before each commit (testing overload; keep 0).",
        float,
        _non_negative,
    ),
    Setting(
        "ingest",
        "fast_decode",
        True,
        "Decode protobuf trace requests with the C decoder (collector._otlpfast) when it is"
        " built; false forces the pure-Python path (same table, slower).",
        bool,
    ),
    Setting(
        "retention",
        "max_age",
        "7d",
        "Delete spans, logs and metric points older than this (by their own time), and"
        " sessions last seen before it: 30d, 12h, 90m; 0 keeps everything.",
        str,
        lambda v: _age(v),
    ),
    Setting(
        "retention",
        "interval",
        60.0,
        "Seconds between retention runs (each deletes in one-hour slices through the writer).",
        float,
        _positive,
    ),
    Setting(
        "query",
        "default_limit",
        100,
        "Records a search returns when it gives no --limit (traces, sessions, metrics).",
        int,
        _positive,
    ),
    Setting(
        "query",
        "timeout",
        30.0,
        "Seconds an ad-hoc SQL query (roomscope sql, POST /api/v1/sql) may run.",
        float,
        _positive,
    ),
    Setting(
        "query",
        "probe_timeout",
        0.5,
        "Seconds the CLI waits for the configured server's /healthz before it reads the"
        " store file instead.",
        float,
        _positive,
    ),
    Setting(
        "query",
        "max_rows",
        10_000,
        "Rows an ad-hoc SQL query returns at most (results are streamed and cut there).",
        int,
        _positive,
    ),
    Setting(
        "auth",
        "enabled",
        False,
        "Require bearer tokens: ingest tokens on OTLP, query tokens on the query API (each"
        " token sees and writes only its project).",
        bool,
    ),
    Setting(
        "auth",
        "tokens_file",
        "./roomscope-tokens.toml",
        "TOML file of token hashes ([[tokens]] sha256, project, scope); written by"
        " `roomscope token create`.",
        str,
        _non_empty,
    ),
    Setting(
        "tls",
        "cert_file",
        "",
        "PEM certificate (chain) for TLS on all three listeners; empty = plain TCP.",
        str,
    ),
    Setting(
        "tls",
        "key_file",
        "",
        "PEM private key for tls.cert_file.",
        str,
    ),
)

BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}
BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}
# ROOMSCOPE_* variables that are not settings but are read by roomscope.
OTHER_ENV = frozenset({"ROOMSCOPE_CONFIG", "ROOMSCOPE_TOKEN"})
_KIND_NAMES = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    list: "a list of strings",
    str: "a string",
}


def _coerce(setting: Setting, value: Any, origin: str, typed: bool = False) -> Any:
    """Turn a raw value (TOML, env text, flag) into the setting's type, or raise.

    ``typed`` sources (TOML) must give numbers and booleans as such, not as text.
    """
    kind = setting.kind
    try:
        if typed and kind is not str and isinstance(value, str):
            raise ValueError(value)
        if kind is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                value = low in ("1", "true", "yes", "on")
            elif not isinstance(value, bool):
                raise ValueError(value)
        elif kind is int:
            if isinstance(value, (bool, float)):
                raise ValueError(value)
            value = int(value)
        elif kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            value = float(value)
        elif kind is list:
            if isinstance(value, str):
                value = [p.strip() for p in value.split(",") if p.strip()]
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise ValueError(value)
        elif kind is str and not isinstance(value, str):
            raise ValueError(value)
    except (TypeError, ValueError):
        raise SettingsError(
            f"invalid setting {setting.key} ({origin}): {value!r} is not {_KIND_NAMES[kind]}"
        ) from None
    if setting.check is not None:
        problem = setting.check(value)
        if problem:
            raise SettingsError(f"invalid setting {setting.key} ({origin}): {value!r} {problem}")
    return value


class Settings:
    """Resolved settings: ``settings.get("server.grpc_port")`` or ``settings.server_grpc_port``."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def get(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, name: str) -> Any:
        section, _, rest = name.partition("_")
        key = f"{section}.{rest}"
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, **overrides: Any) -> Settings:
        """A copy with some keys (``"server.grpc_port"``) changed and validated."""
        values = dict(self._values)
        for key, value in overrides.items():
            setting = BY_KEY.get(key)
            if setting is None:
                raise SettingsError(f"unknown setting {key}")
            values[key] = _coerce(setting, value, "override")
        return Settings(values)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve every setting from defaults, a TOML file, the environment and flags."""
    env = os.environ if env is None else env
    values = {s.key: s.default for s in SETTINGS}
    if config_file is None and env.get("ROOMSCOPE_CONFIG"):
        config_file = env["ROOMSCOPE_CONFIG"]
    if config_file is not None:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SettingsError(f"config file not found: {path}") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read config file {path}: {exc}") from None
        for section, table in data.items():
            if not isinstance(table, dict):
                raise SettingsError(f"invalid setting {section} in {path}: expected a [section]")
            for name, value in table.items():
                setting = BY_KEY.get(f"{section}.{name}")
                if setting is None:
                    raise SettingsError(f"unknown setting {section}.{name} in {path}")
                values[setting.key] = _coerce(setting, value, str(path), typed=True)
    for name, text in env.items():
        if not name.startswith("ROOMSCOPE_") or name in OTHER_ENV:
            continue
        setting = BY_ENV.get(name)
        if setting is None:
            raise SettingsError(f"unknown setting {name} (environment variable)")
        values[setting.key] = _coerce(setting, text, name)
    for key, value in (flags or {}).items():
        if value is None:
            continue
        setting = BY_KEY.get(key)
        if setting is None:
            raise SettingsError(f"unknown setting {key}")
        values[key] = _coerce(setting, value, "command line")
    return Settings(values)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def render_toml() -> str:
    """The documented config file: every setting, its help and its default."""
    lines = [
        "# roomscope configuration. Every setting, with its default.",
        "# Precedence: defaults < this file < ROOMSCOPE_* environment variables < flags.",
        "# Generated from collector/settings.py:",
        "#   python -m collector.settings > config/roomscope.toml",
    ]
    section = None
    for s in SETTINGS:
        if s.section != section:
            section = s.section
            lines += ["", f"[{section}]"]
        lines.append(f"# {s.help} Env: {s.env}")
        lines.append(f"{s.name} = {_toml_value(s.default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_toml(), end="")
