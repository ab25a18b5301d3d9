"""Filter syntax shared by the CLI and the API (SPEC 5): durations, ``--attrs``, times, severities.

Parsers take the user's text and return typed values or raise :class:`QueryError`; the filter
dataclasses turn themselves back into the API's query parameters (``to_params``), so a filter
parsed by the CLI reaches a remote server unchanged.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from collector import durations

from .errors import QueryError
from .records import format_ts

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
    """Nanoseconds in a human unit, three significant digits below a second (``850ns``,
    ``12.3µs``, ``250ms``), milliseconds below a minute (``1.000s``, ``1.001s``), then
    ``2m05s``, ``1h02m``; negative durations with a minus sign."""
    if ns is None:
        return ""
    if ns < 0:
        return "-" + format_ns_duration(-ns)
    if ns < 1_000:
        return f"{ns}ns"
    for unit, scale in (("µs", 1_000), ("ms", 1_000_000)):
        if ns < 1_000 * scale:
            text = _three_digits(ns / scale)
            if float(text) < 1_000:  # else it rounded up to the next unit (999.9996 ms: 1.000s)
                return text + unit
    ms = round(ns / 1_000_000)
    if ms < 60_000:
        return f"{ms // 1000}.{ms % 1000:03d}s"
    minutes, rest = divmod(ms // 1000, 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _three_digits(value: float) -> str:
    """1 <= value < 1000 to three significant digits, without trailing zeros: ``1.5``,
    ``12.3``, ``44``, ``250`` (what ``:.3g`` gives, but never in exponent form)."""
    text = f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_attrs(values: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``["a=1,b=2", "c=3"]`` → ``(("a","1"), ("b","2"), ("c","3"))``; every pair needs ``=``.

    A comma separates pairs and the first ``=`` separates a key from its value, so
    ``q=a=b`` is key ``q``, value ``a=b``. A comma, ``=`` or ``"`` that is part of a key or
    value is quoted (``q="a,b"``) or escaped with a backslash (``q=a\\,b``); ``\\\\`` is one
    backslash (any other backslash stays as it is). Blanks around keys and values are dropped,
    blanks inside quotes kept."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        for part in _split_pairs(str(value)):
            if all(c.isspace() and not lit for c, lit in part):
                continue
            eq = next((i for i, (c, lit) in enumerate(part) if c == "=" and not lit), None)
            key = _unquoted(part[:eq]) if eq is not None else ""
            if eq is None or not key:
                raise QueryError(
                    f"invalid attribute filter {_raw(part)!r}: expected KEY=VALUE (a comma"
                    ' separates pairs: quote a value that holds one, q="a,b", or escape it,'
                    " q=a\\,b)"
                )
            pairs.append((key, _unquoted(part[eq + 1 :])))
    return tuple(pairs)


def parse_time(text: str, now_ns: int | None = None) -> int:
    """``15m``, ``2h``, ``7d`` (that long ago) or an ISO timestamp (UTC unless it names an
    offset) → epoch nanoseconds. A fraction of a second keeps all its digits, up to nine: a
    time printed by roomscope (``...18.818597583Z``) selects exactly the records of that time."""
    raw = str(text).strip()
    try:
        if durations.has_unit(raw):
            now = time.time_ns() if now_ns is None else now_ns
            value = now - durations.duration_ns(raw, "s")
        else:
            value = _iso_ns(raw)
    except (ValueError, OverflowError):
        raise QueryError(
            f"invalid time {text!r}: use an age like 15m, 2h, 7d or an ISO timestamp"
            " (fractions of a second up to nanoseconds)"
        ) from None
    if not _TS_NS_MIN <= value <= _TS_NS_MAX:
        raise QueryError(f"invalid time {text!r}: stored times lie between 1678 and 2261")
    return value


# The fraction of a second of an ISO time (datetime keeps only microseconds: parsed apart).
_FRACTION = re.compile(r"(?<=\d\d:\d\d:\d\d)[.,](\d+)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso_ns(text: str) -> int:
    fraction = 0
    m = _FRACTION.search(text)
    if m:
        digits = m.group(1)
        if len(digits) > 9:
            raise ValueError("more than nine digits of a second")
        fraction = int(digits.ljust(9, "0"))
        text = text[: m.start()] + text[m.end() :]
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(seconds=1) * 1_000_000_000 + fraction


# What TIMESTAMP_NS holds (a signed 64-bit count of nanoseconds around 1970), with a margin.
_TS_NS_MIN = (datetime(1678, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(seconds=1) * 10**9
_TS_NS_MAX = (datetime(2261, 12, 31, tzinfo=UTC) - _EPOCH) // timedelta(seconds=1) * 10**9


_ESCAPABLE = ',="\\'
Chars = list[tuple[str, bool]]  # (character, quoted or escaped)


def _split_pairs(text: str) -> list[Chars]:
    """``text`` cut at the commas outside double quotes, each character marked literal when
    quoted or escaped (quotes and escaping backslashes removed)."""
    parts: list[Chars] = [[]]
    quoted = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPABLE:
            parts[-1].append((text[i + 1], True))
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            parts.append([])
        else:
            parts[-1].append((c, quoted))
        i += 1
    if quoted:
        raise QueryError(f"invalid attribute filter {text!r}: a double quote is not closed")
    return parts


def _unquoted(chars: Chars) -> str:
    """The text of ``chars`` without the blanks around it that were neither quoted nor escaped."""
    start, end = 0, len(chars)
    while start < end and chars[start][0].isspace() and not chars[start][1]:
        start += 1
    while end > start and chars[end - 1][0].isspace() and not chars[end - 1][1]:
        end -= 1
    return "".join(c for c, _ in chars[start:end])


def _raw(chars: Chars) -> str:
    return "".join(c for c, _ in chars).strip()


def quote_attr(text: str) -> str:
    """A key or value written so that :func:`parse_attrs` reads it back unchanged."""
    if text and text.strip() == text and not any(c in _ESCAPABLE for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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


MAX_LIMIT = 1_000_000  # records the CLI's --limit may ask for (it reads them page by page)
MAX_PAGE = 10_000  # records one page (one API answer) holds at most (SPEC 8)


def parse_limit(text: str | int, maximum: int = MAX_LIMIT) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise QueryError(f"invalid limit {text!r}: expected a whole number") from None
    if not 1 <= value <= maximum:
        raise QueryError(f"invalid limit {value}: must be 1 to {maximum:,}")
    return value


def parse_page_limit(text: str | int) -> int:
    """A page size: 1 to :data:`MAX_PAGE`."""
    return parse_limit(text, MAX_PAGE)


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    low = str(text).strip().lower()
    if low in ("1", "true", "yes"):
        return True
    if low in ("0", "false", "no"):
        return False
    raise QueryError(f"invalid boolean {text!r}: expected true or false")


def _param_text(value: Any, name: str) -> str | list[str]:
    if name in ("since", "until"):
        return str(format_ts(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if name in ("min_duration", "max_duration"):
        return f"{value}ns"
    if name == "attrs":
        return [f"{quote_attr(k)}={quote_attr(v)}" for k, v in value]
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
    since: int | None = None  # epoch ns, inclusive
    until: int | None = None  # epoch ns, inclusive
    limit: int | None = None  # the page size (query.library.paging)
    cursor: str | None = None  # where the page starts: the previous page's next
    q: str | None = None  # a TraceQL spanset filter (SPEC 9; query.library.traceql)


@dataclass(frozen=True)
class SessionFilter(Filter):
    room: str | None = None
    active: bool | None = None  # True: active only, False: ended only
    since: int | None = None  # epoch ns
    limit: int | None = None
    project: str | None = None
    cursor: str | None = None
    count: bool | None = None  # True: the answer also carries the list's total


@dataclass(frozen=True)
class LogFilter(Filter):
    severity: int | None = None
    grep: str | None = None
    after: int | None = None  # received after this time, epoch ns (follow)
    limit: int | None = None
    cursor: str | None = None
    trace_id: str | None = None  # the logs of one trace (32 hex) ...
    span_id: str | None = None  # ... or of one span (16 hex)


@dataclass(frozen=True)
class MetricFilter(Filter):
    name: str | None = None
    limit: int | None = None
    cursor: str | None = None


@dataclass(frozen=True)
class PageFilter(Filter):
    """Paging alone, for the lists without filters (a session's events, the rooms)."""

    limit: int | None = None
    cursor: str | None = None
