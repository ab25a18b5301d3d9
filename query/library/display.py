"""Text for a terminal: control characters escaped, severities and span durations by name.

Table output (the CLI's default) goes through these; json, jsonl and csv keep the data as it
is stored.
"""

from __future__ import annotations

import re

from .filters import format_ns_duration

# C0 and C1 controls, DEL, the line and paragraph separators, and the bidirectional
# formatting characters (which reorder what a terminal shows): a span name holding
# "\x1b]0;TITLE\x07" would set the terminal's title, one holding "\n" break a table's rows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def printable(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``,
    ``\\u202e``): safe to print, one line."""
    return _CONTROL.sub(_escape, text)


# OpenTelemetry's short names of the severity numbers 1-24 (the data model's SeverityNumber).
_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def severity_name(number: int | None) -> str:
    """``9`` → ``INFO``, ``10`` → ``INFO2``, ``17`` → ``ERROR``; "" for 0 or none."""
    if number is None or not 1 <= number <= 24:
        return "" if not number else str(number)
    level, step = divmod(number - 1, 4)
    return _LEVELS[level] + (str(step + 1) if step else "")


def severity_text(text: str | None, number: int | None) -> str:
    """A log record's level as sent, else the name of its severity number."""
    return text or severity_name(number)


def span_duration(ns: int | None) -> str:
    """A span's duration; one that ends before it starts (a clock went back, or a client
    bug) is stored as sent and flagged: ``-1.000s (end before start)``."""
    if ns is not None and ns < 0:
        return f"{format_ns_duration(ns)} (end before start)"
    return format_ns_duration(ns)
