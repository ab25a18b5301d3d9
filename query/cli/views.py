"""How each result looks as a table: column specs and the session summary block."""

from __future__ import annotations

from typing import Any

from ..library.display import printable, severity_text, span_duration
from ..library.filters import format_ns_duration
from ..library.records import COLUMNS, parse_ts
from .output import Column, cell, format_table

Record = dict[str, Any]


def short_time(ts: str | None) -> str:
    """``2026-11-24T16:20:00.123456789Z`` → ``2026-11-24 16:20:00.123``."""
    return "" if not ts else ts[:23].replace("T", " ")


def session_duration(s: Record) -> str:
    end = s.get("ended_at") or s.get("last_seen_at")
    if not end or not s.get("started_at"):
        return ""
    return format_ns_duration(parse_ts(end) - parse_ts(s["started_at"]))


def _ended(s: Record) -> str:
    return "active" if s.get("ended_at") is None else short_time(s["ended_at"])


SESSIONS: list[Column] = [
    ("ID", lambda s: s["session_id"]),
    ("ROOM", lambda s: s["room"]),
    ("PROJECT", lambda s: s["project"]),
    ("STARTED", lambda s: short_time(s["started_at"])),
    ("ENDED", _ended),
    ("DURATION", session_duration),
    ("SPANS", lambda s: s["span_count"]),
    ("LOGS", lambda s: s["log_count"]),
    ("ERRORS", lambda s: s["error_count"]),
    ("SERVICES", lambda s: s["services"]),
]

SPANS: list[Column] = [
    ("TIME", lambda s: short_time(s["start_time"])),
    ("TRACE", lambda s: s["trace_id"]),
    ("SPAN", lambda s: s["name"]),
    ("SERVICE", lambda s: s["service_name"]),
    ("DURATION", lambda s: span_duration(s["duration_ns"])),
    ("STATUS", lambda s: s["status_code"]),
    ("ROOM", lambda s: s["room"]),
    ("SESSION", lambda s: s["session_id"]),
]

LOGS: list[Column] = [
    ("TIME", lambda r: short_time(r["time"])),
    ("SEVERITY", lambda r: severity_text(r["severity_text"], r["severity_number"])),
    ("SERVICE", lambda r: r["service_name"]),
    ("BODY", lambda r: r["body"]),
]


def _metric_value(m: Record) -> str:
    if m.get("value") is not None:
        return cell(m["value"])
    parts = [f"{k}={cell(m[k])}" for k in ("count", "sum", "min", "max") if m.get(k) is not None]
    return " ".join(parts)


METRICS: list[Column] = [
    ("TIME", lambda m: short_time(m["time"])),
    ("NAME", lambda m: m["name"]),
    ("TYPE", lambda m: m["type"]),
    ("VALUE", _metric_value),
    ("UNIT", lambda m: m["unit"]),
    ("SERVICE", lambda m: m["service_name"]),
    ("ATTRIBUTES", lambda m: m["attributes"]),
]

ROOMS: list[Column] = [
    ("ROOM", lambda r: r["room"]),
    ("PROJECT", lambda r: r["project"]),
    ("SESSIONS", lambda r: r["sessions"]),
    ("ACTIVE", lambda r: r["active_sessions"]),
    ("SPANS", lambda r: r["span_count"]),
    ("ERRORS", lambda r: r["error_count"]),
    ("LAST ACTIVITY", lambda r: short_time(r["last_seen_at"])),
]

EVENTS: list[Column] = [
    ("TIME", lambda e: short_time(e["time"])),
    ("TYPE", lambda e: e["type"]),
    ("LEVEL", lambda e: e["severity_text"]),
    ("SERVICE", lambda e: e["service_name"]),
    ("MESSAGE", lambda e: e["message"]),
]


# The keys of each result's records: the csv header when there are none.
FIELDS: dict[str, list[str]] = {
    "spans": COLUMNS["spans"],
    "sessions": COLUMNS["sessions"],
    "logs": COLUMNS["logs"],
    "metrics": COLUMNS["metric_points"],
    "rooms": [
        "project", "room", "sessions", "active_sessions", "span_count", "log_count",
        "error_count", "last_seen_at",
    ],
    "events": [
        "time", "type", "severity_text", "service_name", "message", "trace_id", "span_id",
    ],
}  # fmt: skip


def usage_line(u: Record) -> str:
    """A session's usage totals in one line (``session get``)."""
    cost = "unpriced" if u["cost_usd"] is None else f"{u['cost_usd']:.4f} USD"
    return (
        f"{u['llm_calls']} LLM calls, {u['input_tokens']} input + {u['output_tokens']} output"
        f" tokens, cost {cost}; {u['tool_calls']} tool calls, {u['tool_errors']} failed"
    )


def session_summary(s: Record, events: list[Record], usage: Record | None = None) -> str:
    counts = (
        f"{s['span_count']} spans, {s['log_count']} logs,"
        f" {s['metric_point_count']} metric points, {s['error_count']} errors"
    )
    rows = [
        ("session", s["session_id"]),
        ("room", f"{s['room'] or '(none)'}  (project {s['project']})"),
        ("source", s["source"]),
        ("started", short_time(s["started_at"])),
        ("ended", _ended(s)),
        ("duration", session_duration(s)),
        ("records", counts),
        ("services", cell(s["services"])),
    ]
    if usage is not None and (usage["llm_calls"] or usage["input_tokens"] or usage["tool_calls"]):
        rows.append(("usage", usage_line(usage)))
    text = "\n".join(f"{k:<9} {printable(str(v))}" for k, v in rows)
    if events:
        lines = [[cell(fn(e)) for _h, fn in EVENTS] for e in events]
        text += "\n\n" + format_table([h for h, _ in EVENTS], lines)
    return text
