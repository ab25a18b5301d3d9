"""Filter syntax shared by the CLI and the API (SPEC 5): durations, ``--attrs``, times, severities.

Parsers take the user's text and return typed values or raise :class:`QueryError`; the filter
dataclasses turn themselves back into the API's query parameters (``to_params``), so a filter
parsed by the CLI reaches a remote server unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from collector import durations

from .errors import QueryError

SEVERITIES = {
    "TRACE": 1,
    "DEBUG": 5,
    "INFO": 9,
    "WARN": 13,
    "WARNING": 13,
    "ERROR": 17,
    "FATAL": 21,
}
# Span fields a --attrs key falls back to when no attribute of that name exists.
SPAN_FIELDS = {"service": "service_name", "name": "name", "kind": "kind"}


def parse_duration(text: str) -> int:
    """``1000`` (ms), ``1.5s``, ``250ms``, ``20us``, ``2m`` → nanoseconds."""
    try:
        return durations.duration_ns(text, "ms")
    except ValueError:
        raise QueryError(
            f"invalid duration {text!r}: use a number of milliseconds or a number with a unit"
            " (ns, us, µs, ms, s, m), e.g. 1000, 1.5s, 250ms"
        ) from None


def format_ns_duration(ns: int | None) -> str:
    """Nanoseconds in a human unit: ``850ns``, ``12.3µs``, ``250ms``, ``1.50s``, ``2m05s``."""
    if ns is None:
        return ""
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.3g}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.3g}ms"
    seconds = ns / 1_000_000_000
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def parse_attrs(values: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``["a=1,b=2", "c=3"]`` → ``(("a","1"), ("b","2"), ("c","3"))``; every pair needs ``=``."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        for part in str(value).split(","):
            if not part.strip():
                continue
            key, eq, val = part.partition("=")
            if not eq or not key.strip():
                raise QueryError(f"invalid attribute filter {part!r}: expected KEY=VALUE")
            pairs.append((key.strip(), val.strip()))
    return tuple(pairs)


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """``15m``, ``2h``, ``7d`` (that long ago) or an ISO timestamp (UTC by default) → UTC."""
    now = now or datetime.now(UTC)
    try:
        if durations.has_unit(text):
            value = now - timedelta(microseconds=durations.duration_ns(text, "s") // 1000)
        else:
            value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(
            f"invalid time {text!r}: use an age like 15m, 2h, 7d or an ISO timestamp"
        ) from None
    except OverflowError:
        value = datetime.min  # caught as out of range below
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not _TS_NS_MIN <= value <= _TS_NS_MAX:
        raise QueryError(f"invalid time {text!r}: stored times lie between 1678 and 2261")
    return value.astimezone(UTC)


# What TIMESTAMP_NS holds (a signed 64-bit count of nanoseconds around 1970), with a margin.
_TS_NS_MIN = datetime(1678, 1, 1, tzinfo=UTC)
_TS_NS_MAX = datetime(2261, 12, 31, tzinfo=UTC)


def parse_severity(text: str) -> int:
    """``warn``/``ERROR``/``13`` → the lowest severity number shown."""
    text = str(text).strip()
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 24:
        return int(text)
    try:
        return SEVERITIES[text.upper()]
    except KeyError:
        raise QueryError(
            f"invalid severity {text!r}: use TRACE, DEBUG, INFO, WARN, ERROR, FATAL or 1-24"
        ) from None


MAX_LIMIT = 1_000_000  # rows one read may ask for (the SQL row cap is query.max_rows)


def parse_limit(text: str | int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise QueryError(f"invalid limit {text!r}: expected a whole number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise QueryError(f"invalid limit {value}: must be 1 to {MAX_LIMIT:,}")
    return value


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    low = str(text).strip().lower()
    if low in ("1", "true", "yes"):
        return True
    if low in ("0", "false", "no"):
        return False
    raise QueryError(f"invalid boolean {text!r}: expected true or false")


def iso_param(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _param_text(value: Any, name: str) -> str | list[str]:
    if isinstance(value, datetime):
        return iso_param(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if name in ("min_duration", "max_duration"):
        return f"{value}ns"
    if name == "attrs":
        return [f"{k}={v}" for k, v in value]
    return str(value)


@dataclass(frozen=True)
class Filter:
    """Base: turn set fields into API query parameters (the CLI's syntax, underscores)."""

    def to_params(self) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or value == ():
                continue
            text = _param_text(value, f.name)
            params.extend((f.name, t) for t in (text if isinstance(text, list) else [text]))
        return params


@dataclass(frozen=True)
class SpanFilter(Filter):
    room: str | None = None
    session: str | None = None
    service: str | None = None
    name: str | None = None
    trace_id: str | None = None
    min_duration: int | None = None  # ns, inclusive
    max_duration: int | None = None  # ns, inclusive
    attrs: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None


@dataclass(frozen=True)
class SessionFilter(Filter):
    room: str | None = None
    active: bool | None = None  # True: active only, False: ended only
    since: datetime | None = None
    limit: int | None = None


@dataclass(frozen=True)
class LogFilter(Filter):
    severity: int | None = None
    grep: str | None = None
    after: int | None = None  # received_at cursor, epoch ns (follow)
    limit: int | None = None


@dataclass(frozen=True)
class MetricFilter(Filter):
    name: str | None = None
    limit: int | None = None
