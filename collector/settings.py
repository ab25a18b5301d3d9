"""Loading roomscope's settings, declared once as data in collector/settings_table.py.

Defaults, help text, validation, the environment variable names and the documented
``config/roomscope.toml`` all come from :data:`SETTINGS`. Precedence (SPEC 7):
defaults < TOML file < ``ROOMSCOPE_*`` environment variables < command-line flags.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import SettingsError
from .setting_values import disk_bytes as disk_bytes  # for collector.store
from .settings_table import SETTINGS, Setting

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
    dict: "a table",
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
        elif kind is dict:
            if isinstance(value, str) and not typed:
                value = json.loads(value)  # the environment gives a table as JSON
            if not isinstance(value, dict):
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


def toml_value(value: Any) -> str:
    """A value as config/roomscope.toml writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
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
        if s.kind is dict:  # a table of tables: `name = {}` would forbid [section.name."x"]
            lines.append(f"# {s.name} = {toml_value(s.default)}  (the default), or tables:")
            lines += [f"# {line}" for line in s.example.splitlines()]
        else:
            lines.append(f"{s.name} = {toml_value(s.default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_toml(), end="")
